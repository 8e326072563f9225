"""SPF, DKIM and DMARC at the end of DATA: verdicts, actions and the header we write.

The receiver runs with the real check hook; DNS comes from a test server
on 127.0.0.1 serving the records of tests/mailauth/authzones.py.
"""

from __future__ import annotations

import email
import time
from collections.abc import Iterator
from email import policy
from pathlib import Path

import pytest

from mailstead.config import AuthChecksConfig
from mailstead.directory import Directory
from mailstead.limits import SMTPLimits
from mailstead.mailauth.hook import Checks
from mailstead.mailauth.lookups import AuthDNS
from mailstead.mailauth.verify import AuthChecks
from mailstead.mta.queue import Queue
from mailstead.mta.receiver import Peer, Receiver, Refused, Role
from mailstead.proto.smtp.events import MailParams, RcptParams
from mailstead.store import open_store
from mailstead.testing.dns import DNSServer
from tests.mailauth import authzones
from tests.mailauth.authzones import AUTHORISED_IP, STRANGER_IP, message, sign

HOST = "mx.example.test"


@pytest.fixture(scope="module")
def dns_server() -> Iterator[tuple[str, int]]:
    with DNSServer(authzones.zones(), drop={"slow.test", "_dmarc.slow.test"}) as address:
        yield address


@pytest.fixture
def directory(tmp_path: Path) -> Iterator[Directory]:
    with Directory(tmp_path / "directory.sqlite3", ["example.test"]) as d:
        d.add_user("bob@example.test", "pw")
        yield d


def make_receiver(
    tmp_path: Path, directory: Directory, server: tuple[str, int], **settings: object
) -> Receiver:
    config = AuthChecksConfig(**settings)  # type: ignore[arg-type]
    checks = AuthChecks(config, AuthDNS([server]), hostname=HOST)
    return Receiver(
        Role.MTA,
        hostname=HOST,
        domains=["example.test"],
        directory=directory,
        store=open_store("maildir", tmp_path / "mail"),
        queue=Queue(tmp_path),
        limits=SMTPLimits(),
        checks=Checks(HOST, [checks]),
    )


def send(receiver: Receiver, ip: str, sender: str, content: bytes) -> str:
    """C: MAIL FROM / RCPT TO:<bob@example.test> / DATA; the reply's first line."""
    try:
        delivery = receiver.start(Peer(ip=ip, helo="mail.sender.test"), sender, MailParams())
        delivery.add_rcpt("bob@example.test", RcptParams())
        delivery.body(content)
        return delivery.commit().reply.one_line()
    except Refused as refused:
        return refused.reply.one_line()


def stored(tmp_path: Path, folder: str = "") -> list[email.message.EmailMessage]:
    new = tmp_path / "mail" / "example.test" / "bob" / "Maildir" / folder / "new"
    if not new.is_dir():
        return []
    return [
        email.message_from_bytes(p.read_bytes(), policy=policy.default)  # type: ignore[misc]
        for p in sorted(new.iterdir())
    ]


def results(msg: email.message.EmailMessage) -> str:
    headers = msg.get_all("Authentication-Results") or []
    assert len(headers) == 1, headers
    return " ".join(str(headers[0]).split())


@pytest.fixture
def receiver(tmp_path: Path, directory: Directory, dns_server: tuple[str, int]) -> Receiver:
    return make_receiver(tmp_path, directory, dns_server)


def test_signed_message_from_an_authorised_address_passes(
    receiver: Receiver, tmp_path: Path
) -> None:
    reply = send(receiver, AUTHORISED_IP, "alice@sender.test", sign(message()))
    assert reply.startswith("250 2.0.0 Ok: queued as ")
    (msg,) = stored(tmp_path)
    header = results(msg)
    assert header.startswith(f"{HOST}; spf=pass smtp.mailfrom=alice@sender.test; dkim=pass")
    assert "header.d=sender.test header.s=sel header.b=" in header
    assert header.endswith("dmarc=pass (p=reject dis=none) header.from=sender.test")


def test_signature_passes_from_an_unauthorised_address_too(
    receiver: Receiver, tmp_path: Path
) -> None:
    # A forwarder: SPF fails, the aligned DKIM signature carries DMARC.
    reply = send(receiver, STRANGER_IP, "alice@sender.test", sign(message()))
    assert reply.startswith("250 ")
    header = results(stored(tmp_path)[0])
    assert "spf=fail smtp.mailfrom=alice@sender.test" in header
    assert "dmarc=pass" in header


def test_altered_body_fails_dkim_and_p_reject_refuses(receiver: Receiver, tmp_path: Path) -> None:
    altered = sign(message()).replace(b"Hello Bob.", b"Pay Mallory.")
    reply = send(receiver, STRANGER_IP, "alice@sender.test", altered)
    assert reply == "550 5.7.1 Message rejected by the sender domain's DMARC policy"
    assert stored(tmp_path) == []


def test_altered_body_from_an_authorised_address_passes_by_spf(
    receiver: Receiver, tmp_path: Path
) -> None:
    altered = sign(message()).replace(b"Hello Bob.", b"Hello Bob!")
    assert send(receiver, AUTHORISED_IP, "alice@sender.test", altered).startswith("250 ")
    header = results(stored(tmp_path)[0])
    assert "dkim=fail (body hash did not verify) header.d=sender.test" in header
    assert "dmarc=pass" in header


