"""The mailbox index over mbox files: parsing, UIDs across rewrites, flags, folders, POP3.

Two :class:`MboxAccount` objects on one directory stand for two processes
(each has its own SQLite connection and its own in-memory view). Mail
arrives the way the MDA delivers it: ``Mbox(path).deliver(...)``.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from mailstead.proto.imap.storage import FlagLimitError, MailboxError
from mailstead.proto.pop3.maildrop import MaildropInUse
from mailstead.store.index import INDEX_NAME
from mailstead.store.mbox import Mbox, MboxLockTimeout
from mailstead.store.mbox_account import MboxAccount, mbox_accounts, mbox_maildrops
from mailstead.store.mbox_format import parse, unescape_mboxrd
from mailstead.store.mbox_mailbox import MboxMailbox

T0 = 1_700_000_000.0
MSG = b"From: a@example.test\nSubject: hi\n\nbody\n"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "example.test" / "alice"


def deliver(root: Path, data: bytes = MSG, sender: str = "s@example.net", when: float = T0) -> None:
    root.mkdir(parents=True, exist_ok=True)
    Mbox(root / "mbox").deliver([data], sender, when)


def inbox(root: Path) -> MboxMailbox:
    box = MboxAccount(root).mailbox("INBOX")
    box.refresh()
    return box


def age(path: Path) -> None:
    """Make the file's stamp trusted (older than the dirty window) and different."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns - 5_000_000_000))


# -- parsing -----------------------------------------------------------------------


def test_boundaries_need_a_blank_line_before_from() -> None:
    data = (
        b"From a@x Thu Jan  1 00:00:00 1970\nSubject: 1\n\nbody\nFrom mboxo\n>From quoted\n\n"
        b"From b@x Thu Jan  1 00:00:00 1970\nSubject: 2\n\nlast\n\n"
    )
    recs = parse(data, 0, len(data))
    assert [r.from_line for r in recs] == [
        b"From a@x Thu Jan  1 00:00:00 1970",
        b"From b@x Thu Jan  1 00:00:00 1970",
    ]
    first = data[recs[0].offset : recs[0].offset + recs[0].length]
    assert unescape_mboxrd(first) == b"Subject: 1\n\nbody\nFrom mboxo\nFrom quoted\n"
    assert data[recs[1].offset : recs[1].offset + recs[1].length] == b"Subject: 2\n\nlast\n"


@pytest.mark.parametrize(
    ("data", "messages"),
    [
        (b"", []),
        (b"not an mbox\n", []),
        (b"From a Thu Jan  1 00:00:00 1970\n", [b""]),
        (b"From a Thu Jan  1 00:00:00 1970\n\n", [b""]),
        (b"From a Thu Jan  1 00:00:00 1970\nno newline", [b"no newline"]),
        (b"From a Thu Jan  1 00:00:00 1970\nx\n", [b"x\n"]),
        (b"From a Thu Jan  1 00:00:00 1970\r\nx\r\n\r\nFrom b\r\ny\r\n\r\n", [b"x\r\n", b"y\r\n"]),
        (b"\nFrom a Thu Jan  1 00:00:00 1970\nx\n\n", [b"x\n"]),
    ],
)
def test_hostile_and_odd_files(data: bytes, messages: list[bytes]) -> None:
    assert [data[r.offset : r.offset + r.length] for r in parse(data, 0, len(data))] == messages


@pytest.mark.parametrize(
    ("body", "stored"),
    [
        (b"From here\n", b"From here\n"),
        (b">From here\n", b">From here\n"),
        (b">>From there\n", b">>From there\n"),
        (b"a\n\nFrom me, hello\n", b"a\n\nFrom me, hello\n"),
        (b"no final newline", b"no final newline\n"),
    ],
)
def test_body_round_trip_through_mboxrd(root: Path, body: bytes, stored: bytes) -> None:
    message = b"Subject: x\n\n" + body
    deliver(root, message)
    deliver(root, MSG)
    box = inbox(root)
    assert box.uids == [1, 2]
    assert box.read(1) == b"Subject: x\n\n" + stored
    assert box.read(2) == MSG
    assert box.messages[1].size == len(box.read(1).replace(b"\n", b"\r\n"))


