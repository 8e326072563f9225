"""Held messages and the operator's filters: a held message is never tried until released."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailstead.mta.envelope import Attempt, QueuedRecipient
from mailstead.mta.queue import Queue
from mailstead.mta.queue_select import Selection, SelectionError, message_state, parse_duration
from tests.mta.queue_backends import Databases, databases
from tests.mta.test_outbound import World, in_loop

__all__ = ["databases"]  # the fixture, for pytest

NOW = 1_700_000_000.0
LATER = NOW + 3600.0


@pytest.fixture
def queue(databases: Databases) -> Iterator[Queue]:
    with databases.queue() as q:
        yield q


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    w.close()


def _one(queue: Queue, sender: str, *rcpts: str, at: float = NOW) -> str:
    return queue.enqueue(sender, [QueuedRecipient(r) for r in rcpts], [b"x\r\n"], received_at=at)


def test_held_messages_are_never_due_until_released(queue: Queue) -> None:
    held, free = _one(queue, "a@x.test", "b@remote.test"), _one(queue, "a@x.test", "c@remote.test")
    assert queue.hold([held, "0" * 24], NOW) == [held]
    assert queue.hold([held], NOW) == []  # already held
    assert [m.id for m in queue.due(LATER)] == [free]
    queue.record(free, [Attempt("c@remote.test", "deferred", "451 later", LATER + 60)])
    assert queue.next_due() == LATER + 60  # the held one's earlier time does not count
    assert queue.get(held).held_at == NOW  # type: ignore[union-attr]
    assert queue.release([held, free]) == [held]
    assert [m.id for m in queue.due(LATER)] == [held]
    assert queue.next_due() == NOW


def test_flush_leaves_held_messages_alone_and_counts_what_it_made_due(queue: Queue) -> None:
    a, b = _one(queue, "a@x.test", "b@remote.test"), _one(queue, "a@x.test", "c@remote.test")
    for qid, rcpt in ((a, "b@remote.test"), (b, "c@remote.test")):
        queue.record(qid, [Attempt(rcpt, "deferred", "451 later", LATER + 600)])
    queue.hold([b], NOW)
    assert queue.flush(LATER) == 1
    assert queue.flush(LATER) == 0  # already due
    assert queue.flush(LATER, [b]) == 0  # held
    queue.release([b])
    assert queue.flush(LATER, [b]) == 1


def test_schema_2_gains_the_held_state(tmp_path: Path) -> None:
    Queue(tmp_path).close()
    db = sqlite3.connect(tmp_path / "queue.sqlite3")
    db.executescript(
        "BEGIN; ALTER TABLE messages DROP COLUMN held_at; PRAGMA user_version=2; COMMIT;"
    )
    db.close()
    with Queue(tmp_path) as queue:
        qid = _one(queue, "a@x.test", "b@remote.test")
        assert queue.hold([qid], NOW) == [qid]
    db = sqlite3.connect(tmp_path / "queue.sqlite3")
    assert db.execute("PRAGMA user_version").fetchone() == (3,)
    db.close()


def test_states_and_filters(queue: Queue) -> None:
    due = _one(queue, "alice@x.test", "b@Remote.TEST", "c@other.test", at=NOW - 7200)
    waiting = _one(queue, "", "d@remote.test", at=NOW - 60)
    queue.record(waiting, [Attempt("d@remote.test", "deferred", "451", LATER)])
    held = _one(queue, "carol@y.test", "e@other.test")
    queue.hold([held], NOW)
    messages = queue.list()
    assert [message_state(m, NOW) for m in messages] == ["active", "deferred", "held"]

    def ids(**filters: object) -> list[str]:
        return [m.id for m in Selection(**filters).pick(messages, NOW)]  # type: ignore[arg-type]

    assert ids() == [due, waiting, held]
    assert ids(to_domain="remote.test") == [due, waiting]
    assert ids(to_domain="OTHER.test.") == [due, held]
    assert ids(sender="ALICE@x.test") == [due]
    assert ids(sender="@y.test") == [held]
    assert ids(sender="<>") == [waiting]
    assert ids(state="deferred") == [waiting]
    assert ids(state="held", to_domain="other.test") == [held]
    assert ids(older_than=parse_duration("1h")) == [due]
    assert ids(older_than=parse_duration("1m")) == [due, waiting]


@pytest.mark.parametrize("text", ["", "1", "h", "1y", "-1h", "1.5h", "1 h 2", "9" * 20 + "s"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(SelectionError):
        parse_duration(text)


def test_durations() -> None:
    assert [parse_duration(t) for t in ("30s", "15m", "1h", "2d", "1w", " 2D ")] == [
        30,
        900,
        3600,
        172800,
        604800,
        172800,
    ]


@pytest.mark.parametrize("bad", ["", "a..b", "x" * 300])
def test_bad_domains_are_selection_errors(bad: str) -> None:
    with pytest.raises(SelectionError):
        Selection(to_domain=bad)
    with pytest.raises(SelectionError):
        Selection(sender=f"@{bad}")


@in_loop
async def test_running_outbound_skips_a_held_message_and_delivers_it_once_released(
    world: World,
) -> None:
    mx = world.mx("127.0.0.1")
    qid = world.send("bob@solo.test")
    assert world.queue.hold([qid], world.clock.time()) == [qid]
    stop = asyncio.Event()
    running = asyncio.create_task(world.outbound.run(stop))
    try:
        await asyncio.sleep(0.3)  # the loop looked at the queue at least once
        assert mx.sessions == []
        assert world.queue.get(qid) is not None
        assert world.queue.release([qid]) == [qid]
        world.outbound.wake()
        for _ in range(100):
            if world.queue.get(qid) is None:
                break
            await asyncio.sleep(0.05)
        assert world.queue.get(qid) is None  # delivered, so it left the queue
        assert [h.accepted for h in mx.transactions] == [("bob@solo.test",)]
    finally:
        stop.set()
        await running
