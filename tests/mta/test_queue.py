"""The durable queue: the content is durable before its row, and rows never lack content.

The contract runs on both engines (``databases``: SQLite with message files,
PostgreSQL with content rows); what only the files have (fsync order,
orphans, SQLite's schema steps) runs on SQLite alone (``sqlite_queue``).
"""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from mailstead.durable import Buffer
from mailstead.mta.envelope import Attempt, QueuedRecipient, new_queue_id
from mailstead.mta.queue import Queue
from mailstead.mta.queue_bodies import MessageFiles
from tests.mta.queue_backends import Databases, databases

__all__ = ["databases"]  # the fixture, for pytest

MSG: list[Buffer] = [b"From: a@example.test\r\n", b"Subject: hi\r\n\r\n", memoryview(b"body\r\n")]
RAW = b"From: a@example.test\r\nSubject: hi\r\n\r\nbody\r\n"
RCPTS = [
    QueuedRecipient(
        "bob@example.net", notify=("SUCCESS", "FAILURE"), orcpt="rfc822;Bob@example.net"
    ),
    QueuedRecipient("carol@example.org"),
]


@pytest.fixture
def queue(databases: Databases) -> Queue:
    return databases.queue()


@pytest.fixture
def sqlite_queue(tmp_path: Path) -> Iterator[Queue]:
    with Queue(tmp_path) as q:
        yield q


def files_of(queue: Queue) -> MessageFiles:
    """The message files of a SQLite queue, to make orphans with."""
    assert isinstance(queue._bodies, MessageFiles)
    return queue._bodies


def files(queue: Queue) -> list[str]:
    """The message files of ``queue`` (none ever, with PostgreSQL)."""
    return [
        f"{d.name}/{n}" for d in (queue.msg_dir, queue.tmp_dir) if d.is_dir() for n in os.listdir(d)
    ]


def rows_without_files(data_dir: Path) -> list[str]:
    """Committed message rows whose file is missing, seen by another connection."""
    conn = sqlite3.connect(data_dir / "queue.sqlite3")
    try:
        rows = conn.execute("SELECT id, path FROM messages").fetchall()
    finally:
        conn.close()
    return [i for i, p in rows if not (data_dir / "queue" / p).is_file()]


def test_enqueue_get_open(queue: Queue, tmp_path: Path) -> None:
    qid = queue.enqueue("a@example.test", RCPTS, MSG, envid="E1", ret="HDRS", received_at=100.5)
    msg = queue.get(qid)
    assert msg is not None
    assert (msg.id, msg.sender, msg.received_at, msg.size, msg.envid, msg.ret) == (
        qid,
        "a@example.test",
        100.5,
        len(RAW),
        "E1",
        "HDRS",
    )
    assert queue.open_message(qid) == RAW
    bob, carol = msg.recipients
    assert (bob.address, bob.notify, bob.orcpt) == (
        "bob@example.net",
        ("SUCCESS", "FAILURE"),
        "rfc822;Bob@example.net",
    )
    assert (carol.notify, carol.orcpt) == (None, None)
    for r in msg.recipients:
        assert (r.state, r.attempts, r.next_attempt, r.last_error) == ("pending", 0, 100.5, None)
    if not queue.claims:  # SQLite: the content is a private file
        assert msg.path == tmp_path / "queue" / "msg" / qid
        assert stat.S_IMODE(msg.path.stat().st_mode) == 0o600
        assert files(queue) == [f"msg/{qid}"]
    else:
        assert files(queue) == []  # nodes share no disk: the content is in the database


def test_null_sender_and_notify_never(queue: Queue) -> None:
    qid = queue.enqueue(
        "", [QueuedRecipient("x@example.net", notify=("NEVER",))], [b"x\r\n"], received_at=1.0
    )
    msg = queue.get(qid)
    assert msg is not None and msg.sender == "" and msg.recipients[0].notify == ("NEVER",)


def test_list_oldest_first_and_delete(queue: Queue) -> None:
    late = queue.enqueue("a@x.test", RCPTS, MSG, received_at=20.0)
    early = queue.enqueue("b@x.test", RCPTS[:1], MSG, received_at=10.0)
    assert [m.id for m in queue.list()] == [early, late]
    path = queue.msg_dir / late
    queue.delete(late)
    assert queue.get(late) is None
    assert not path.exists()
    assert [m.id for m in queue.list()] == [early]
    with pytest.raises(KeyError):
        queue.delete(late)
    with pytest.raises(KeyError):
        queue.open_message(late)


@pytest.mark.parametrize("bad", ["../../etc/passwd", "", "msg/x", "0" * 23, "g" * 24, "a" * 24])
def test_hostile_queue_ids(queue: Queue, bad: str) -> None:
    assert queue.get(bad) is None
    with pytest.raises(KeyError):
        queue.open_message(bad)
    with pytest.raises(KeyError):
        queue.delete(bad)


