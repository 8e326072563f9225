"""A throw-away Mailstead server, run as a separate process like in production.

It is driven only through the external contract (DESIGN.md §3): a config
file, ``mailstead user add`` and ``mailstead serve``. Only the MTA listener
is open, on 127.0.0.1 at the port we choose, without TLS (Postfix in the
benchmark has none either).

The server's DNS (MX, and the SPF/DKIM/DMARC checks it makes by default on
mail it receives) goes to a DNS server of the benchmark's own on loopback,
which knows none of the made-up domains: as a real resolver would answer
for a sender without records, and never a query off this machine.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from netutil import wait_for_port

from mailstead.testing.dns import DNSServer

__all__ = [
    "MailsteadServer",
    "listen_on",
    "loopback_dns",
    "mailstead_version",
    "running_mailstead",
]

_STOP_TIMEOUT = 60.0


def listen_on(config: str, ports: dict[str, int]) -> str:
    """``config`` with each listener's address list replaced by 127.0.0.1:port."""
    for name, port in ports.items():
        config, count = re.subn(
            rf"^({name}\s*=\s*)\[[^\]]*\]",
            rf'\g<1>["127.0.0.1:{port}"]',
            config,
            count=1,
            flags=re.MULTILINE,
        )
        if count != 1:
            raise RuntimeError(f"no [listen] {name} line in the config `mailstead init` wrote")
    return config


_dns: DNSServer | None = None


def loopback_dns() -> str:
    """``host:port`` of the benchmark's DNS server (started at the first call; it
    answers NXDOMAIN for every name and lives as long as the process)."""
    global _dns
    if _dns is None:
        _dns = DNSServer({})
        _dns.start()
    host, port = _dns.address
    return f"{host}:{port}"


def _with_loopback_dns(config: str) -> str:
    """The text ``mailstead init`` wrote, its ``dns_servers`` set to :func:`loopback_dns`."""
    text, count = re.subn(
        r"^(dns_servers\s*=\s*)\[[^\]]*\]",
        rf"\g<1>[{json.dumps(loopback_dns())}]",
        config,
        count=1,
        flags=re.MULTILINE,
    )
    if count != 1:
        raise RuntimeError("no [delivery] dns_servers line in the config `mailstead init` wrote")
    return text


def init_with_user(
    config: Path, address: str, password: str, rewrite: Callable[[str], str]
) -> list[str]:
    """``mailstead init`` writing ``config`` for ``address``'s domain, its text then
    passed through ``rewrite``, and ``address`` added as a user; the command
    prefix (``python -m mailstead --config …``) for what comes next."""
    domain = address.rpartition("@")[2]
    cli = [*_mailstead_command(), "--config", str(config)]
    subprocess.run(
        [*cli, "init", "--domain", domain, "--hostname", f"mx.{domain}"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    config.write_text(rewrite(_with_loopback_dns(config.read_text())))
    subprocess.run(
        [*cli, "user", "add", address, "--password-stdin"],
        input=f"{password}\n".encode(),
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return cli


def _mailstead_command() -> list[str]:
    # The interpreter running the benchmark has mailstead installed (the venv).
    return [sys.executable, "-m", "mailstead"]


def mailstead_version() -> str:
    from importlib.metadata import version

    return version("mailstead")


def _config_text(port: int) -> str:
    listeners = ("submission", "submissions", "imap", "imaps", "pop3", "pop3s")
    off = "".join(f"{name} = []\n" for name in listeners)
    return (
        'hostname = "mx.mailstead.test"\n'
        'data_dir = "var"\n'
        'domains = ["example.test"]\n'
        "[listen]\n"
        f"smtp = [{json.dumps(f'127.0.0.1:{port}')}]\n"
        f"{off}"
        "[storage]\n"
        'format = "maildir"\n'
        "[delivery]\n"
        f"dns_servers = [{json.dumps(loopback_dns())}]\n"
        # The benchmarks run as root on these machines; the server stays on loopback.
        "[run]\n"
        "allow_root = true\n"
    )


@dataclass(frozen=True)
class MailsteadServer:
    """A running ``mailstead serve``: its process, port and the recipient's Maildir."""

    process: subprocess.Popen[bytes]
    port: int
    maildir: Path
    log: Path


@contextmanager
def running_mailstead(root: Path, port: int, recipient: str) -> Iterator[MailsteadServer]:
    """Configure Mailstead under ``root``, add ``recipient``, serve; stop on exit."""
    config = root / "mailstead.toml"
    root.mkdir(parents=True, exist_ok=True)
    config.write_text(_config_text(port))
    (root / "var").mkdir()
    cli = [*_mailstead_command(), "--config", str(config)]
    # The password is never used (the MTA port takes mail without AUTH).
    subprocess.run(
        [*cli, "user", "add", recipient, "--password-stdin"],
        input=b"bench-only-password\n",
        check=True,
        stdout=subprocess.DEVNULL,
    )
    local, domain = recipient.split("@")
    log_path = root / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen([*cli, "serve"], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, process)
        yield MailsteadServer(
            process, port, root / "var" / "mail" / domain / local / "Maildir", log_path
        )
    finally:
        if process.poll() is None:
            # SIGTERM is serve's documented clean shutdown.
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
