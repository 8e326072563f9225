"""The UID a delivered copy got: told by DeliveredUids, the same one IMAP shows.

Mail arrives as local delivery puts it there (``MaildirStore`` /
``MboxStore``: a file linked into ``new/``, an mbox append), unindexed.
:class:`DeliveredUids` stands for the webhook dispatcher's process, a
separately opened :class:`Account` for an IMAP session's; each test checks
that whichever of the two looks first, both report one UID.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailstead.durable import publish_all
from mailstead.store import MaildirStore, MboxStore, StoredAs
from mailstead.store.account import Account, folder_dir_name
from mailstead.store.delivered import DeliveredUids, Uid
from mailstead.store.maildir import Maildir
from mailstead.store.mbox_account import MboxAccount
from mailstead.store.paths import account_dir, maildir_path

ALICE = "alice@example.test"
T0 = 1_700_000_000.0


def message(n: int, body: bytes = b"hello\n") -> bytes:
    return b"Subject: %d\n\n" % n + body


@pytest.fixture
def uids() -> Iterator[DeliveredUids]:
    finder = DeliveredUids()
    yield finder
    finder.close()


def deliver(store: MaildirStore | MboxStore, data: bytes, when: float = T0) -> StoredAs:
    copy = store.stage(ALICE, [data], "s@example.net", when)
    place = copy.stored_as
    publish_all([copy])
    return place


def imap_uids(root: Path) -> dict[bytes, int]:
    """Subject line -> UID, as a freshly opened IMAP session sees the INBOX."""
    account = Account(root)
    try:
        inbox = account.mailbox("INBOX")
        inbox.refresh()
        return {inbox.read(uid).split(b"\n")[0]: uid for uid in inbox.uids}
    finally:
        account.index.close()


def uidvalidity(root: Path) -> int:
    account = Account(root)
    try:
        return account.mailbox("INBOX").uidvalidity
    finally:
        account.index.close()


# -- Maildir ---------------------------------------------------------------------


def test_a_copy_in_new_gets_the_uid_imap_then_shows(tmp_path: Path, uids: DeliveredUids) -> None:
    store = MaildirStore(tmp_path)
    first, second = deliver(store, message(1)), deliver(store, message(2))
    assert first.format == "maildir" and (Path(first.path) / "new" / first.name).is_file()
    told = uids.find([second, first])
    root = maildir_path(tmp_path, ALICE)
    shown = imap_uids(root)
    assert told == [
        Uid("INBOX", uidvalidity(root), shown[b"Subject: 2"]),
        Uid("INBOX", uidvalidity(root), shown[b"Subject: 1"]),
    ]
    # Asked together, in the order they arrived.
    assert shown == {b"Subject: 1": 1, b"Subject: 2": 2}


def test_imap_looking_first_gives_the_same_uids(tmp_path: Path, uids: DeliveredUids) -> None:
    store = MaildirStore(tmp_path)
    root = maildir_path(tmp_path, ALICE)
    session = Account(root)  # a session with INBOX selected before the mail came
    inbox = session.mailbox("INBOX")
    inbox.refresh()
    places = [deliver(store, message(n)) for n in (1, 2, 3)]
    (told_2,) = uids.find([places[1]])  # the dispatcher gets to message 2 first
    inbox.refresh()  # the session's NOOP/IDLE sees all three
    assert [inbox.read(uid).split(b"\n")[0] for uid in inbox.uids] == [
        b"Subject: 2",
        b"Subject: 1",
        b"Subject: 3",
    ]
    assert told_2 == Uid("INBOX", inbox.uidvalidity, 1)
    assert uids.find(places) == [Uid("INBOX", inbox.uidvalidity, uid) for uid in (2, 1, 3)]
    session.index.close()


def test_a_copy_moved_to_cur_by_another_program_is_found(
    tmp_path: Path, uids: DeliveredUids
) -> None:
    place = deliver(MaildirStore(tmp_path), message(1))
    root = Path(place.path)
    os.rename(root / "new" / place.name, root / "cur" / f"{place.name}:2,S")
    assert uids.find([place]) == [Uid("INBOX", uidvalidity(root), 1)]
    assert imap_uids(root) == {b"Subject: 1": 1}


def test_a_copy_already_gone_has_no_uid(tmp_path: Path, uids: DeliveredUids) -> None:
    store = MaildirStore(tmp_path)
    gone, kept = deliver(store, message(1)), deliver(store, message(2))
    (Path(gone.path) / "new" / gone.name).unlink()
    assert uids.find([gone, kept]) == [None, Uid("INBOX", uidvalidity(Path(kept.path)), 1)]
    # An account deleted since has none either, and is not made again.
    account = account_dir(tmp_path, ALICE)
    os.rename(account, tmp_path / "deleted")
    other = DeliveredUids()
    assert other.find([kept]) == [None] and not account.exists()
    other.close()


def test_a_copy_in_a_folder_gets_that_folders_uid(tmp_path: Path, uids: DeliveredUids) -> None:
    # As mail the checks call junk is delivered: into the Maildir++ folder .Junk/.
    inbox_root = MaildirStore(tmp_path).maildir(ALICE).path
    account = Account(inbox_root)
    account.create("Junk")
    account.mailbox("INBOX").refresh()
    deliver(MaildirStore(tmp_path), message(1))  # INBOX has a message; Junk none yet
    copy = Maildir(inbox_root / folder_dir_name("Junk")).stage([message(2)])
    place = copy.stored_as
    publish_all([copy])
    (told,) = uids.find([place])
    junk = account.mailbox("Junk")
    junk.refresh()
    assert told == Uid("Junk", junk.uidvalidity, junk.uids[0]) and junk.uids == [1]
    assert junk.uidvalidity != account.mailbox("INBOX").uidvalidity
    account.index.close()


def test_a_uid_told_once_stays(tmp_path: Path, uids: DeliveredUids) -> None:
    store = MaildirStore(tmp_path)
    place = deliver(store, message(1))
    (told,) = uids.find([place])
    deliver(store, message(2))
    assert told is not None and imap_uids(Path(place.path))[b"Subject: 1"] == told.uid
    assert uids.find([place]) == [told]


# -- mbox ------------------------------------------------------------------------


def mbox_uids(root: Path, *, reparse: bool = False) -> dict[bytes, int]:
    account = MboxAccount(root)
    try:
        inbox = account.mailbox("INBOX")
        inbox.refresh()
        if reparse:
            inbox._scan(full=True)
        return {inbox.read(uid).split(b"\n")[0]: uid for uid in inbox.uids}
    finally:
        account.index.close()


@pytest.mark.parametrize(
    "body",
    [
        b"hello\n",
        b"no final newline",
        b"",
        b"From the start\n>From quoted\n\nFrom after a blank line\n",
        b"long\n" * 2000,  # beyond the fingerprint's 4 KiB head
        b"x" * 5000,  # beyond it, and no final newline
    ],
)
def test_an_mbox_append_gets_the_uid_imap_shows(
    tmp_path: Path, uids: DeliveredUids, body: bytes
) -> None:
    store = MboxStore(tmp_path)
    first = deliver(store, message(1, body))
    second = deliver(store, message(2, body))
    assert first.format == "mbox" and first.path.endswith("/alice/mbox")
    told = uids.find([first, second])
    root = account_dir(tmp_path, ALICE)
    account = MboxAccount(root)
    validity = account.mailbox("INBOX").uidvalidity
    account.index.close()
    assert told == [Uid("INBOX", validity, 1), Uid("INBOX", validity, 2)]
    # Matched by fingerprint after a full re-parse too: the same UIDs.
    assert mbox_uids(root, reparse=True) == {b"Subject: 1": 1, b"Subject: 2": 2}


def test_an_mbox_copy_with_an_identical_twin_has_no_uid(
    tmp_path: Path, uids: DeliveredUids
) -> None:
    store = MboxStore(tmp_path)
    # A repeated delivery: same bytes, same From_ line (sender and second).
    once, twice = deliver(store, message(1)), deliver(store, message(1))
    assert once == twice
    assert uids.find([once]) == [None]
    account = MboxAccount(account_dir(tmp_path, ALICE))
    inbox = account.mailbox("INBOX")
    inbox.refresh()
    assert inbox.uids == [1, 2]
    account.index.close()
