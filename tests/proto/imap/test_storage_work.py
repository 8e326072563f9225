"""APPEND, COPY and MOVE hand their slow storage I/O to the session (``StorageWork``).

The engine runs a command's storage work on the event loop, except for the
slow, self-contained steps (the new file's write and fsync, the fsync of
``cur/``), which it gives to the session to run in a thread; it is PAUSED
until ``storage_done()``, and the worker's other sessions run meanwhile. RFC
9051 §6.3.12 and RFC 4315 §3: the tagged OK, with APPENDUID or COPYUID,
comes once the message and its UID are durable (docs/durability.md), and no
session sees the UID before the index commit that gave it.

``hold_storage`` holds each step as a slow disk would; ``step_held`` runs
one, ``run_held`` all that follow.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path

import pytest

from mailstead.proto.errors import LocalProtocolError
from mailstead.proto.imap.events import PAUSED, StorageWork
from mailstead.proto.imap.storage import Appender, append_steps, copy_steps, run_here
from tests.proto.imap.imap_transcript import WHEN, IMAPTranscript, selected, uidvalidity

NEW = b"Subject: new\r\n\r\nhello\r\n"  # 23 octets


@pytest.fixture
def a(root: Path) -> IMAPTranscript:
    return selected(root)


@pytest.fixture
def b(root: Path, a: IMAPTranscript) -> IMAPTranscript:
    """A second session in A's worker: the same account and mailbox objects."""
    return IMAPTranscript(root, worker=a).login().select()


def _cur(root: Path) -> set[str]:
    return {p.name for p in (root / "cur").iterdir()}


def test_append_is_answered_after_its_storage_work(root: Path, a: IMAPTranscript) -> None:
    a.hold_storage = True
    # Pipelined input waits behind the paused command (RFC 9051 §5.5).
    assert a.feed(b"a1 APPEND INBOX (\\Seen) {23+}\r\n" + NEW + b"\r\na2 NOOP\r\n") == b""
    assert a.server.next_event() is PAUSED
    (work,) = a.held
    assert isinstance(work, StorageWork)
    # The first step writes to tmp/ only: nothing in cur/ yet.
    before = _cur(root)
    assert a.step_held() == b""
    assert _cur(root) != before  # renamed on the loop; its fsync is the next step
    assert len(a.held) == 1
    v = uidvalidity(root)
    assert (
        a.run_held()
        == (
            f"* 4 EXISTS\r\n* 4 RECENT\r\na1 OK [APPENDUID {v} 4] APPEND completed\r\n"
            "a2 OK NOOP completed\r\n"
        ).encode()
    )
    assert a.say("a3 UID FETCH 4 (FLAGS RFC822.SIZE)") == (
        "* 4 FETCH (UID 4 FLAGS (\\Seen \\Recent) RFC822.SIZE 23)\r\na3 OK FETCH completed\r\n"
    )


def test_a_session_of_the_same_worker_runs_meanwhile(
    root: Path, a: IMAPTranscript, b: IMAPTranscript
) -> None:
    a.hold_storage = True
    assert a.feed(b"a1 APPEND INBOX {23+}\r\n" + NEW + b"\r\n") == b""
    a.step_held()  # the file is in cur/; cur/'s fsync and the index commit are to come
    # B is answered at once, and sees no message that has no durable UID yet.
    b.run("""
        C: b1 NOOP
        S: b1 OK NOOP completed
        C: b2 FETCH 3 (UID)
        S: * 3 FETCH (UID 3)
        S: b2 OK FETCH completed
        C: b3 UID SEARCH ALL
        S: * SEARCH 1 2 3
        S: b3 OK SEARCH completed
    """)
    v = uidvalidity(root)
    assert (
        a.run_held()
        == f"* 4 EXISTS\r\n* 4 RECENT\r\na1 OK [APPENDUID {v} 4] APPEND completed\r\n".encode()
    )
    b.run("""
        C: b4 NOOP
        S: * 4 EXISTS
        S: * 0 RECENT
        S: b4 OK NOOP completed
    """)


def test_another_process_waits_for_the_commit(root: Path, a: IMAPTranscript) -> None:
    """Within the dirty window another process takes an unknown file in cur/
    for an APPEND in flight and leaves its UID to that APPEND's commit."""
    a.hold_storage = True
    a.feed(b"a1 APPEND INBOX {23+}\r\n" + NEW + b"\r\n")
    a.step_held()
    other = IMAPTranscript(root).login()  # a second process: its own index connection
    other.run("""
        C: o1 STATUS INBOX (MESSAGES UIDNEXT)
        S: * STATUS "INBOX" (MESSAGES 3 UIDNEXT 4)
        S: o1 OK STATUS completed
    """)
    v = uidvalidity(root)
    assert a.run_held() == (
        f"* 4 EXISTS\r\n* 4 RECENT\r\na1 OK [APPENDUID {v} 4] APPEND completed\r\n".encode()
    )
    other.run("""
        C: o2 STATUS INBOX (MESSAGES UIDNEXT)
        S: * STATUS "INBOX" (MESSAGES 4 UIDNEXT 5)
        S: o2 OK STATUS completed
    """)


