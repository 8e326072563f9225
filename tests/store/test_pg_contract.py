"""The IMAP-facing store, one suite over every backend: Maildir or mbox with the
SQLite index, and PostgreSQL.

``backend.open()`` opens the account as a new process (or another node)
would: its own connection and in-memory mailboxes; ``backend.deliver``
is local delivery through the backend's ``MailboxStore``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mailstead.proto.imap.storage import AccountLike, MailboxError, MailboxLike
from mailstead.store import MailboxStore, MaildirStore, MboxStore, account_dir, maildir_path
from mailstead.store.account import Account
from mailstead.store.mbox_account import MboxAccount

ADDRESS = "alice@example.test"
MSG = b"From: a@example.test\nSubject: hi\n\nbody\n"
WHEN = 837596665.0


@dataclass
class Backend:
    name: str
    store: MailboxStore
    open: Callable[[], AccountLike]

    def deliver(self, data: bytes = MSG, head: bytes = b"") -> None:
        parts = [head, data] if head else [data]
        self.store.deliver(ADDRESS, parts, "a@example.test", WHEN)

    def inbox(self) -> MailboxLike:
        box = self.open().mailbox("INBOX")
        box.refresh()
        return box


@pytest.fixture(params=["maildir", "mbox", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "maildir":
        store = MaildirStore(tmp_path / "mail")
        root = maildir_path(tmp_path / "mail", ADDRESS)
        yield Backend("maildir", store, lambda: Account(root))
        return
    if request.param == "mbox":
        mbox_root = account_dir(tmp_path / "mail", ADDRESS)
        yield Backend("mbox", MboxStore(tmp_path / "mail"), lambda: MboxAccount(mbox_root))
        return
    from mailstead.pgsql.connect import open_pool
    from mailstead.store.pg_account import PgAccount
    from mailstead.store.pg_delivery import PgMailStore
    from mailstead.store.pg_schema import ensure_schema

    pool = open_pool(request.getfixturevalue("pg_dsn"))
    try:
        ensure_schema(pool)
        yield Backend("postgresql", PgMailStore(pool), lambda: PgAccount(pool, ADDRESS))
    finally:
        pool.close()


def test_delivered_mail_gets_ascending_uids_and_crlf_sizes(backend: Backend) -> None:
    backend.deliver()
    backend.deliver(b"x\ny\n", head=b"Delivered-To: alice@example.test\n")
    inbox = backend.inbox()
    assert inbox.uids == [1, 2]
    assert inbox.messages[2].size == 6 + 34  # "x\r\ny\r\n" after the CRLF head
    assert inbox.read(1) == MSG
    assert inbox.read(2) == b"Delivered-To: alice@example.test\nx\ny\n"
    assert inbox.messages[1].flags == ()
    assert inbox.uidnext == 3


def test_uidvalidity_and_uids_survive_a_new_process(backend: Backend) -> None:
    backend.deliver()
    first, again = backend.inbox(), backend.inbox()
    assert (again.uidvalidity, again.uids) == (first.uidvalidity, [1])


def test_every_change_takes_a_higher_modseq_seen_by_the_other_process(backend: Backend) -> None:
    for i in range(3):
        backend.deliver(b"Subject: %d\n\nbody\n" % i)
    a, b = backend.inbox(), backend.inbox()
    first = a.highestmodseq
    assert a.store([2], ["\\Seen"], "+") == [2]
    a.refresh()
    assert a.messages[2].modseq == a.highestmodseq > first
    assert a.store([2], ["\\Seen"], "+") == []  # no change, no new modseq
    stored = a.highestmodseq
    b.refresh()
    assert (b.messages[2].flags, b.messages[2].modseq) == (("\\Seen",), stored)
    assert a.expunge([1]) == [1]
    a.refresh()
    assert a.highestmodseq > stored
    assert a.expunged_since(stored) == [1]
    assert a.expunged_since(a.highestmodseq) == []
    assert backend.inbox().highestmodseq == a.highestmodseq


def test_unchangedsince_is_tested_inside_the_transaction(backend: Backend) -> None:
    for i in range(3):
        backend.deliver(b"Subject: %d\n\nbody\n" % i)
    a, b = backend.inbox(), backend.inbox()
    seen = a.highestmodseq
    assert b.store([1], ["\\Flagged"], "+") == [1]
    assert a.store([1, 2], ["\\Deleted"], "+", unchanged_since=seen) == [2]
    assert a.messages[1].flags == ("\\Flagged",)
    assert a.messages[1].modseq > seen and a.messages[2].modseq > a.messages[1].modseq
    assert a.store([3], ["\\Seen"], "+", unchanged_since=0) == []


def test_flag_changes_of_two_processes_both_stay(backend: Backend) -> None:
    backend.deliver()
    a, b = backend.inbox(), backend.inbox()
    assert a.store([1], ["\\Seen"], "+") == [1]
    # B has not looked since: its STORE must not undo A's \Seen.
    assert b.store([1], ["\\Flagged"], "+") == [1]
    assert b.messages[1].flags == ("\\Flagged", "\\Seen")
    assert backend.inbox().messages[1].flags == ("\\Flagged", "\\Seen")


def test_expunged_elsewhere_stays_readable_until_told(backend: Backend) -> None:
    # RFC 2180 §4.1: B still numbers the message and may FETCH and COPY it.
    if backend.name == "mbox":
        pytest.skip("an mbox EXPUNGE rewrites the file: other processes keep no copy")
    backend.deliver()
    backend.deliver(b"Subject: two\n\nsecond\n")
    a, b = backend.inbox(), backend.inbox()
    assert a.expunge([1]) == [1]
    b.refresh()
    assert 1 not in b.messages and b.retained[1].uid == 1
    assert b.read(1) == MSG
    account = backend.open()
    account.create("Kept")
    kept = account.mailbox("Kept")
    assert b.copy_to([1], kept) == [(1, 1)]
    kept.refresh()
    assert kept.read(1) == MSG


def test_append_and_copy_keep_flags_and_date(backend: Backend) -> None:
    account = backend.open()
    account.create("Work")
    work = account.mailbox("Work")
    uid = work.append(b"Subject: mine\r\n\r\nx\r\n", ["\\Seen", "$Label"], WHEN)
    assert uid == 1
    work.refresh()
    assert work.messages[1].flags == ("$Label", "\\Seen")
    assert work.messages[1].internaldate == WHEN
    assert "$Label" in work.keyword_names()
    inbox = account.mailbox("INBOX")
    inbox.refresh()
    assert work.copy_to([1], inbox) == [(1, 1)]
    inbox.refresh()
    assert inbox.messages[1].flags == ("$Label", "\\Seen")
    assert inbox.messages[1].internaldate == WHEN
    # As stored: mbox keeps LF line ends.
    assert inbox.read(1).replace(b"\r\n", b"\n") == b"Subject: mine\n\nx\n"


def test_a_keyword_defined_elsewhere_is_listed(backend: Backend) -> None:
    backend.deliver()
    a, b = backend.inbox(), backend.inbox()
    b.keyword_names()
    a.store([1], ["$Alpha"], "+")
    b.refresh()
    assert "$Alpha" in b.keyword_names()


def test_recent_is_claimed_by_one_session(backend: Backend) -> None:
    backend.deliver()
    backend.deliver()
    a, b = backend.inbox(), backend.inbox()
    assert a.recent_uids() == [1, 2]
    assert a.take_new() == [1, 2]
    b.refresh()
    assert b.claim_recent() == [] and b.recent_uids() == []
    backend.deliver()
    b.refresh()
    assert b.claim_recent() == [3]


def test_folders_create_list_rename_delete(backend: Backend) -> None:
    account = backend.open()
    account.provision()  # type: ignore[attr-defined]
    assert account.names() == ["INBOX", "Archive", "Drafts", "Junk", "Sent", "Trash"]
    assert account.special_use("Sent") == "\\Sent"
    assert "Sent" in account.subscriptions()
    account.create("a.b/c")
    with pytest.raises(MailboxError) as exists:
        account.create("Sent")
    assert exists.value.code == "ALREADYEXISTS"
    account.rename("a.b", "x")
    assert "x/c" in account.names() and "a.b/c" not in account.names()
    account.delete("x/c")
    assert "x/c" not in account.names()
    with pytest.raises(MailboxError):
        account.delete("INBOX")
    account.set_subscribed("Sent", False)
    assert "Sent" not in account.subscriptions()


def test_a_recreated_mailbox_gets_a_new_uidvalidity(backend: Backend) -> None:
    account = backend.open()
    account.create("Box")
    first = account.mailbox("Box").uidvalidity
    account.delete("Box")
    account.create("Box")
    assert account.mailbox("Box").uidvalidity > first


def test_rename_inbox_moves_the_messages(backend: Backend) -> None:
    backend.deliver()
    account = backend.open()
    account.rename("INBOX", "Old")
    old = account.mailbox("Old")
    old.refresh()
    inbox = account.mailbox("INBOX")
    inbox.refresh()
    assert (len(old.uids), inbox.uids) == (1, [])


def test_a_mailbox_renamed_elsewhere_ends_the_selection(backend: Backend) -> None:
    account = backend.open()
    account.create("Box")
    box = account.mailbox("Box")
    box.refresh()
    backend.open().rename("Box", "Other")
    with pytest.raises(FileNotFoundError):
        box.refresh()


def test_creating_one_name_in_two_processes(backend: Backend) -> None:
    a, b = backend.open(), backend.open()
    a.create("Sent")
    sent = a.mailbox("Sent")
    sent.append(b"Subject: sent\r\n\r\nx\r\n", ["\\Seen"], None)
    with pytest.raises(MailboxError) as refused:
        b.create("Sent")
    assert refused.value.code == "ALREADYEXISTS"
    sent.refresh()
    assert sent.uids == [1]
    assert b.mailbox("Sent").uidvalidity == sent.uidvalidity


def test_summaries_are_kept_for_messages_that_exist(backend: Backend) -> None:
    backend.deliver()
    inbox = backend.inbox()
    inbox.save_summaries({1: b"one", 7: b"never"})
    assert backend.inbox().summaries() == {1: b"one"}
    inbox.remember(1, "ENVELOPE", b"(env)")
    assert inbox.cached(1, "ENVELOPE") == b"(env)"
