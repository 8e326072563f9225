"""A domain published the way ``mailstead dns-records`` says, for the DNS check tests."""

from __future__ import annotations

from pathlib import Path

from click.testing import Result

from mailstead.config import load_config
from mailstead.mailauth.dnsrecords import records
from mailstead.testing.dns import DNSServer, RecordValue
from tests.checks.conftest import run_check

Zone = dict[str, dict[str, list[RecordValue]]]

CONFIG = """\
hostname = "mail.example.test"
domains = ["example.test"]
[delivery]
dns_servers = ["{dns}"]
[[network.addresses]]
iface = "eth0"
cidr = "192.0.2.25/24"
"""


class Published:
    """A data directory with DKIM keys, and the zones that publish them correctly."""

    def __init__(self, tmp_path: Path, config: str = CONFIG) -> None:
        self.path = tmp_path / "mailstead.toml"
        self.template = config
        self.path.write_text(config.format(dns="127.0.0.1:53"))
        suggested = records(load_config(self.path), "example.test")  # makes the DKIM keys
        #: The DKIM records: (owner name, value).
        self.dkim = [(r.name.rstrip("."), r.value) for r in suggested if "._domainkey." in r.name]
        self.zones: Zone = {
            "example.test": {"MX": [(10, "mail.example.test")], "TXT": ["v=spf1 mx ~all"]},
            "mail.example.test": {"A": ["192.0.2.25"]},
            "25.2.0.192.in-addr.arpa": {"PTR": ["mail.example.test"]},
            "_dmarc.example.test": {
                "TXT": ["v=DMARC1; p=quarantine; rua=mailto:postmaster@example.test"]
            },
            "_smtp._tls.example.test": {"TXT": ["v=TLSRPTv1; rua=mailto:postmaster@example.test"]},
        }
        for name, value in self.dkim:
            self.zones[name] = {"TXT": [value]}

    def check(self, *args: str, servfail: tuple[str, ...] = ()) -> Result:
        """``check dns example.test ARGS`` against a DNS server serving :attr:`zones`."""
        with DNSServer(self.zones, servfail=servfail) as (host, port):
            self.path.write_text(self.template.format(dns=f"{host}:{port}"))
            return run_check(self.path, "dns", "example.test", *args)

    def lines(self, check: str, *args: str) -> list[str]:
        """The output lines of one kind of check, each with its publish lines."""
        return [
            line
            for block in blocks(self.check(*args).output)
            if block[0].split()[1] == check
            for line in block
        ]


def blocks(output: str) -> list[list[str]]:
    """The checks of a text report: a status line, then its indented publish lines."""
    out: list[list[str]] = []
    for line in output.splitlines():
        if line.startswith(("PASS ", "WARN ", "FAIL ", "INFO ")):
            out.append([line])
        elif line.startswith(" ") and out:
            out[-1].append(line)
    return out
