"""The listener policy and the durable hand-off, without sockets."""

from __future__ import annotations

import email
from collections.abc import Iterator
from email import policy
from pathlib import Path

import pytest

from mailstead.directory import Directory, DirectoryError, Quota, Resolution
from mailstead.limits import SMTPLimits
from mailstead.logs import LogfmtFormatter
from mailstead.mta import quota
from mailstead.mta.queue import Queue
from mailstead.mta.receiver import Peer, Receiver, Refused, Role
from mailstead.proto.smtp.events import MailParams, Message, RcptParams, Recipient
from mailstead.proto.smtp.replies import Reply
from mailstead.store import open_store

NO_PARAMS = RcptParams()


@pytest.fixture
def directory(tmp_path: Path) -> Iterator[Directory]:
    with Directory(tmp_path / "directory.sqlite3", ["example.test"]) as d:
        d.add_user("alice@example.test", "pw")
        d.add_user("bob@example.test", "pw")
        d.add_alias("team@example.test", ["alice@example.test", "bob@example.test"])
        d.add_alias("fwd@example.test", ["someone@remote.test", "alice@example.test"])
        yield d


def _receiver(role: Role, directory: Directory, tmp_path: Path, **limits: int) -> Receiver:
    return Receiver(
        role,
        hostname="mx.example.test",
        domains=["example.test"],
        directory=directory,
        store=open_store("maildir", tmp_path / "mail"),
        queue=Queue(tmp_path),
        limits=SMTPLimits(**limits),
    )


def _message(*recipients: str, content: bytes = b"Subject: t\r\n\r\nbody\r\n") -> Message:
    return Message(
        "carol@remote.test",
        MailParams(),
        tuple(Recipient(r, NO_PARAMS) for r in recipients),
        content,
    )


def _commit(receiver: Receiver, peer: Peer, message: Message) -> Reply:
    """MAIL FROM, every RCPT TO (each must be accepted), DATA: the reply to DATA."""
    delivery = receiver.start(peer, message.sender, message.mail_params)
    for rcpt in message.recipients:
        delivery.add_rcpt(rcpt.address, rcpt.params)
    try:
        delivery.body(message.content)
        return delivery.commit().reply
    except Refused as refused:
        delivery.abort()
        return refused.reply


def _route(receiver: Receiver, peer: Peer, recipient: str) -> tuple[Reply, Resolution | None]:
    """The reply to RCPT TO and, when it is 250, where the copies go."""
    try:
        return Reply(250, "2.1.5", "Ok"), receiver.route(peer, recipient)
    except Refused as refused:
        return refused.reply, None


def _inbox(tmp_path: Path, address: str) -> list[bytes]:
    local, domain = address.split("@")
    new = tmp_path / "mail" / domain / local / "Maildir" / "new"
    return [p.read_bytes() for p in sorted(new.iterdir())] if new.exists() else []


STRANGER = Peer(ip="192.0.2.7", helo="client.remote.test")
ALICE = Peer(ip="192.0.2.8", helo="laptop", tls=True, user="alice@example.test")


@pytest.mark.parametrize(
    ("recipient", "code", "enhanced"),
    [
        ("alice@example.test", 250, "2.1.5"),
        ("ALICE@EXAMPLE.TEST", 250, "2.1.5"),
        ("team@example.test", 250, "2.1.5"),
        ("postmaster", 550, "5.1.1"),  # no postmaster alias in this directory
        ("nobody@example.test", 550, "5.1.1"),
        ("someone@remote.test", 554, "5.7.1"),  # never an open relay
        ("../../x@example.test", 550, "5.1.1"),
        ('"alice/../bob"@example.test', 550, "5.1.1"),
    ],
)
def test_mta_recipient_policy(
    directory: Directory, tmp_path: Path, recipient: str, code: int, enhanced: str
) -> None:
    reply, route = _route(_receiver(Role.MTA, directory, tmp_path), STRANGER, recipient)
    assert (reply.code, reply.enhanced) == (code, enhanced)
    assert (route is not None) == (code == 250)


