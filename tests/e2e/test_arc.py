"""ARC between two real Mailstead servers on loopback: A forwards, B verifies.

A world of three hosts: the outside sender (smtplib on 127.0.0.1, the only
address ``sender.test``'s SPF lists; it DKIM-signs with the test key), A
for example.test on 127.0.0.2 and B for other.test on 127.0.0.3, each
sending from its own address, and a DNS server of the test's own with the
MX records, sender.test's SPF/DKIM/DMARC records and the ARC keys of A
and B (selector ``arc``). B posts its ``message.received`` events to a
webhook receiver of the test's own. Every packet stays on 127.0.0.0/8.

* ``fwd@example.test`` (A) → ``carol@other.test`` (B): one forwarder.
* ``loop@example.test`` (A) → ``relay@other.test`` (B) → ``dave@example.test``
  (A): two forwarders, the chain reaches i=2.
"""

from __future__ import annotations

import smtplib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

from mailstead.config import load_config
from mailstead.directory import Directory
from mailstead.testing.dns import DNSServer, Zones
from mailstead.tlscert import ensure_self_signed
from tests.e2e.harness import ServerHandle, running_config
from tests.e2e.test_outbound import _free_port_on
from tests.e2e.test_webhooks import Receiver, wait_for, webhook_config
from tests.mailauth import authzones
from tests.mailauth.authzones import dkim_txt, message, private_key, sign

A_KEY, B_KEY = 5, 6
T = TypeVar("T")


def zones() -> Zones:
    found = dict(authzones.zones())
    found.update(
        {
            "example.test": {"MX": [(10, "mx.example.test")]},
            "mx.example.test": {"A": ["127.0.0.2"]},
            "other.test": {"MX": [(10, "mx.other.test")]},
            "mx.other.test": {"A": ["127.0.0.3"]},
            "arc._domainkey.example.test": {"TXT": [dkim_txt(private_key(A_KEY))]},
            "arc._domainkey.other.test": {"TXT": [dkim_txt(private_key(B_KEY))]},
        }
    )
    return found


def _config(
    root: Path,
    *,
    domain: str,
    ip: str,
    port: int,
    dns: str,
    seed: int,
    users: list[str],
    aliases: dict[str, list[str]],
    extra: str = "",
) -> Path:
    root.mkdir(parents=True)
    path = root / "mailstead.toml"
    path.write_text(
        f'hostname = "mx.{domain}"\ndata_dir = "var"\ndomains = ["{domain}"]\nworkers = 1\n'
        f'[listen]\nsmtp = ["{ip}:{port}"]\nsubmission = []\nsubmissions = []\n'
        "imap = []\nimaps = []\npop3 = []\npop3s = []\n"
        f'[delivery]\ndns_servers = ["{dns}"]\nsmtp_port = {port}\nsource_ip = "{ip}"\n'
        '[auth_checks]\ndmarc_reject = "junk"\n'
        f"[run]\nallow_root = true\n{extra}"
    )
    config = load_config(path)
    config.data_dir.mkdir(parents=True, exist_ok=True)
    ensure_self_signed(config.tls.cert, config.tls.key, config.hostname)
    # The domain's RSA DKIM key is the test key the DNS publishes.
    keys = config.data_dir / "dkim" / domain
    keys.mkdir(parents=True, mode=0o700)
    (keys / "arc.rsa.key").write_bytes(private_key(seed))
    with Directory(config.db_path("directory"), config.domains) as directory:
        for user in users:
            directory.add_user(user, "pw")
        for alias, targets in aliases.items():
            directory.add_alias(alias, targets)
    return path


@dataclass
class World:
    a: ServerHandle
    b: ServerHandle
    port: int
    #: B's message.received events.
    hooks: Receiver

    def send_to_a(self, to: str, content: bytes) -> None:
        """The outside sender, from the address its SPF lists."""
        source = ("127.0.0.1", 0)
        with smtplib.SMTP("127.0.0.2", self.port, timeout=20, source_address=source) as client:
            client.ehlo("mail.sender.test")
            client.sendmail("alice@sender.test", [to], content)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    port = _free_port_on("127.0.0.2", "127.0.0.3")
    with DNSServer(zones()) as (dns_host, dns_port), Receiver() as hooks:
        dns = f"{dns_host}:{dns_port}"
        a = _config(
            tmp_path / "a",
            domain="example.test",
            ip="127.0.0.2",
            port=port,
            dns=dns,
            seed=A_KEY,
            users=["dave@example.test"],
            aliases={
                "fwd@example.test": ["carol@other.test"],
                "loop@example.test": ["relay@other.test"],
            },
        )
        b = _config(
            tmp_path / "b",
            domain="other.test",
            ip="127.0.0.3",
            port=port,
            dns=dns,
            seed=B_KEY,
            users=["carol@other.test"],
            aliases={"relay@other.test": ["dave@example.test"]},
            extra=webhook_config(hooks.url, '["message.received"]'),
        )
        with (
            running_config(load_config(a), outbound=True) as server_a,
            running_config(load_config(b), outbound=True) as server_b,
        ):
            yield World(server_a, server_b, port, hooks)


