"""ARC through two receivers: A forwards to an alias's remote target, B verifies the chain.

A (mx.example.test) has ``fwd@example.test`` → ``carol@other.test`` and
``bob@example.test``; B (mx.other.test) has the user carol. The queued
copy A made is what B receives, from A's address 127.0.0.5 (which the
sender's SPF does not list). DNS: tests/mailauth/authzones.py plus the
sealers' keys.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mailstead.config import AuthChecksConfig
from mailstead.directory import Directory
from mailstead.limits import SMTPLimits
from mailstead.mailauth.hook import Checks, Client
from mailstead.mailauth.lookups import AuthDNS
from mailstead.mailauth.verify import AuthChecks
from mailstead.mta.queue import Queue
from mailstead.mta.receiver import Peer, Receiver, Refused, Role
from mailstead.proto.smtp.events import MailParams, RcptParams
from mailstead.store import open_store
from mailstead.testing.dns import DNSServer
from tests.mailauth.authzones import AUTHORISED_IP, message, sign
from tests.mailauth.test_arc import FORWARDER, LIST, RECEIVED_OK, our_results, sealer_for, zones

A_IP = "127.0.0.5"


@pytest.fixture(scope="module")
def dns_address() -> Iterator[tuple[str, int]]:
    with DNSServer(zones()) as address:
        yield address


def make_receiver(
    root: Path,
    *,
    host: str,
    domain: str,
    dns: tuple[str, int],
    role: Role = Role.MTA,
    seed: int = FORWARDER,
    trusted: tuple[str, ...] = (),
) -> Receiver:
    directory = Directory(root / "directory.sqlite3", [domain])
    if domain == "example.test":
        directory.add_user("bob@example.test", "pw")
        directory.add_alias("fwd@example.test", ["carol@other.test", "bob@example.test"])
    else:
        directory.add_user("carol@other.test", "pw")
    config = AuthChecksConfig(arc_trusted_sealers=trusted)
    checks = AuthChecks(config, AuthDNS([dns], cache_size=0), hostname=host)
    return Receiver(
        role,
        hostname=host,
        domains=[domain],
        directory=directory,
        store=open_store("maildir", root / "mail"),
        queue=Queue(root),
        limits=SMTPLimits(),
        checks=Checks(host, [checks], sealer=sealer_for(root, domain, seed, host=host)),
    )


def send(receiver: Receiver, ip: str, to: str, content: bytes, user: str | None = None) -> str:
    """C: MAIL FROM:<alice@sender.test> / RCPT TO:<to> / DATA; the reply's first line."""
    try:
        peer = Peer(ip=ip, helo="mail.sender.test", user=user)
        delivery = receiver.start(peer, "alice@sender.test", MailParams())
        delivery.add_rcpt(to, RcptParams())
        delivery.body(content)
        return delivery.commit().reply.one_line()
    except Refused as refused:
        return refused.reply.one_line()


def queued(receiver: Receiver) -> bytes:
    (entry,) = receiver.queue.list()
    return receiver.queue.open_message(entry.id)


def stored(root: Path, address: str) -> bytes:
    local, domain = address.split("@")
    (path,) = (root / "mail" / domain / local / "Maildir" / "new").iterdir()
    return path.read_bytes()


def header_of(content: bytes) -> str:
    head = content.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0].decode()
    return head.replace("\n\t", " ").replace("\n ", " ")


@pytest.fixture
def a(tmp_path: Path, dns_address: tuple[str, int]) -> Receiver:
    return make_receiver(
        tmp_path / "a", host="mx.example.test", domain="example.test", dns=dns_address
    )


def b_receiver(tmp_path: Path, dns: tuple[str, int], trusted: tuple[str, ...] = ()) -> Receiver:
    return make_receiver(
        tmp_path / "b", host="mx.other.test", domain="other.test", dns=dns, trusted=trusted
    )


def test_the_forwarded_copy_is_sealed_and_passes_at_the_next_hop(
    a: Receiver, tmp_path: Path, dns_address: tuple[str, int]
) -> None:
    assert send(a, AUTHORISED_IP, "fwd@example.test", sign(message())).startswith("250 ")
    forwarded = queued(a)
    # The ARC set first, then our Received and Authentication-Results.
    assert forwarded.startswith(b"ARC-Seal: i=1; cv=none; a=rsa-sha256; d=example.test; s=arc;")
    head = header_of(forwarded)
    assert "ARC-Authentication-Results: i=1; mx.example.test; spf=pass" in head
    assert "arc=none; dmarc=pass header.from=sender.test" in head
    # Bob's local copy is not forwarded: no ARC fields.
    assert b"ARC-" not in stored(tmp_path / "a", "bob@example.test")

    b = b_receiver(tmp_path, dns_address)
    assert send(b, A_IP, "carol@other.test", forwarded).startswith("250 ")
    results = header_of(stored(tmp_path / "b", "carol@other.test")).split(
        "Authentication-Results: mx.other.test; ", 1
    )[1]
    assert results.startswith(
        "spf=fail smtp.mailfrom=alice@sender.test; "
        "dkim=pass header.d=sender.test header.s=sel header.b="
    )
    assert (
        "; arc=pass (i=1 d=example.test) header.oldest-pass=0 smtp.remote-ip=127.0.0.5; "
        "dmarc=pass (p=reject dis=none) header.from=sender.test"
    ) in results