def test_long_from_line_and_crlf_file(root: Path) -> None:
    root.mkdir(parents=True)
    long_sender = b"x" * 5000 + b"@example.net"
    (root / "mbox").write_bytes(
        b"From a Thu Jan  1 00:00:00 1970\r\nSubject: 1\r\nStatus: R\r\n\r\nStatus: body\r\n\r\n"
        b"From " + long_sender + b" Thu Jan  1 00:01:00 1970\nSubject: 2\n\nx\n\n"
    )
    box = inbox(root)
    assert box.read(1) == b"Subject: 1\r\nStatus: R\r\n\r\nStatus: body\r\n"
    assert box.messages[1].flags == ("\\Seen",)
    assert box.read(2) == b"Subject: 2\n\nx\n"
    assert box.messages[2].internaldate == 60.0


def test_ten_thousand_messages_parse_well_under_a_second(root: Path) -> None:
    root.mkdir(parents=True)
    one = b"From s@example.net Tue Nov 14 22:13:20 2023\n" + MSG.replace(b"body", b"x" * 2000)
    (root / "mbox").write_bytes(b"\n".join(one + b"%d\n" % i for i in range(10_000)) + b"\n")
    box = MboxAccount(root).mailbox("INBOX")
    start = time.perf_counter()
    box.refresh()
    elapsed = time.perf_counter() - start
    assert len(box.uids) == 10_000
    assert box.read(10_000).endswith(b"9999\n")
    assert elapsed < 1.0, elapsed


# -- reconciling with the file --------------------------------------------------


def test_delivery_gets_the_next_uid_and_date_from_the_from_line(root: Path) -> None:
    deliver(root)
    box = inbox(root)
    deliver(root, b"Subject: 2\n\nsecond\n", when=T0 + 60)
    box.refresh()
    assert box.uids == [1, 2]
    assert box.messages[2].internaldate == T0 + 60
    assert box.read(2) == b"Subject: 2\n\nsecond\n"