def test_duplicate_recipients_are_queued_once(queue: Queue) -> None:
    qid = queue.enqueue(
        "a@x.test",
        [QueuedRecipient("b@x.test", notify=("DELAY",)), QueuedRecipient("b@x.test")],
        MSG,
        received_at=1.0,
    )
    msg = queue.get(qid)
    assert msg is not None
    assert [(r.address, r.notify) for r in msg.recipients] == [("b@x.test", ("DELAY",))]


def test_argument_checks_write_nothing(queue: Queue) -> None:
    with pytest.raises(ValueError):
        queue.enqueue("a@x.test", [], MSG, received_at=1.0)
    with pytest.raises(ValueError):
        queue.enqueue("a@x.test", RCPTS, MSG, ret="BODY", received_at=1.0)
    assert files(queue) == []


def test_durability_order(
    sqlite_queue: Queue, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = sqlite_queue
    events: list[tuple[str, ...]] = []
    real_fsync, real_link = os.fsync, os.link

    def fsync(fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        if "queue.sqlite3" not in path:
            events.append(("fsync", path))
            # A row is never visible before its file is durable.
            assert rows_without_files(tmp_path) == []
            conn = sqlite3.connect(tmp_path / "queue.sqlite3")
            assert conn.execute("SELECT count(*) FROM messages").fetchone() == (0,)
            conn.close()
        real_fsync(fd)

    def link(src: str, dst: str) -> None:
        events.append(("link", str(src), str(dst)))
        real_link(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "link", link)
    qid = queue.enqueue("a@x.test", RCPTS, MSG, received_at=1.0)
    tmp_file = str(queue.tmp_dir / qid)
    assert events == [
        ("fsync", tmp_file),
        ("link", tmp_file, str(queue.msg_dir / qid)),
        ("fsync", str(queue.msg_dir)),
    ]
    assert queue.get(qid) is not None


def test_database_failure_removes_the_file(queue: Queue) -> None:
    bad = QueuedRecipient(None)  # type: ignore[arg-type]  # NOT NULL violation
    with pytest.raises((sqlite3.IntegrityError, psycopg.IntegrityError)):
        queue.enqueue("a@x.test", [bad], MSG, received_at=1.0)
    assert files(queue) == []
    assert queue.list() == []
    # The connection is still usable after the rollback.
    assert queue.get(queue.enqueue("a@x.test", RCPTS, MSG, received_at=1.0)) is not None


def test_write_failure_leaves_nothing(sqlite_queue: Queue, monkeypatch: pytest.MonkeyPatch) -> None:
    queue = sqlite_queue

    def fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(OSError):
        queue.enqueue("a@x.test", RCPTS, MSG, received_at=1.0)
    monkeypatch.undo()
    assert files(queue) == []
    assert queue.list() == []


def test_recover_removes_orphans_only(tmp_path: Path) -> None:
    q = Queue(tmp_path)
    kept = q.enqueue("a@x.test", RCPTS, MSG, received_at=1.0)
    # A crash between the durable file and the row commit:
    orphan, _ = files_of(q).write([b"orphan\r\n"], None)
    old = time.time() - 3600
    os.utime(q.msg_dir / kept, (old, old))
    os.utime(q.msg_dir / orphan, (old, old))
    (q.tmp_dir / "half-written").write_bytes(b"x")
    os.utime(q.tmp_dir / "half-written", (old, old))
    fresh, _ = files_of(q).write([b"in flight elsewhere\r\n"], None)
    q.close()

    q = Queue(tmp_path)  # recover() runs on open
    assert sorted(os.listdir(q.msg_dir)) == sorted([kept, fresh])  # fresh: within grace
    assert os.listdir(q.tmp_dir) == []
    assert [m.id for m in q.list()] == [kept]
    assert q.open_message(kept) == RAW
    q.orphan_grace = 0
    assert q.recover() == 1
    assert os.listdir(q.msg_dir) == [kept]


def test_recover_never_touches_rows(tmp_path: Path) -> None:
    q = Queue(tmp_path, orphan_grace=0)
    qid = q.enqueue("a@x.test", RCPTS, MSG, received_at=1.0)
    (q.msg_dir / qid).unlink()  # damage from outside
    assert q.recover() == 0
    assert q.get(qid) is not None


def test_state_is_constrained(sqlite_queue: Queue, tmp_path: Path) -> None:
    qid = sqlite_queue.enqueue("a@x.test", RCPTS, MSG, received_at=1.0)
    conn = sqlite3.connect(tmp_path / "queue.sqlite3")
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("UPDATE recipients SET state = 'lost' WHERE message_id = ?", (qid,))
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    plan = conn.execute(
        "EXPLAIN QUERY PLAN SELECT * FROM recipients WHERE state = 'pending' AND next_attempt < 5"
    ).fetchall()
    assert any("recipients_due" in str(row) for row in plan)
    conn.close()


def test_concurrent_enqueue_never_exposes_a_row_without_file(
    sqlite_queue: Queue, tmp_path: Path
) -> None:
    queue = sqlite_queue
    ids: list[str] = []
    errors: list[BaseException] = []
    stop = threading.Event()
    violations: list[list[str]] = []

    def watcher() -> None:
        while not stop.is_set():
            missing = rows_without_files(tmp_path)
            if missing:
                violations.append(missing)

    def worker(t: int) -> None:
        try:
            for i in range(25):
                ids.append(
                    queue.enqueue(
                        f"s{t}@x.test", RCPTS, [f"{t}-{i}\r\n".encode()], received_at=float(i)
                    )
                )
        except BaseException as exc:
            errors.append(exc)

    w = threading.Thread(target=watcher)
    w.start()
    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    stop.set()
    w.join()
    assert errors == [] and violations == []
    assert len(set(ids)) == 200
    assert sorted(os.listdir(queue.msg_dir)) == sorted(ids)
    assert len(queue.list()) == 200


def test_reopen_keeps_everything(databases: Databases) -> None:
    with databases.queue() as q:
        qid = q.enqueue("a@x.test", RCPTS, MSG, envid=None, ret="FULL", received_at=3.0)
    with databases.queue() as q:
        msg = q.get(qid)
        assert msg is not None and msg.ret == "FULL" and len(msg.recipients) == 2


def test_due_record_and_next_due(queue: Queue) -> None:
    a, b = QueuedRecipient("a@remote.test"), QueuedRecipient("b@remote.test")
    queue_id = queue.enqueue("s@example.test", [a, b], [b"x\r\n"], received_at=1000.0)
    assert [m.id for m in queue.due(now=999.0)] == []
    assert [m.id for m in queue.due(now=1000.0)] == [queue_id]
    queue.record(
        queue_id,
        [
            Attempt("a@remote.test", "delivered"),
            Attempt("b@remote.test", "deferred", "451 4.3.0 try later", next_attempt=1060.0),
        ],
    )
    (msg,) = queue.list()
    by_address = {r.address: r for r in msg.recipients}
    assert by_address["a@remote.test"].state == "delivered"
    assert not by_address["a@remote.test"].open
    b_status = by_address["b@remote.test"]
    assert (b_status.state, b_status.attempts, b_status.last_error) == (
        "deferred",
        1,
        "451 4.3.0 try later",
    )
    assert queue.next_due() == 1060.0
    assert queue.due(now=1059.0) == []
    assert queue.flush(now=1010.0) == 1
    assert [m.id for m in queue.due(now=1010.0)] == [queue_id]
    with pytest.raises(ValueError):
        queue.record(queue_id, [Attempt("b@remote.test", "deferred")])


def test_delay_warning_flag(queue: Queue) -> None:
    queue_id = queue.enqueue(
        "s@example.test", [QueuedRecipient("a@remote.test")], [b"x\r\n"], received_at=1.0
    )
    queue.mark_delay_warned(queue_id, ["a@remote.test"])
    (status,) = queue.list()[0].recipients
    assert status.delay_warned


def test_schema_1_is_migrated(tmp_path: Path) -> None:
    Queue(tmp_path).close()
    db = sqlite3.connect(tmp_path / "queue.sqlite3")
    db.executescript(
        "BEGIN; ALTER TABLE recipients DROP COLUMN delay_warned;"
        " ALTER TABLE messages DROP COLUMN held_at; PRAGMA user_version=1; COMMIT;"
    )
    db.close()
    with Queue(tmp_path) as queue:
        queue.enqueue("s@x.test", [QueuedRecipient("a@remote.test")], [b"x"], received_at=1.0)
        assert not queue.list()[0].recipients[0].delay_warned
        assert queue.list()[0].held_at is None


def test_the_caller_may_name_the_message(queue: Queue) -> None:
    wanted = new_queue_id()
    assert queue.enqueue("a@x.test", RCPTS, MSG, received_at=1.0, queue_id=wanted) == wanted
    with pytest.raises(ValueError):
        queue.enqueue("a@x.test", RCPTS, MSG, received_at=1.0, queue_id="../../x")


def test_the_last_outcome_removes_the_message_in_the_same_commit(queue: Queue) -> None:
    qid = queue.enqueue("s@x.test", RCPTS, MSG, received_at=1.0)
    bob, carol = (r.address for r in RCPTS)
    assert queue.record(qid, [Attempt(bob, "delivered")]) is False
    assert queue.get(qid) is not None
    assert queue.record(qid, [Attempt(carol, "failed", "550 5.1.1 no")]) is True
    assert queue.get(qid) is None
    assert files(queue) == []


def test_due_skips_busy_messages_without_losing_the_limit(queue: Queue) -> None:
    ids = [queue.enqueue("s@x.test", RCPTS, MSG, received_at=1.0) for _ in range(3)]
    assert [m.id for m in queue.due(now=2.0, limit=2, skip={ids[0]})] == ids[1:]