def test_a_body_changed_after_the_seal_fails_arc_and_dmarc(
    a: Receiver, tmp_path: Path, dns_address: tuple[str, int]
) -> None:
    send(a, AUTHORISED_IP, "fwd@example.test", sign(message()))
    changed = queued(a).replace(b"Hello Bob.", b"Pay Mallory.")
    # Even trusting A: the chain does not pass, so nothing vouches for the message.
    b = b_receiver(tmp_path, dns_address, trusted=("example.test",))
    reply = send(b, A_IP, "carol@other.test", changed)
    assert reply == "550 5.7.1 Message rejected by the sender domain's DMARC policy"


def list_copy(tmp_path: Path) -> bytes:
    """What a mailing list (list.test) sends: footer added, then sealed with dmarc=pass."""
    received = our_results(*RECEIVED_OK, host="mx.list.test") + sign(message())
    changed = received.replace(b"Hello Bob.\r\n", b"Hello Bob.\r\n-- \r\nthe list\r\n")
    sealer = sealer_for(tmp_path / "list", "list.test", LIST, host="mx.list.test")
    return sealer.seal(changed, "list.test") + changed


def test_a_trusted_sealer_lets_a_dmarc_failure_in(
    tmp_path: Path, dns_address: tuple[str, int]
) -> None:
    b = b_receiver(tmp_path, dns_address, trusted=("list.test",))
    assert send(b, A_IP, "carol@other.test", list_copy(tmp_path)).startswith("250 ")
    head = header_of(stored(tmp_path / "b", "carol@other.test"))
    assert "dkim=fail (body hash did not verify)" in head
    assert "arc=pass (i=1 d=list.test) header.oldest-pass=0 smtp.remote-ip=127.0.0.5" in head
    assert (
        "dmarc=fail (p=reject dis=none override=trusted_forwarder:list.test) "
        "header.from=sender.test"
    ) in head


def test_an_untrusted_sealer_changes_nothing(tmp_path: Path, dns_address: tuple[str, int]) -> None:
    b = b_receiver(tmp_path, dns_address, trusted=("example.test",))
    reply = send(b, A_IP, "carol@other.test", list_copy(tmp_path))
    assert reply == "550 5.7.1 Message rejected by the sender domain's DMARC policy"


def test_the_event_and_the_log_carry_arc(tmp_path: Path, dns_address: tuple[str, int]) -> None:
    checks = AuthChecks(
        AuthChecksConfig(arc_trusted_sealers=("list.test",)),
        AuthDNS([dns_address], cache_size=0),
        hostname="mx.other.test",
    )
    client = Client(ip=A_IP, helo="mx.list.test")
    verdict = checks.body(client, "alice@sender.test", ["carol@other.test"], list_copy(tmp_path))
    assert verdict.refusal is None and not verdict.junk
    authentication = verdict.event["authentication"]
    assert isinstance(authentication, dict)
    assert authentication["arc"] == {"result": "pass", "sets": 1, "sealer": "list.test"}
    assert authentication["dmarc"] == {
        "result": "fail",
        "header_from": "sender.test",
        "policy": "reject",
        "disposition": "none",
        "override": {"reason": "trusted_forwarder", "sealer": "list.test"},
    }
    assert authentication["action"] == "deliver"
    assert verdict.log == {
        "spf": "fail",
        "dkim": "fail",
        "arc": "pass",
        "dmarc": "fail",
        "dmarc_override": "arc:list.test",
    }


def test_mail_from_our_own_users_is_never_sealed(
    tmp_path: Path, dns_address: tuple[str, int]
) -> None:
    msa = make_receiver(
        tmp_path / "a",
        host="mx.example.test",
        domain="example.test",
        dns=dns_address,
        role=Role.MSA,
    )
    msa.directory.add_user("alice@example.test", "pw")
    content = our_results(*RECEIVED_OK) + message(from_="alice@example.test")
    peer = Peer(ip="127.0.0.1", helo="laptop", user="alice@example.test")
    delivery = msa.start(peer, "alice@example.test", MailParams())
    delivery.add_rcpt("fwd@example.test", RcptParams())
    delivery.body(content)
    delivery.commit()
    assert b"ARC-" not in queued(msa)