def test_unchanged_stamp_reads_nothing(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    deliver(root)
    age(root / "mbox")
    box = inbox(root)
    monkeypatch.setattr("mailstead.store.mbox_mailbox.parse", None)  # any parse would fail
    monkeypatch.setattr("mailstead.store.mbox_mailbox.hold_locks", None)
    box.refresh()
    other = MboxAccount(root).mailbox("INBOX")
    other.refresh()
    assert other.uids == [1]


def test_growth_parses_only_the_tail(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(3):
        deliver(root, b"Subject: %d\n\nx\n" % i)
    box = inbox(root)
    seen: list[int] = []
    real = parse

    def spy(buf: bytes, start: int, end: int) -> object:
        seen.append(start)
        return real(buf, start, end)

    monkeypatch.setattr("mailstead.store.mbox_mailbox.parse", spy)
    deliver(root, b"Subject: 3\n\nx\n")
    box.refresh()
    assert box.uids == [1, 2, 3, 4]
    assert seen and seen[0] > 0


def test_half_written_delivery_is_not_indexed(root: Path) -> None:
    deliver(root)
    box = inbox(root)
    mbox = Mbox(root / "mbox", lock_timeout=0.2)
    mbox._acquire_dotlock(time.monotonic() + 1)  # a delivery in progress
    try:
        with open(root / "mbox", "ab") as f:
            f.write(b"From s@x Thu Jan  1 00:00:00 1970\nSubject: half")
        with pytest.raises(MboxLockTimeout):
            box.mbox.lock_timeout = 0.2
            box.refresh()
        assert box.uids == [1]
    finally:
        mbox._release_dotlock()


def test_external_rewrite_keeps_uids_and_flags_and_expunges_the_missing(root: Path) -> None:
    for i in range(3):
        deliver(root, b"Subject: %d\n\nx\n" % i)
    box = inbox(root)
    box.store([3], ["\\Flagged"], "+")
    data = (root / "mbox").read_bytes()
    recs = parse(data, 0, len(data))
    # Another program deletes the first message (same inode, rewritten in place).
    with open(root / "mbox", "r+b") as f:
        f.write(data[recs[1].start :])
        f.truncate()
    age(root / "mbox")
    box.refresh()
    assert box.uids == [2, 3]
    assert box.read(3) == b"Subject: 2\n\nx\n"
    assert box.messages[3].flags == ("\\Flagged",)
    deliver(root, b"Subject: new\n\nx\n")
    box.refresh()
    assert box.uids == [2, 3, 4]


def test_identical_copies_keep_their_own_uids(root: Path) -> None:
    for _ in range(3):
        deliver(root)  # same From_ line, same bytes
    box = inbox(root)
    assert box.uids == [1, 2, 3]
    box.store([2], ["\\Seen"], "+")
    box.expunge([1])
    again = inbox(root)
    assert again.uids == [2, 3]
    assert again.messages[2].flags == ("\\Seen",)
    assert again.read(3) == MSG


def test_status_headers_give_the_first_flags(root: Path) -> None:
    deliver(root, b"Subject: x\nStatus: RO\nX-Status: AF\n\nbody\n")
    deliver(root, b"Subject: y\n\nStatus: R is body text\n")
    box = inbox(root)
    assert box.messages[1].flags == ("\\Answered", "\\Flagged", "\\Seen")
    assert box.messages[2].flags == ()


def test_inbox_without_file_is_empty_and_file_removed_expunges(root: Path) -> None:
    root.mkdir(parents=True)
    box = inbox(root)
    assert box.uids == []
    deliver(root)
    box.refresh()
    assert box.uids == [1]
    (root / "mbox").unlink()
    box.refresh()
    assert box.uids == []


# -- flags --------------------------------------------------------------------------


def test_flags_live_in_the_index_and_survive_a_new_process(root: Path) -> None:
    deliver(root)
    before = (root / "mbox").read_bytes()
    a = inbox(root)
    b = inbox(root)
    assert a.store([1], ["\\Seen", "$Label1"], "+") == [1]
    assert (root / "mbox").read_bytes() == before
    b.refresh()
    assert b.messages[1].flags == ("$Label1", "\\Seen")
    assert b.keyword_names() == ["$Label1"]
    assert inbox(root).messages[1].flags == ("$Label1", "\\Seen")
    # RFC 3501 §2.3.2: \Recent in the first session to select, not after.
    assert a.take_new() == [1]
    assert b.take_new() == []


def test_keyword_limit(root: Path) -> None:
    deliver(root)
    box = inbox(root)
    box.store([1], [f"k{i}" for i in range(26)], "+")
    with pytest.raises(FlagLimitError):
        box.store([1], ["one-too-many"], "+")


# -- expunge ------------------------------------------------------------------------


def test_expunge_rewrites_keeping_other_messages_byte_exact(root: Path) -> None:
    bodies = [b"Subject: %d\n\n>From x\nFrom y\n" % i for i in range(4)]
    for i, body in enumerate(bodies):
        deliver(root, body, when=T0 + i)
    whole = (root / "mbox").read_bytes()
    recs = parse(whole, 0, len(whole))
    a, b = inbox(root), inbox(root)
    b.store([4], ["\\Seen"], "+")
    assert a.expunge([1, 3]) == [1, 3]
    kept = whole[recs[1].start : recs[2].start] + whole[recs[3].start :]
    assert (root / "mbox").read_bytes() == kept
    assert not list(root.glob("*.tmp")) and not list(root.glob(".*.tmp"))
    assert a.uids == [2, 4]
    assert b.read(4) == bodies[3]  # b's location is stale: checked, looked up again
    with pytest.raises(FileNotFoundError):
        b.read(3)
    b.refresh()
    assert b.uids == [2, 4]
    assert [b.read(2), b.read(4)] == [bodies[1], bodies[3]]
    assert b.messages[4].flags == ("\\Seen",)
    assert (root / "mbox").stat().st_mode & 0o777 == 0o600


def test_crash_between_rename_and_index_commit_loses_nothing(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(3):
        deliver(root, b"Subject: %d\n\nx\n" % i)
    box = inbox(root)
    box.store([3], ["\\Flagged"], "+")

    def crash(*args: object) -> None:
        raise OSError("power cut")

    monkeypatch.setattr(MboxMailbox, "_commit_rewrite", crash)
    with pytest.raises(OSError, match="power cut"):
        box.expunge([2])
    monkeypatch.undo()
    after = inbox(root)  # the next process
    assert after.uids == [1, 3]
    assert [after.read(1), after.read(3)] == [b"Subject: 0\n\nx\n", b"Subject: 2\n\nx\n"]
    assert after.messages[3].flags == ("\\Flagged",)
    deliver(root, b"Subject: 3\n\nx\n")
    after.refresh()
    assert after.uids == [1, 3, 4]


def test_expunge_meets_concurrent_delivery(root: Path) -> None:
    deliver(root)
    box = inbox(root)
    deliver(root, b"Subject: 2\n\nx\n")  # not yet seen by box
    assert box.expunge([1]) == [1]
    assert box.uids == [2]
    assert box.read(2) == b"Subject: 2\n\nx\n"


def test_deliveries_racing_refresh_expunge_and_append_lose_nothing(root: Path) -> None:
    deliver(root)
    box = inbox(root)
    errors: list[BaseException] = []

    def mda() -> None:
        try:
            for i in range(150):
                deliver(root, b"Subject: d%d\n\nx\n" % i, when=T0 + i)
                time.sleep(0.001)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=mda)
    thread.start()
    expunged: set[bytes] = set()
    appended = 0
    while thread.is_alive() or not expunged:
        box.refresh()
        odd = [uid for uid in box.uids[1:] if uid % 3 == 0]
        for uid in odd:
            expunged.add(box.read(uid).split(b"\n")[0])
        box.expunge(odd)
        box.append(b"Subject: a%d\r\n\r\nx\r\n" % appended, [], None)
        appended += 1
        time.sleep(0.005)  # a client's pace: dotlocks are polled, not queued
    thread.join()
    assert errors == []
    assert appended > 3, "the two writers did not overlap"
    box.refresh()
    subjects = [box.read(uid).split(b"\n")[0] for uid in box.uids]
    assert len(subjects) == len(set(subjects))
    delivered = {b"Subject: d%d" % i for i in range(150)}
    assert delivered - expunged <= set(subjects)
    assert {b"Subject: a%d" % i for i in range(appended)} - expunged <= set(subjects)
    fresh = MboxAccount(root)  # another process agrees
    again = fresh.mailbox("INBOX")
    again.refresh()
    assert again.uids == box.uids


# -- append and copy ------------------------------------------------------------------


def test_append_and_copy_keep_flags_and_date(root: Path) -> None:
    deliver(root)
    account = MboxAccount(root)
    account.create("Archive")
    box = account.mailbox("INBOX")
    box.refresh()
    uid = box.append(b"Subject: app\r\n\r\nFrom me\r\n", ["\\Seen"], T0 + 5)
    assert uid == 2
    assert box.read(2) == b"Subject: app\n\nFrom me\n"
    assert box.messages[2].size == len(b"Subject: app\r\n\r\nFrom me\r\n")
    assert (root / "mbox").read_bytes().endswith(b"\n\n>From me\n\n")
    dest = account.mailbox("Archive")
    dest.refresh()
    assert box.copy_to([1, 2], dest) == [(1, 1), (2, 2)]
    assert dest.messages[2].flags == ("\\Seen",)
    assert dest.messages[2].internaldate == T0 + 5
    assert dest.read(2) == b"Subject: app\n\nFrom me\n"
    again = MboxAccount(root).mailbox("Archive")
    again.refresh()  # a re-parse agrees with what append indexed
    assert again.uids == [1, 2]
    assert [m.size for m in again.messages.values()] == [m.size for m in dest.messages.values()]


def test_append_indexes_earlier_deliveries_first(root: Path) -> None:
    deliver(root)
    box = inbox(root)
    deliver(root, b"Subject: delivered\n\nx\n")
    assert box.append(b"Subject: appended\r\n\r\nx\r\n", [], None) == 3
    assert box.read(2) == b"Subject: delivered\n\nx\n"


# -- mailboxes ------------------------------------------------------------------------


def test_mailboxes_are_files_below_mail(root: Path) -> None:
    account = MboxAccount(root)
    account.provision()
    for name in ("Drafts", "Sent", "Trash", "Junk", "Archive"):
        assert (root / "mail" / name).is_file()
    assert account.subscriptions() == {"Drafts", "Sent", "Trash", "Junk", "Archive"}
    account.create("Work/Projects")
    account.create("Entwürfe")
    assert (root / "mail" / "Work" / "Projects").is_file()
    assert (root / "mail" / "Entw&APw-rfe").is_file()
    assert account.names() == [
        "INBOX", "Archive", "Drafts", "Entwürfe", "Junk", "Sent", "Trash", "Work/Projects",
    ]  # fmt: skip
    assert not account.exists("Work")
    assert (root / INDEX_NAME).is_file()


def test_a_mailbox_cannot_have_children(root: Path) -> None:
    account = MboxAccount(root)
    account.create("a")
    with pytest.raises(MailboxError) as exc:
        account.create("a/b")
    assert exc.value.code == "CANNOT"
    with pytest.raises(MailboxError) as exc:
        account.create("INBOX/b")
    assert exc.value.code == "CANNOT"
    account.create("c/d")
    with pytest.raises(MailboxError) as exc:
        account.create("c")  # a level holding mailboxes
    assert exc.value.code == "CANNOT"
    with pytest.raises(MailboxError) as exc:
        account.create("a")
    assert exc.value.code == "ALREADYEXISTS"


@pytest.mark.parametrize(
    "name",
    ["..", "../x", "a/../../x", ".hidden", "a/.b", "x.lock", "a//b", "", "a/\0b", "x" * 300],
)
def test_hostile_names_cannot_escape_mail(root: Path, name: str) -> None:
    account = MboxAccount(root)
    with pytest.raises(MailboxError):
        account.create(name)
    assert not account.exists(name)
    assert sorted(p.name for p in root.parent.iterdir()) == ["alice"]
    assert account.names() == ["INBOX"]


def test_rename_and_delete(root: Path) -> None:
    account = MboxAccount(root)
    account.create("a")
    box = account.mailbox("a")
    box.refresh()
    box.append(b"Subject: kept\n\nx\n", ["\\Seen"], T0)
    validity = box.uidvalidity
    account.rename("a", "b/c")
    assert account.names() == ["INBOX", "b/c"]
    assert not (root / "mail" / "a").exists()
    moved = account.mailbox("b/c")
    moved.refresh()
    assert (moved.uidvalidity, moved.uids) == (validity, [1])
    assert moved.messages[1].flags == ("\\Seen",)
    account.rename("b", "d")  # a level: its mailboxes move along
    assert account.names() == ["INBOX", "d/c"]
    with pytest.raises(MailboxError) as exc:
        account.delete("d")
    assert exc.value.code == "CANNOT"
    account.delete("d/c")
    assert account.names() == ["INBOX"]
    assert list((root / "mail").iterdir()) == []
    with pytest.raises(MailboxError):
        account.delete("INBOX")
    account.create("d/c")
    recreated = account.mailbox("d/c")
    recreated.refresh()
    assert recreated.uidvalidity > validity and recreated.uids == []


def test_rename_inbox_moves_the_messages(root: Path) -> None:
    deliver(root)
    account = MboxAccount(root)
    account.rename("INBOX", "Old")
    old = account.mailbox("Old")
    old.refresh()
    assert old.read(1) == MSG
    assert inbox(root).uids == []
    assert (root / "mbox").read_bytes() == b""


def test_accounts_registry(tmp_path: Path) -> None:
    accounts = mbox_accounts(tmp_path)
    account = accounts.open_for_login("alice@example.test")
    assert account is accounts.get("alice@example.test")
    assert account.exists("Sent")
    assert account.root == tmp_path / "example.test" / "alice"


# -- POP3 --------------------------------------------------------------------------


def test_pop3_maildrop_lock_listing_and_delete(tmp_path: Path) -> None:
    root = tmp_path / "example.test" / "alice"
    deliver(root)
    deliver(root, b"Subject: 2\n\nFrom x\n")
    drops = mbox_maildrops(tmp_path)
    drop = drops.open("alice@example.test")
    try:
        with pytest.raises(MaildropInUse):
            drops.open("alice@example.test")
        validity = inbox(root).uidvalidity
        assert drop.listing() == [
            (f"00000001{validity:08X}", len(MSG) + MSG.count(b"\n")),
            (f"00000002{validity:08X}", 22),
        ]
        deliver(root, b"Subject: 3\n\nx\n")  # after login: not in this session's list
        assert len(drop.listing()) == 2
        assert drop.read(1) == b"Subject: 2\n\nFrom x\n"
        drop.mark_seen([0])
        drop.delete([1])
    finally:
        drop.close()
    box = inbox(root)
    assert box.uids == [1, 3]
    assert box.messages[1].flags == ("\\Seen",)
    assert b"From x" not in (root / "mbox").read_bytes()
    drops.open("alice@example.test").close()  # the lock was released


def test_an_append_without_a_final_newline_keeps_its_uid_when_re_parsed(root: Path) -> None:
    deliver(root)
    box = inbox(root)
    # The fingerprint covers the message as a reader finds it: one byte
    # longer than what was appended, the newline that ends it.
    uid = box.append(b"Subject: no newline\r\n\r\nlast line", [], None)
    box._scan(full=True)
    assert box.uids == [1, uid] and box.read(uid) == b"Subject: no newline\n\nlast line\n"