def test_another_process_may_index_the_file_first(root: Path, a: IMAPTranscript) -> None:
    """Once the rename is older than the dirty window, another process's scan
    indexes the file (durably); the APPEND's commit finds that UID."""
    a.hold_storage = True
    a.feed(b"a1 APPEND INBOX {23+}\r\n" + NEW + b"\r\n")
    a.step_held()
    for sub in ("new", "cur"):  # the window has passed
        os.utime(root / sub, (WHEN, WHEN))
    other = IMAPTranscript(root).login()
    other.run("""
        C: o1 STATUS INBOX (MESSAGES UIDNEXT)
        S: * STATUS "INBOX" (MESSAGES 4 UIDNEXT 5)
        S: o1 OK STATUS completed
    """)
    v = uidvalidity(root)
    assert a.run_held() == (
        f"* 4 EXISTS\r\n* 4 RECENT\r\na1 OK [APPENDUID {v} 4] APPEND completed\r\n".encode()
    )
    other.run("""
        C: o2 STATUS INBOX (MESSAGES UIDNEXT)
        S: * STATUS "INBOX" (MESSAGES 4 UIDNEXT 5)
        S: o2 OK STATUS completed
    """)


def test_a_failed_write_is_answered_no_and_leaves_nothing(root: Path, a: IMAPTranscript) -> None:
    a.hold_storage = True
    a.feed(b"a1 APPEND INBOX {23+}\r\n" + NEW + b"\r\n")
    shutil.rmtree(root / "tmp")  # the write in the thread fails
    before = _cur(root)
    assert a.run_held() == b"a1 NO [UNAVAILABLE] Cannot do that now\r\n"
    assert _cur(root) == before
    (root / "tmp").mkdir()
    a.run("""
        C: a2 STATUS INBOX (MESSAGES UIDNEXT)
        S: * STATUS "INBOX" (MESSAGES 3 UIDNEXT 4)
        S: a2 OK STATUS completed
    """)


def test_copy_of_several_messages_is_one_step(root: Path, a: IMAPTranscript) -> None:
    # Hard links made on the loop, one fsync of cur/ off it, one index commit.
    a.hold_storage = True
    assert a.feed(b"a1 COPY 1:3 INBOX\r\n") == b""
    assert len(a.held) == 1
    v = uidvalidity(root)
    assert a.step_held() == (
        f"* 6 EXISTS\r\n* 6 RECENT\r\na1 OK [COPYUID {v} 1:3 4:6] COPY completed\r\n".encode()
    )
    assert not a.held


def test_move_expunges_after_the_copy_is_durable(
    root: Path, a: IMAPTranscript, b: IMAPTranscript
) -> None:
    a.create("c1", "Trash")
    a.hold_storage = True
    assert a.feed(b"a1 MOVE 2 Trash\r\n") == b""
    assert len(a.held) == 1
    # Linked into the Trash, not yet durable: no UID there, nothing expunged here.
    assert len(list((root / ".Trash" / "cur").iterdir())) == 1
    b.run("""
        C: b1 STATUS Trash (MESSAGES UIDNEXT)
        S: * STATUS "Trash" (MESSAGES 0 UIDNEXT 1)
        S: b1 OK STATUS completed
        C: b2 NOOP
        S: b2 OK NOOP completed
    """)
    v = uidvalidity(root, "Trash")
    assert a.run_held() == (
        f"* OK [COPYUID {v} 2 1] Moved\r\n* 2 EXPUNGE\r\na1 OK MOVE completed\r\n".encode()
    )


def test_storage_done_without_work_is_a_bug(a: IMAPTranscript) -> None:
    with pytest.raises(LocalProtocolError):
        a.server.storage_done()


def test_a_session_ended_meanwhile_says_nothing_more(root: Path, a: IMAPTranscript) -> None:
    a.hold_storage = True
    a.feed(b"a1 APPEND INBOX {23+}\r\n" + NEW + b"\r\n")
    a.server.timeout()  # the session ends while the write runs
    assert a.output() == b"* BYE Autologout; idle for too long\r\n"
    assert a.run_held() == b""
    assert a.closed


class _PlainStore:
    """A store without append_staged/copy_staged (as mbox and PostgreSQL are today)."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def append(self, data: bytes, flags: Sequence[str], internaldate: float | None) -> int:
        self.calls.append("append")
        return 7

    def copy_to(self, uids: Iterable[int], dest: Appender) -> list[tuple[int, int]]:
        self.calls.append("copy_to")
        return [(uid, 7) for uid in uids]


def test_a_store_without_stages_is_called_at_once() -> None:
    store = _PlainStore()
    steps = append_steps(store, NEW, [], None)  # type: ignore[arg-type]
    with pytest.raises(StopIteration) as done:
        next(steps)  # no step off the loop: all of it on the first
    assert (done.value.value, store.calls) == (7, ["append"])
    copies = copy_steps(store, [3], store)  # type: ignore[arg-type]
    assert run_here(copies) == [(3, 7)]
    assert store.calls == ["append", "copy_to"]