def test_wrong_key_fails_dkim(receiver: Receiver, tmp_path: Path) -> None:
    forged = sign(message(), seed=1)  # not the key published at sel._domainkey
    assert send(receiver, STRANGER_IP, "alice@sender.test", forged).startswith("550 5.7.1 ")
    assert send(receiver, AUTHORISED_IP, "alice@sender.test", forged).startswith("250 ")
    assert "dkim=fail" in results(stored(tmp_path)[0])


def test_p_reject_from_an_unauthorised_address_is_refused(receiver: Receiver) -> None:
    reply = send(receiver, STRANGER_IP, "alice@sender.test", message())
    assert reply == "550 5.7.1 Message rejected by the sender domain's DMARC policy"


def test_second_from_header_fails_dmarc(receiver: Receiver) -> None:
    doubled = sign(message(extra=b"From: boss@example.test\r\n"))
    assert send(receiver, AUTHORISED_IP, "alice@sender.test", doubled).startswith("550 5.7.1 ")


def test_two_addresses_in_from_fail_dmarc(receiver: Receiver) -> None:
    content = message(from_="alice@sender.test, boss@example.test")
    assert send(receiver, AUTHORISED_IP, "alice@sender.test", content).startswith("550 5.7.1 ")


def test_quarantine_goes_to_junk(receiver: Receiver, tmp_path: Path) -> None:
    content = message(from_="carol@quarantine.test")
    assert send(receiver, STRANGER_IP, "carol@quarantine.test", content).startswith("250 ")
    assert stored(tmp_path) == []
    (junk,) = stored(tmp_path, ".Junk")
    assert "dmarc=fail (p=quarantine dis=quarantine) header.from=quarantine.test" in results(junk)


def test_dmarc_reject_junk_sends_to_junk(
    tmp_path: Path, directory: Directory, dns_server: tuple[str, int]
) -> None:
    receiver = make_receiver(tmp_path, directory, dns_server, dmarc_reject="junk")
    assert send(receiver, STRANGER_IP, "alice@sender.test", message()).startswith("250 ")
    assert "dmarc=fail (p=reject dis=reject)" in results(stored(tmp_path, ".Junk")[0])


def test_dmarc_reject_accept_only_records(
    tmp_path: Path, directory: Directory, dns_server: tuple[str, int]
) -> None:
    receiver = make_receiver(tmp_path, directory, dns_server, dmarc_reject="accept")
    assert send(receiver, STRANGER_IP, "alice@sender.test", message()).startswith("250 ")
    assert "dmarc=fail (p=reject dis=reject)" in results(stored(tmp_path)[0])


def test_spf_fail_without_dmarc_policy_is_delivered(receiver: Receiver, tmp_path: Path) -> None:
    content = message(from_="dan@relaxed.test")
    assert send(receiver, STRANGER_IP, "dan@relaxed.test", content).startswith("250 ")
    header = results(stored(tmp_path)[0])
    assert (
        "spf=fail smtp.mailfrom=dan@relaxed.test; dkim=none; arc=none; dmarc=fail (p=none dis=none)"
        in header
    )


def test_forged_results_claiming_our_name_are_removed(receiver: Receiver, tmp_path: Path) -> None:
    forged = (
        b"Authentication-Results: MX.example.test;\r\n\tdmarc=pass header.from=sender.test\r\n"
        b"Authentication-Results: other.example; spf=pass smtp.mailfrom=x@other.example\r\n"
    )
    content = sign(message()).replace(b"From: Alice", forged + b"From: Alice", 1)
    assert send(receiver, AUTHORISED_IP, "alice@sender.test", content).startswith("250 ")
    (msg,) = stored(tmp_path)
    fields = [" ".join(str(v).split()) for v in msg.get_all("Authentication-Results") or []]
    assert len(fields) == 2
    assert fields[0].startswith(f"{HOST}; spf=pass")
    assert fields[1].startswith("other.example; spf=pass")  # someone else's: kept


def test_null_sender_checks_the_helo_name(receiver: Receiver, tmp_path: Path) -> None:
    content = sign(message(from_="mailer-daemon@sender.test"))
    reply = send(receiver, AUTHORISED_IP, "", content)
    assert reply.startswith("250 ")
    header = results(stored(tmp_path)[0])
    assert header.startswith(f"{HOST}; spf=none smtp.helo=mail.sender.test;")


def test_slow_dns_gives_temperror_within_the_budget(
    tmp_path: Path, directory: Directory, dns_server: tuple[str, int]
) -> None:
    receiver = make_receiver(tmp_path, directory, dns_server, dns_timeout=1)
    started = time.monotonic()
    reply = send(receiver, STRANGER_IP, "eve@slow.test", message(from_="eve@slow.test"))
    assert time.monotonic() - started < 2.5
    assert reply.startswith("250 ")  # temperror refuses nothing
    header = results(stored(tmp_path)[0])
    assert "spf=temperror" in header and "dmarc=temperror" in header


def test_results_in_the_received_log_line(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="mailstead.smtp")
    send(receiver, AUTHORISED_IP, "alice@sender.test", sign(message()))
    (line,) = [r for r in caplog.records if r.getMessage() == "received"]
    fields = getattr(line, "fields", None) or vars(line)
    text = repr(fields)
    assert "'spf': 'pass'" in text and "'dkim': 'pass'" in text and "'dmarc': 'pass'" in text
