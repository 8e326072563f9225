"""The mailbox index over Maildir: UIDs, flags and folders, as IMAP and POP3 use them.

Two :class:`Account` objects on one directory stand for two processes (each
has its own SQLite connection and its own in-memory view).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mailstead.store import mailbox as mailbox_module
from mailstead.store.account import Account, MailboxError, folder_dir_name, folder_name
from mailstead.store.index import INDEX_NAME
from mailstead.store.mailbox import Mailbox
from mailstead.store.maildir import Maildir

MSG = b"From: a@example.test\nSubject: hi\n\nbody\n"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "Maildir"


def deliver(root: Path, data: bytes = MSG) -> str:
    md = Maildir(root)
    md.create()
    return md.deliver([data])


def test_delivered_mail_gets_ascending_uids_and_crlf_sizes(root: Path) -> None:
    deliver(root)
    deliver(root, b"x\ny\n")
    inbox = Account(root).mailbox("INBOX")
    inbox.refresh()
    assert inbox.uids == [1, 2]
    assert inbox.messages[2].size == 6  # "x\r\ny\r\n"
    assert inbox.read(1) == MSG
    assert inbox.messages[1].flags == ()


def test_uidvalidity_and_uids_survive_a_new_process(root: Path) -> None:
    deliver(root)
    first = Account(root).mailbox("INBOX")
    first.refresh()
    again = Account(root).mailbox("INBOX")
    again.refresh()
    assert (again.uidvalidity, again.uids) == (first.uidvalidity, [1])


def test_a_first_scan_holds_what_the_index_holds(root: Path) -> None:
    for i in range(5):
        deliver(root, b"Subject: %d\n\nbody\n" % i)
    name = os.listdir(root / "new")[2]
    os.rename(root / "new" / name, root / "cur" / f"{name}:2,FS")
    first = Account(root).mailbox("INBOX")
    first.refresh()  # builds its records while indexing
    again = Account(root).mailbox("INBOX")
    again.refresh()  # reads them from the index
    assert first.uids == again.uids == [1, 2, 3, 4, 5]
    assert first.messages == again.messages
    assert (first.highestmodseq, first.uidnext) == (again.highestmodseq, again.uidnext)
    assert [m.flags for m in first.messages.values()].count(("\\Flagged", "\\Seen")) == 1


def test_file_from_another_mda_and_tmp_files(root: Path) -> None:
    deliver(root)
    box = Account(root).mailbox("INBOX")
    box.refresh()
    (root / "tmp" / "999.M1P1.other").write_bytes(b"half written")
    (root / "new" / "999.M2P1.other").write_bytes(b"Subject: other\n\nhi\n")
    os.utime(root / "new", (0, 0))  # a stamp change however fast the test runs
    box.refresh()
    assert box.uids == [1, 2]
    assert box.read(2) == b"Subject: other\n\nhi\n"


def test_flag_rename_by_another_program_becomes_a_flag_change(root: Path) -> None:
    name = deliver(root)
    box = Account(root).mailbox("INBOX")
    box.refresh()
    os.rename(root / "new" / name, root / "cur" / f"{name}:2,FS")
    box.refresh()
    assert box.messages[1].flags == ("\\Flagged", "\\Seen")
    assert box.uids == [1]


def test_store_renames_the_file_and_the_other_process_sees_it(root: Path) -> None:
    deliver(root)
    a = Account(root).mailbox("INBOX")
    b = Account(root).mailbox("INBOX")
    a.refresh()
    b.refresh()
    assert a.store([1], ["\\Seen", "\\Answered", "$Label1"], "+") == [1]
    (name,) = os.listdir(root / "cur")
    assert name.endswith(":2,RSa")
    assert (root / "dovecot-keywords").read_text() == "0 $Label1\n"
    b.refresh()
    assert b.messages[1].flags == ("$Label1", "\\Answered", "\\Seen")
    assert a.store([1], ["\\Seen"], "-") == [1]
    assert a.store([1], ["\\Answered", "$Label1"], "=") == []


def test_expunge_removes_files_and_other_views(root: Path) -> None:
    deliver(root)
    deliver(root)
    a = Account(root).mailbox("INBOX")
    b = Account(root).mailbox("INBOX")
    a.refresh()
    b.refresh()
    a.store([1], ["\\Deleted"], "+")
    assert a.deleted_uids() == [1]
    assert a.expunge([1]) == [1]
    assert a.uids == [2]
    b.refresh()
    assert b.uids == [2]
    assert len(os.listdir(root / "cur")) + len(os.listdir(root / "new")) == 1


def test_file_removed_by_another_program_is_expunged(root: Path) -> None:
    name = deliver(root)
    box = Account(root).mailbox("INBOX")
    box.refresh()
    os.unlink(root / "new" / name)
    box.refresh()
    assert box.uids == []


def test_append_and_copy_keep_flags_and_date(root: Path) -> None:
    account = Account(root)
    account.create("Work/Projects")
    inbox = account.mailbox("INBOX")
    inbox.refresh()
    uid = inbox.append(b"Subject: a\r\n\r\nx\r\n", ["\\Seen"], 1_000_000_000.0)
    assert uid == 1
    assert inbox.messages[1].internaldate == 1_000_000_000.0
    work = account.mailbox("Work/Projects")
    work.refresh()
    assert inbox.copy_to([1], work) == [(1, 1)]
    work.refresh()
    assert work.messages[1].flags == ("\\Seen",)
    assert work.messages[1].internaldate == 1_000_000_000.0
    assert (root / ".Work.Projects" / "maildirfolder").exists()


def test_take_new_moves_to_cur_without_changing_uids(root: Path) -> None:
    deliver(root)
    box = Account(root).mailbox("INBOX")
    box.refresh()
    assert box.take_new() == [1]
    assert os.listdir(root / "new") == []
    box.refresh()
    assert box.uids == [1]


def age(root: Path, seconds: int) -> None:
    """Set new/ and cur/ mtimes to ``seconds`` ago: a look at them is then trusted."""
    when = int(os.path.getmtime(root / "cur")) - seconds
    for sub in ("new", "cur"):
        os.utime(root / sub, (when, when))


def test_take_new_after_a_quiet_look_still_sees_a_later_delivery(root: Path) -> None:
    deliver(root)
    box = Account(root).mailbox("INBOX")
    box.refresh()
    assert box.take_new() == [1]
    age(root, 100)
    box.refresh()
    assert box.take_new() == []  # new/ is empty: remembered for this look
    assert box.take_new() == []
    deliver(root, b"Subject: later\n\nx\n")
    age(root, 50)  # even when the delivery is older than the dirty window
    box.refresh()
    assert box.take_new() == [2]
    assert not os.listdir(root / "new")


def test_select_lists_a_keyword_another_process_defined(root: Path) -> None:
    deliver(root)
    a = Account(root).mailbox("INBOX")
    b = Account(root).mailbox("INBOX")
    age(root, 100)
    a.refresh()
    assert a.keyword_names() == []
    b.refresh()
    b.store([1], ["$Project"], "+")
    age(root, 50)
    a.refresh()
    assert a.keyword_names() == ["$Project"]
    assert a.messages[1].flags == ("$Project",)


def test_a_folder_renamed_into_the_place_of_a_deleted_one_is_noticed(root: Path) -> None:
    deliver(root)
    account = Account(root)
    for name in ("Old", "New"):
        account.create(name)
    old_dir, new_dir = root / folder_dir_name("Old"), root / folder_dir_name("New")
    for folder in (old_dir, new_dir):  # the same mtimes, to the nanosecond
        for sub in ("new", "cur"):
            os.utime(folder / sub, ns=(10**18, 10**18))
    box = account.mailbox("Old")
    box.refresh()
    other = Account(root)  # another process
    other.delete("Old")
    other.rename("New", "Old")
    for sub in ("new", "cur"):
        os.utime(old_dir / sub, ns=(10**18, 10**18))
    with pytest.raises(FileNotFoundError):
        box.refresh()


def test_index_changes_without_file_changes_are_not_looked_for(root: Path) -> None:
    deliver(root)
    box = Account(root).mailbox("INBOX")
    age(root, 100)
    box.refresh()
    calls = []
    real = box.index.mailbox
    box.index.mailbox = lambda name: calls.append(name) or real(name)  # type: ignore[method-assign]
    box.refresh()
    assert calls == []
    deliver(root)
    box.refresh()
    assert calls and box.uids == [1, 2]


def scans_of(box: Mailbox) -> list[str]:
    """Record every full scan of ``box`` (its argument: the stamp)."""
    calls: list[str] = []
    real = box._scan

    def counting(stamp: str, dirty: bool) -> None:
        calls.append(stamp)
        real(stamp, dirty)

    box._scan = counting  # type: ignore[method-assign]
    return calls


def test_own_changes_need_no_full_scan(root: Path) -> None:
    for _ in range(3):
        deliver(root)
    a, b = Account(root).mailbox("INBOX"), Account(root).mailbox("INBOX")
    a.refresh()
    b.refresh()
    assert b.take_new() == [1, 2, 3]  # moved by "another process", no new modseq
    a.refresh()  # a full scan: the files moved, and nobody told a
    scans = scans_of(a)
    assert a.store([1], ["\\Seen"], "+") == [1]
    a.refresh()
    assert a.expunge([2]) == [2]
    a.refresh()
    uid = a.append(b"Subject: appended\n\nx\n", ["\\Flagged"], None)
    a.refresh()
    assert b.store([3], ["\\Answered"], "+") == [3]  # another process, via the index
    a.refresh()
    assert scans == []
    assert a.uids == [1, 3, uid]
    assert a.messages[3].flags == ("\\Answered",)
    # A change nobody announced in the index still gets the full scan.
    name = os.listdir(root / "cur")[0]
    os.rename(root / "cur" / name, root / "cur" / (name.split(":")[0] + ":2,T"))
    a.refresh()
    assert len(scans) == 1


def test_a_foreign_change_in_the_tick_of_an_own_change_is_found_once_trusted(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deliver(root)
    box = Account(root).mailbox("INBOX")
    box.refresh()
    box.take_new()
    box.refresh()
    scans = scans_of(box)
    assert box.store([1], ["\\Seen"], "+") == [1]
    tick = os.stat(root / "cur").st_mtime_ns
    # Another program (not Mailstead: no index) flags it in the same tick.
    (name,) = os.listdir(root / "cur")
    os.rename(root / "cur" / name, root / "cur" / (name.split(":")[0] + ":2,FS"))
    os.utime(root / "cur", ns=(tick, tick))
    box.refresh()
    assert scans == [] and box.messages[1].flags == ("\\Seen",)  # not yet: untrusted
    monkeypatch.setattr(mailbox_module, "_DIRTY_WINDOW", 0.0)  # the second has passed
    box.refresh()
    assert len(scans) == 1 and box.messages[1].flags == ("\\Flagged", "\\Seen")


def test_folders_create_list_rename_delete(root: Path) -> None:
    account = Account(root)
    account.provision()
    assert account.names() == ["INBOX", "Archive", "Drafts", "Junk", "Sent", "Trash"]
    account.create("a.b/c")
    assert folder_dir_name("a.b/c") == ".a&AC4-b.c"
    assert folder_name(".a&AC4-b.c") == "a.b/c"
    assert folder_name(".Entw&APw-rfe") == "Entwürfe"
    with pytest.raises(MailboxError):
        account.create("Sent")
    account.rename("a.b", "x")
    assert "x/c" in account.names() and "a.b/c" not in account.names()
    account.delete("x/c")
    assert "x/c" not in account.names()
    with pytest.raises(MailboxError):
        account.delete("INBOX")


def test_index_lives_beside_the_inbox(root: Path) -> None:
    Account(root)
    assert (root / INDEX_NAME).exists()