def test_msa_relays_only_for_the_authenticated(directory: Directory, tmp_path: Path) -> None:
    msa = _receiver(Role.MSA, directory, tmp_path)
    reply, route = _route(msa, ALICE, "someone@remote.test")
    assert reply.code == 250 and route is not None and route.remote == ("someone@remote.test",)
    assert _route(msa, STRANGER, "someone@remote.test")[0].code == 554


@pytest.mark.parametrize(
    ("sender", "code"),
    [
        ("alice@example.test", 250),
        ("Alice@Example.TEST", 250),
        ("team@example.test", 250),  # an alias that reaches alice
        ("bob@example.test", 553),
        ("", 553),
        ("alice@remote.test", 553),
    ],
)
def test_msa_sender_must_be_owned(
    directory: Directory, tmp_path: Path, sender: str, code: int
) -> None:
    msa = _receiver(Role.MSA, directory, tmp_path)
    try:
        msa.start(ALICE, sender, MailParams())
        reply_code = 250
    except Refused as refused:
        reply_code = refused.reply.code
    assert reply_code == code


def test_commit_delivers_one_copy_per_mailbox(directory: Directory, tmp_path: Path) -> None:
    reply = _commit(
        _receiver(Role.MTA, directory, tmp_path),
        STRANGER,
        _message("team@example.test", "alice@example.test", "Bob@Example.Test"),
    )
    assert reply.code == 250 and reply.enhanced == "2.0.0"
    (alice,) = _inbox(tmp_path, "alice@example.test")
    (bob,) = _inbox(tmp_path, "bob@example.test")
    assert alice.startswith(b"Return-Path: <carol@remote.test>\nDelivered-To: alice@example.test\n")
    assert b"for <team@example.test>" in alice
    assert bob.endswith(b"\nSubject: t\n\nbody\n")


def test_alias_to_a_remote_address_is_queued(directory: Directory, tmp_path: Path) -> None:
    receiver = _receiver(Role.MTA, directory, tmp_path)
    assert _commit(receiver, STRANGER, _message("fwd@example.test")).code == 250
    assert len(_inbox(tmp_path, "alice@example.test")) == 1
    (queued,) = receiver.queue.list()
    assert [r.address for r in queued.recipients] == ["someone@remote.test"]
    raw = receiver.queue.open_message(queued.id)
    assert raw.startswith(b"Received: from client.remote.test ([192.0.2.7])\r\n")
    assert raw.endswith(b"\r\n\r\nbody\r\n")


def test_user_deleted_after_rcpt_still_gets_the_message(
    directory: Directory, tmp_path: Path
) -> None:
    # The 250 to RCPT is a promise; a directory change before DATA ends
    # must not turn it into a loss.
    receiver = _receiver(Role.MTA, directory, tmp_path)
    delivery = receiver.start(STRANGER, "carol@remote.test", MailParams())
    delivery.add_rcpt("bob@example.test", NO_PARAMS)
    directory.delete_user("bob@example.test")
    delivery.body(b"Subject: t\r\n\r\nbody\r\n")
    assert delivery.commit().reply.code == 250
    assert len(_inbox(tmp_path, "bob@example.test")) == 1


def test_mail_loop_is_refused(directory: Directory, tmp_path: Path) -> None:
    receiver = _receiver(Role.MTA, directory, tmp_path, max_received_headers=3)
    looped = b"Received: a\r\nReceived: b\r\nreceived: c\r\nSubject: x\r\n\r\nReceived: body\r\n"
    reply = _commit(receiver, STRANGER, _message("alice@example.test", content=looped))
    assert (reply.code, reply.enhanced) == (554, "5.4.6")
    assert _inbox(tmp_path, "alice@example.test") == []
    fine = b"Received: a\r\nReceived: b\r\nSubject: x\r\n\r\nReceived: body\r\n"
    assert _commit(receiver, STRANGER, _message("alice@example.test", content=fine)).code == 250


