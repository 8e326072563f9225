"""Over quota, mail waits: 452 4.2.2 at RCPT or DATA, and a deferral in the queue.

Transcripts of the receiver's decisions (what the client would be told),
with a real directory and a real Maildir store.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mailstead.directory import Directory, Quota
from mailstead.limits import SMTPLimits
from mailstead.mta import local_delivery
from mailstead.mta.envelope import QueuedMessage
from mailstead.mta.queue import Queue
from mailstead.mta.quota import MAILBOX_FULL, mailbox_full
from mailstead.mta.receiver import Peer, Receiver, Refused, Role
from mailstead.proto.smtp.client_events import Outcome
from mailstead.proto.smtp.events import MailParams, RcptParams
from mailstead.store import MaildirStore, MboxStore, open_store

PEER = Peer("192.0.2.1", "mx.remote.test")
SMALL = b"Subject: hi\r\n\r\nhello\r\n"  # 22 octets


@pytest.fixture
def directory(tmp_path: Path) -> Iterator[Directory]:
    with Directory(tmp_path / "directory.sqlite3", ["example.test"]) as d:
        d.add_user("alice@example.test", "pw")
        d.add_user("bob@example.test", "pw")
        d.add_alias("team@example.test", ["alice@example.test", "bob@example.test"])
        d.add_alias("fwd@example.test", ["alice@example.test", "someone@remote.test"])
        yield d


@pytest.fixture
def receiver(directory: Directory, tmp_path: Path) -> Receiver:
    return Receiver(
        Role.MTA,
        hostname="mx.example.test",
        domains=["example.test"],
        directory=directory,
        store=open_store("maildir", tmp_path / "mail"),
        queue=Queue(tmp_path),
        limits=SMTPLimits(),
    )


def transaction(receiver: Receiver, *recipients: str, content: bytes = SMALL) -> list[str]:
    """RCPT TO each recipient, then DATA: the reply lines, as the client reads them."""
    said = []
    delivery = receiver.start(PEER, "carol@remote.test", MailParams())
    accepted = 0
    for rcpt in recipients:
        try:
            delivery.add_rcpt(rcpt, RcptParams())
            said.append("250 2.1.5 Ok")
            accepted += 1
        except Refused as refused:
            said.append(refused.reply.one_line())
    if not accepted:
        return said
    try:
        delivery.body(content)
        said.append(delivery.commit().reply.one_line().split(": queued")[0])
    except Refused as refused:
        delivery.abort()
        said.append(refused.reply.one_line())
    return said


def inbox(tmp_path: Path, address: str) -> int:
    local, domain = address.split("@")
    new = tmp_path / "mail" / domain / local / "Maildir" / "new"
    return len(list(new.iterdir())) if new.exists() else 0


def test_the_reply_is_temporary_and_names_a_full_mailbox() -> None:
    # RFC 3463 §3.3 X.2.2 "mailbox full"; 452 (RFC 5321 §4.2.3): try again later.
    assert (MAILBOX_FULL.code, MAILBOX_FULL.enhanced, MAILBOX_FULL.text) == (
        452,
        "4.2.2",
        "Mailbox full",
    )


def test_rcpt_is_refused_when_already_full(receiver: Receiver, tmp_path: Path) -> None:
    receiver.directory.set_quota("alice@example.test", Quota(messages=1))
    assert transaction(receiver, "alice@example.test") == ["250 2.1.5 Ok", "250 2.0.0 Ok"]
    assert transaction(receiver, "alice@example.test", "bob@example.test") == [
        "452 4.2.2 Mailbox full",
        "250 2.1.5 Ok",
        "250 2.0.0 Ok",
    ]
    assert (inbox(tmp_path, "alice@example.test"), inbox(tmp_path, "bob@example.test")) == (1, 1)


def test_data_is_refused_when_this_message_would_not_fit(
    receiver: Receiver, tmp_path: Path
) -> None:
    receiver.directory.set_quota("alice@example.test", Quota(storage=100))
    big = b"Subject: big\r\n\r\n" + b"x" * 100 + b"\r\n"
    assert transaction(receiver, "alice@example.test", content=big) == [
        "250 2.1.5 Ok",
        "452 4.2.2 Mailbox full",
    ]
    assert transaction(receiver, "alice@example.test") == ["250 2.1.5 Ok", "250 2.0.0 Ok"]
    assert inbox(tmp_path, "alice@example.test") == 1


def test_an_alias_is_refused_only_when_all_its_mailboxes_are_full(
    receiver: Receiver, tmp_path: Path
) -> None:
    for address in ("alice@example.test", "bob@example.test"):
        receiver.directory.set_quota(address, Quota(messages=0))
    assert transaction(receiver, "team@example.test") == ["452 4.2.2 Mailbox full"]
    receiver.directory.set_quota("bob@example.test", Quota())
    # bob has room: his copy now, alice's waits in the queue and is retried.
    assert transaction(receiver, "team@example.test") == ["250 2.1.5 Ok", "250 2.0.0 Ok"]
    assert (inbox(tmp_path, "alice@example.test"), inbox(tmp_path, "bob@example.test")) == (0, 1)
    (queued,) = receiver.queue.list()
    assert [r.address for r in queued.recipients] == ["alice@example.test"]


def test_an_alias_that_also_forwards_is_accepted(receiver: Receiver) -> None:
    receiver.directory.set_quota("alice@example.test", Quota(messages=0))
    assert transaction(receiver, "fwd@example.test") == ["250 2.1.5 Ok", "250 2.0.0 Ok"]
    (queued,) = receiver.queue.list()
    assert sorted(r.address for r in queued.recipients) == [
        "alice@example.test",
        "someone@remote.test",
    ]


def test_the_queue_defers_a_local_copy_that_does_not_fit(
    directory: Directory, tmp_path: Path
) -> None:
    store = MaildirStore(tmp_path / "mail")
    message = QueuedMessage("Q1", "zoe@sender.test", 0.0, 9, None, None, tmp_path / "q", ())
    directory.set_quota("alice@example.test", Quota(storage=10))

    def deliver() -> local_delivery.LocalResult:
        return local_delivery.deliver(
            message,
            "alice@example.test",
            b"Subject: queued\n\nx\n",
            directory=directory,
            store=store,
            sink=None,
            max_body_bytes=1024,
        )

    deferred = deliver()
    assert (deferred.outcome, deferred.reply) == (Outcome.DEFERRED, MAILBOX_FULL)
    directory.set_quota("alice@example.test", Quota(storage=1000))
    assert deliver().outcome is Outcome.DELIVERED
    assert inbox(tmp_path, "alice@example.test") == 1


def test_no_limit_costs_no_look_at_the_store(directory: Directory, tmp_path: Path) -> None:
    class Untouchable(MaildirStore):
        @property
        def mail_root(self) -> Path:
            raise AssertionError("the store was looked at")

        @mail_root.setter
        def mail_root(self, value: Path) -> None:
            pass

    assert not mailbox_full(directory, Untouchable(tmp_path), "alice@example.test", 10**9)


def test_mbox_counts_what_the_index_holds(directory: Directory, tmp_path: Path) -> None:
    store = MboxStore(tmp_path / "mail")
    directory.set_quota("alice@example.test", Quota(messages=0))
    assert mailbox_full(directory, store, "alice@example.test")
    directory.set_quota("alice@example.test", Quota(messages=1))
    assert not mailbox_full(directory, store, "alice@example.test")
