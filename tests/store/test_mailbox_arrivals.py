"""Files in flight into a Maildir folder, as another process sees them.

An APPEND or COPY renames its file into ``cur/`` some milliseconds before
the index commit that gives its UID (docs/durability.md: the file is made
durable first). Another process that looks in between takes an unknown
file in ``cur/`` for such an arrival and leaves the UID to its commit
rather than racing it with a scan, for one dirty window at most: a file
some other program put there, or one a crash left behind, is scanned then.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from mailstead.store.account import Account
from mailstead.store.maildir import Maildir


def _inbox(root: Path) -> Account:
    md = Maildir(root)
    md.create()
    md.deliver([b"Subject: one\n\nfirst\n"])
    return Account(root)


def test_an_arrival_in_flight_gets_its_uid_from_its_own_commit(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    here, there = _inbox(root), Account(root)  # two processes
    watching = there.mailbox("INBOX")
    watching.refresh()
    assert watching.uids == [1]

    steps = here.mailbox("INBOX").append_staged(b"Subject: two\n\nsecond\n", [], None)
    next(steps)()  # the write and fsync in tmp/
    sync = next(steps)  # renamed into cur/; cur/'s fsync comes next
    watching.refresh()
    assert watching.uids == [1]  # no scan: the UID is the commit's to give
    sync()
    with pytest.raises(StopIteration) as done:
        next(steps)  # the index commit
    assert done.value.value == 2
    watching.refresh()
    assert watching.uids == [1, 2]


def test_a_file_put_into_cur_waits_one_dirty_window_at_most(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    inbox = _inbox(root).mailbox("INBOX")
    inbox.refresh()
    (root / "cur" / "1234567890.foreign:2,S").write_bytes(b"Subject: dropped\n\nhere\n")
    inbox.refresh()
    assert inbox.uids == [1]  # perhaps an arrival in flight
    time.sleep(1.05)
    os.utime(root / "cur")  # still changing: the look stays untrusted
    inbox.refresh()
    assert inbox.uids == [1, 2]
    assert inbox.messages[2].flags == ("\\Seen",)