def test_storage_failure_answers_451(
    directory: Directory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver = _receiver(Role.MTA, directory, tmp_path)

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(receiver.store, "stage", disk_full)
    reply = _commit(receiver, STRANGER, _message("alice@example.test"))
    assert (reply.code, reply.enhanced) == (451, "4.3.0")


def test_received_header_names_tls_and_auth(directory: Directory, tmp_path: Path) -> None:
    receiver = _receiver(Role.MSA, directory, tmp_path)
    message = Message(
        "alice@example.test",
        MailParams(smtputf8=True),
        (Recipient("bob@example.test", NO_PARAMS),),
        b"Subject: t\r\n\r\nx\r\n",
    )
    assert _commit(receiver, ALICE, message).code == 250
    (stored,) = _inbox(tmp_path, "bob@example.test")
    assert b"by mx.example.test (Mailstead) with UTF8ESMTPSA id " in stored


# -- peer text in trace headers and log lines: the defence behind the protocol ------

# What the protocol refuses, handed to the receiver as if a caller had not.
HOSTILE_HELO = "t.test\rX-Inj: 1\x00\nX-Inj2: 2\u2028X-Inj3: 3"
HOSTILE_SENDER = "carol\r\nX-Inj4: 4\x85@remote.test"


def test_hostile_peer_text_never_becomes_a_header_or_a_log_line(
    directory: Directory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="mailstead.smtp")
    receiver = _receiver(Role.MTA, directory, tmp_path)
    peer = Peer(ip="192.0.2.7", helo=HOSTILE_HELO)
    message = Message(
        HOSTILE_SENDER,
        MailParams(),
        (Recipient("fwd@example.test", NO_PARAMS),),  # alice here, someone@remote.test queued
        b"Subject: t\r\n\r\nbody\r\n",
    )
    assert _commit(receiver, peer, message).code == 250
    (stored,) = _inbox(tmp_path, "alice@example.test")
    delivered = email.message_from_bytes(stored, policy=policy.default)
    assert delivered.keys() == ["Return-Path", "Delivered-To", "Received", "Subject"]
    assert delivered["Return-Path"] == "<carol X-Inj4: 4 @remote.test>"
    (queued,) = receiver.queue.list()
    raw = receiver.queue.open_message(queued.id)
    assert email.message_from_bytes(raw, policy=policy.default).keys() == ["Received", "Subject"]
    for received in (stored.split(b"\nSubject:")[0], raw.split(b"\r\nSubject:")[0]):
        assert received.count(b"\x00") == 0
        assert b"from t.test X-Inj: 1 X-Inj2: 2 X-Inj3: 3 ([192.0.2.7])" in received
    (line,) = [LogfmtFormatter().format(r) for r in caplog.records if r.msg == "received"]
    assert line.isprintable()
    # Escaped once by log_text, then quoted as a logfmt value.
    assert r'from="<carol\\r\\nX-Inj4: 4\\x85@remote.test>"' in line


# -- all or nothing: a 451 leaves no copy that the client's retry would duplicate ----


def _break_maildir(tmp_path: Path, address: str) -> None:
    """Make ``address``'s Maildir refuse new files: its tmp/ is a plain file."""
    local, domain = address.split("@")
    maildir = tmp_path / "mail" / domain / local / "Maildir"
    maildir.mkdir(parents=True)
    (maildir / "tmp").write_bytes(b"")


def test_a_failed_copy_leaves_no_other_copy_behind(directory: Directory, tmp_path: Path) -> None:
    # team@ reaches alice and bob; bob's copy cannot be written. Before the
    # transaction split alice's copy stayed in new/ beside the 451, and the
    # client's retry gave her a second one.
    receiver = _receiver(Role.MTA, directory, tmp_path)
    _break_maildir(tmp_path, "bob@example.test")
    reply = _commit(receiver, STRANGER, _message("team@example.test", "fwd@example.test"))
    assert (reply.code, reply.enhanced) == (451, "4.3.0")
    assert _inbox(tmp_path, "alice@example.test") == []
    assert receiver.queue.list() == []  # fwd@'s remote copy was not queued either
    alice_tmp = tmp_path / "mail" / "example.test" / "alice" / "Maildir" / "tmp"
    assert list(alice_tmp.iterdir()) == []
    assert list((tmp_path / "queue" / "msg").iterdir()) == []
    # The client retries once the disk is fixed: one copy each, not two.
    (tmp_path / "mail" / "example.test" / "bob" / "Maildir" / "tmp").unlink()
    receiver = _receiver(Role.MTA, directory, tmp_path)
    reply = _commit(receiver, STRANGER, _message("team@example.test", "fwd@example.test"))
    assert reply.code == 250
    assert len(_inbox(tmp_path, "alice@example.test")) == 1
    assert len(_inbox(tmp_path, "bob@example.test")) == 1
    assert len(receiver.queue.list()) == 1


def test_a_failed_publish_takes_back_the_published_copies(
    directory: Directory, tmp_path: Path
) -> None:
    # mbox copies are appended at commit, alice's before bob's; bob's mbox is
    # a directory, so his append fails after alice's went in.
    receiver = Receiver(
        Role.MTA,
        hostname="mx.example.test",
        domains=["example.test"],
        directory=directory,
        store=open_store("mbox", tmp_path / "mail"),
        queue=Queue(tmp_path),
        limits=SMTPLimits(),
    )
    alice = tmp_path / "mail" / "example.test" / "alice" / "mbox"
    bob = tmp_path / "mail" / "example.test" / "bob" / "mbox"
    _commit(receiver, STRANGER, _message("alice@example.test"))
    before = alice.read_bytes()
    bob.mkdir(parents=True)
    reply = _commit(receiver, STRANGER, _message("team@example.test", "fwd@example.test"))
    assert (reply.code, reply.enhanced) == (451, "4.3.0")
    assert alice.read_bytes() == before  # truncated back under the lock
    assert not alice.with_name("mbox.lock").exists()
    assert receiver.queue.list() == []  # the queued copy was taken back too


def _directory_away(monkeypatch: pytest.MonkeyPatch, directory: Directory, method: str) -> None:
    def away(*args: object) -> object:
        raise DirectoryError("directory database db.example: server closed the connection")

    monkeypatch.setattr(directory, method, away)


def test_a_directory_that_fails_at_rcpt_is_451_and_the_session_goes_on(
    directory: Directory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # C: RCPT TO:<alice@example.test>    (the cluster database is away)
    # S: 451 4.3.0 Temporary lookup failure
    mta = _receiver(Role.MTA, directory, tmp_path)
    _directory_away(monkeypatch, directory, "resolve")
    reply, route = _route(mta, STRANGER, "alice@example.test")
    assert (reply.code, reply.enhanced, reply.text, route) == (
        451,
        "4.3.0",
        "Temporary lookup failure",
        None,
    )


def test_a_directory_that_fails_at_mail_from_on_submission_is_451(
    directory: Directory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    msa = _receiver(Role.MSA, directory, tmp_path)
    _directory_away(monkeypatch, directory, "may_send_as")
    with pytest.raises(Refused) as refused:
        msa.start(ALICE, "alice@example.test", MailParams())
    assert (refused.value.reply.code, refused.value.reply.enhanced) == (451, "4.3.0")


def test_a_usage_lookup_that_fails_at_rcpt_is_451(
    directory: Directory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # alice has limits, so RCPT asks the store what she uses: the store is away.
    directory.set_quota("alice@example.test", Quota(storage=10_000))
    mta = _receiver(Role.MTA, directory, tmp_path)

    def away(*args: object) -> object:
        raise OSError("mail database: server closed the connection")

    monkeypatch.setattr(quota, "_usage", away)
    delivery = mta.start(STRANGER, "carol@remote.test", MailParams())
    with pytest.raises(Refused) as refused:
        delivery.add_rcpt("alice@example.test", NO_PARAMS)
    assert refused.value.reply.code == 451
