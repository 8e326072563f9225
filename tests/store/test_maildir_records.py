"""Internal dates read at first use, and the index snapshot a new process loads.

Two :class:`Account` objects on one directory stand for two processes.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path

import pytest

from mailstead.store import mailbox as mailbox_module
from mailstead.store.account import Account
from mailstead.store.index import INDEX_NAME, AccountIndex
from mailstead.store.maildir import Maildir
from mailstead.store.maildir_records import UNKNOWN_DATE

MSG = b"From: a@example.test\nSubject: hi\n\nbody\n"
DATE = 1_500_000_000.0


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "Maildir"


def deliver(root: Path, count: int) -> list[str]:
    md = Maildir(root)
    md.create()
    names = []
    for i in range(count):
        name = md.deliver([MSG])
        os.utime(root / "new" / name, (DATE + i, DATE + i))
        names.append(name)
    return names


def test_the_internal_date_is_the_files_mtime_read_at_first_use(root: Path) -> None:
    deliver(root, 2)
    inbox = Account(root).mailbox("INBOX")
    inbox.refresh()
    assert [inbox.messages[uid].date for uid in inbox.uids] == [UNKNOWN_DATE] * 2
    assert [inbox.messages[uid].internaldate for uid in inbox.uids] == [DATE, DATE + 1]


def test_a_date_follows_a_file_renamed_by_another_process(root: Path) -> None:
    deliver(root, 1)
    here = Account(root).mailbox("INBOX")
    here.refresh()
    there = Account(root).mailbox("INBOX")
    there.refresh()
    there.take_new()  # moves the file to cur/, unknown to `here`
    there.store([1], ["\\Seen"], "+")
    assert here.messages[1].location.startswith("new/")
    assert here.messages[1].internaldate == DATE


def test_an_expunged_messages_date_comes_from_its_kept_file_or_its_name(root: Path) -> None:
    (name,) = deliver(root, 1)
    inbox = Account(root).mailbox("INBOX")
    inbox.refresh()
    inbox.expunge([1])
    record = inbox.retained[1]
    assert record.internaldate == DATE  # RFC 2180 §4.1: still readable
    record.date = UNKNOWN_DATE
    for entry in (root / "tmp").iterdir():
        entry.unlink()
    assert record.internaldate == float(name.split(".")[0])


def test_a_copy_keeps_the_date(root: Path) -> None:
    deliver(root, 1)
    account = Account(root)
    account.create("Archive")
    inbox, archive = account.mailbox("INBOX"), account.mailbox("Archive")
    inbox.refresh()
    archive.refresh()
    [(_, uid)] = inbox.copy_to([1], archive)
    again = Account(root).mailbox("Archive")
    again.refresh()
    assert again.messages[uid].internaldate == DATE


@pytest.fixture
def small_snapshots(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mailbox_module, "SNAPSHOT_MIN", 2)


def snapshot_of(root: Path) -> tuple[int, bytes] | None:
    index = AccountIndex(root / INDEX_NAME)
    try:
        state = index.mailbox("INBOX")
        assert state is not None
        return index.snapshot(state.id)
    finally:
        index.close()


@pytest.mark.usefixtures("small_snapshots")
def test_a_new_process_loads_the_snapshot_and_the_changes_since(root: Path) -> None:
    deliver(root, 4)
    first = Account(root).mailbox("INBOX")
    first.refresh()  # the first scan saves the snapshot
    saved = snapshot_of(root)
    assert saved is not None and saved[0] == first.highestmodseq
    first.store([2], ["\\Flagged"], "+")
    first.expunge([3])
    first.append(MSG, ["\\Seen"], DATE)
    again = Account(root).mailbox("INBOX")
    again.refresh()
    assert again.uids == first.uids == [1, 2, 4, 5]
    assert again.messages == first.messages
    assert (again.highestmodseq, again.uidnext) == (first.highestmodseq, first.uidnext)
    assert again.messages[5].internaldate == DATE


@pytest.mark.usefixtures("small_snapshots")
def test_an_unreadable_snapshot_means_reading_the_rows(root: Path) -> None:
    deliver(root, 3)
    first = Account(root).mailbox("INBOX")
    first.refresh()
    db = sqlite3.connect(root / INDEX_NAME)
    with db:
        db.execute("UPDATE snapshots SET data = x'00'")
    db.close()
    again = Account(root).mailbox("INBOX")
    again.refresh()
    assert again.messages == first.messages


@pytest.mark.usefixtures("small_snapshots")
def test_a_snapshot_behind_the_expunge_log_is_not_used(root: Path) -> None:
    deliver(root, 3)
    first = Account(root).mailbox("INBOX")
    first.refresh()
    (root / first.messages[2].location).unlink()
    db = sqlite3.connect(root / INDEX_NAME)
    with db:
        # As if the log had been pruned past the snapshot (index.EXPUNGE_LOG_KEEP).
        db.execute("UPDATE mailboxes SET expunge_horizon = highestmodseq + 1")
        db.execute("DELETE FROM messages WHERE uid = 2")
    db.close()
    again = Account(root).mailbox("INBOX")
    again.refresh()
    assert again.uids == [1, 3]


def test_an_index_of_schema_2_gains_the_snapshot_table(root: Path) -> None:
    deliver(root, 1)
    Account(root).mailbox("INBOX").refresh()
    db = sqlite3.connect(root / INDEX_NAME)
    with db:
        db.execute("DROP TABLE snapshots")
        db.execute("PRAGMA user_version=2")
    db.close()
    inbox = Account(root).mailbox("INBOX")
    inbox.refresh()
    assert inbox.uids == [1]
    assert snapshot_of(root) is None  # a one-message mailbox loads from its rows


def test_copy_links_the_file_and_the_copy_outlives_the_source(root: Path) -> None:
    deliver(root, 1)
    account = Account(root)
    account.create("Archive")
    inbox, archive = account.mailbox("INBOX"), account.mailbox("Archive")
    inbox.refresh()
    inbox.store([1], ["\\Flagged", "$Later"], "+")
    archive.refresh()
    [(_, uid)] = inbox.copy_to([1], archive)
    copied = archive.messages[uid]
    source = root / inbox.messages[1].location
    assert os.stat(root / ".Archive" / copied.location).st_ino == source.stat().st_ino
    assert copied.flags == ("$Later", "\\Flagged")
    assert copied.location.endswith(":2,Fa")  # keyword letters: a per folder
    inbox.expunge([1])
    again = Account(root).mailbox("Archive")
    again.refresh()
    assert again.read(uid) == MSG
    assert (again.messages[uid].size, again.messages[uid].internaldate) == (
        len(MSG.replace(b"\n", b"\r\n")),
        DATE,
    )


def test_copy_writes_the_file_where_links_fail(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    deliver(root, 1)
    account = Account(root)
    account.create("Archive")
    inbox, archive = account.mailbox("INBOX"), account.mailbox("Archive")
    inbox.refresh()
    archive.refresh()

    def no_links(source: str, target: str) -> None:
        raise PermissionError(errno.EPERM, "no hard links here")

    monkeypatch.setattr(os, "link", no_links)
    [(_, uid)] = inbox.copy_to([1], archive)
    copied = root / ".Archive" / archive.messages[uid].location
    assert copied.read_bytes() == MSG
    assert copied.stat().st_ino != (root / inbox.messages[1].location).stat().st_ino
    assert archive.messages[uid].internaldate == DATE