def _wait_for(condition: Callable[[], list[T]], timeout: float = 20.0) -> list[T]:
    deadline = time.monotonic() + timeout
    while not (found := condition()):
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for delivery")
        time.sleep(0.05)
    return found


def _ours(stored: bytes, host: str) -> str:
    """The Authentication-Results field ``host`` wrote, unfolded."""
    head = stored.split(b"\n\n", 1)[0].decode()
    field = head.split(f"\nAuthentication-Results: {host};", 1)[1]
    lines = [field.split("\n", 1)[0]]
    for line in field.split("\n")[1:]:
        if not line.startswith(("\t", " ")):
            break
        lines.append(line)
    return " ".join(" ".join(lines).split())


def test_a_forwarded_message_passes_arc_at_the_next_instance(world: World) -> None:
    world.send_to_a("fwd@example.test", sign(message()))
    (stored,) = _wait_for(lambda: world.b.new_messages("carol@other.test"))
    results = _ours(stored, "mx.other.test")
    # SPF fails (A's address is not sender.test's), DKIM still passes, and
    # the chain tells B what A saw.
    assert results.startswith("spf=fail smtp.mailfrom=alice@sender.test; dkim=pass")
    assert (
        "arc=pass (i=1 d=example.test) header.oldest-pass=0 smtp.remote-ip=127.0.0.2; "
        "dmarc=pass (p=reject dis=none) header.from=sender.test"
    ) in results
    head = stored.split(b"\n\n", 1)[0]
    assert b"\nARC-Seal: i=1; cv=none; a=rsa-sha256; d=example.test; s=arc;" in head
    aar = head.split(b"\nARC-Authentication-Results: ", 1)[1].split(b"\nReceived:", 1)[0]
    assert aar.startswith(b"i=1; mx.example.test;\n spf=pass smtp.mailfrom=alice@sender.test;")
    assert b"arc=none;\n dmarc=pass header.from=sender.test" in aar
    wait_for(lambda: len(world.hooks.of_type("message.received")) == 1)
    (event,) = world.hooks.of_type("message.received")
    authentication = event.data["authentication"]
    assert authentication["arc"] == {"result": "pass", "sets": 1, "sealer": "example.test"}
    assert authentication["dmarc"]["result"] == "pass"


def test_two_forwarders_make_a_chain_of_two(world: World) -> None:
    world.send_to_a("loop@example.test", sign(message()))
    (stored,) = _wait_for(lambda: world.a.new_messages("dave@example.test"))
    results = _ours(stored, "mx.example.test")
    assert (
        "arc=pass (i=2 d=other.test) header.oldest-pass=0 smtp.remote-ip=127.0.0.3; "
        "dmarc=pass (p=reject dis=none) header.from=sender.test"
    ) in results
    head = stored.split(b"\n\n", 1)[0]
    assert b"\nARC-Seal: i=2; cv=pass; a=rsa-sha256; d=other.test; s=arc;" in head
    assert b"\nARC-Seal: i=1; cv=none; a=rsa-sha256; d=example.test; s=arc;" in head
    # B's set carries B's verdict on A's: the chain passed there too.
    assert b"\nARC-Authentication-Results: i=2; mx.other.test;\n spf=fail" in head


def test_a_body_changed_on_the_way_fails_arc(world: World) -> None:
    world.send_to_a("fwd@example.test", sign(message()))
    (stored,) = _wait_for(lambda: world.b.new_messages("carol@other.test"))
    # What A sent, with a footer added in transit, as a list would add one.
    sent = stored[stored.index(b"ARC-Seal: i=1") :].replace(b"\n", b"\r\n")
    changed = sent.replace(b"Hello Bob.\r\n", b"Hello Bob.\r\n-- \r\nfooter\r\n")
    with smtplib.SMTP("127.0.0.3", world.port, timeout=20, source_address=("127.0.0.2", 0)) as c:
        c.ehlo("mx.example.test")
        c.sendmail("alice@sender.test", ["carol@other.test"], changed)
    junk = world.b.maildir("carol@other.test") / ".Junk" / "new"
    (path,) = _wait_for(lambda: list(junk.iterdir()) if junk.is_dir() else [])
    results = _ours(path.read_bytes(), "mx.other.test")
    assert "dkim=fail (body hash did not verify)" in results
    assert (
        "arc=fail (Most recent ARC-Message-Signature did not validate) "
        "smtp.remote-ip=127.0.0.2; dmarc=fail (p=reject dis=reject)"
    ) in results
