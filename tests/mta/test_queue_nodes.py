"""Two nodes on one PostgreSQL queue: each message is claimed by one, a dead node's
claims run out for the other, and any node reads, lists and delivers what any
node queued."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mailstead.mta.envelope import Attempt, QueuedMessage, QueuedRecipient
from mailstead.mta.queue import Queue
from tests.mta.queue_backends import Databases, cluster, together
from tests.mta.test_outbound import World, in_loop

__all__ = ["cluster"]  # the fixture, for pytest

NOW = 1_700_000_000.0
RAW = b"From: alice@example.test\r\nTo: bob@solo.test\r\nSubject: hi\r\n\r\nbody\r\n"


def queued(queue: Queue, count: int = 1, at: float = NOW) -> list[str]:
    return [
        queue.enqueue(
            "alice@example.test", [QueuedRecipient(f"r{i}@solo.test")], [RAW], received_at=at
        )
        for i in range(count)
    ]


def ids(messages: list[QueuedMessage]) -> list[str]:
    return [m.id for m in messages]


def test_two_nodes_claiming_at_once_take_disjoint_messages(cluster: Databases) -> None:
    a, b = cluster.queue(node="node-a"), cluster.queue(node="node-b")
    every = set(queued(a, 120))
    taken: dict[str, set[str]] = {"a": set(), "b": set()}

    def engine(name: str, queue: Queue) -> Callable[[], None]:
        def run() -> None:
            # As the outbound engine does: small batches, its busy ones skipped.
            while batch := queue.due(NOW, 7, skip=taken[name]):
                taken[name] |= set(ids(batch))

        return run

    assert together(engine("a", a), engine("b", b)) == []
    assert taken["a"].isdisjoint(taken["b"])
    assert taken["a"] | taken["b"] == every
    assert taken["a"] and taken["b"]  # both worked (they started together)


def test_a_dead_nodes_claim_runs_out_and_the_other_node_takes_it(cluster: Databases) -> None:
    a, b = cluster.queue(node="node-a"), cluster.queue(node="node-b", lease=60.0)
    (qid,) = queued(a)
    assert ids(a.due(NOW)) == [qid]  # node a claims it, then dies mid-delivery
    assert b.due(NOW) == []
    assert b.due(NOW + 59) == []
    assert ids(b.due(NOW + 61)) == [qid]  # a's lease ran out
    # Node a, had it only stalled, does not get it back: it is b's now.
    assert a.due(NOW + 62, skip={qid}) == [] and a.due(NOW + 62) == []


def test_a_node_keeps_what_it_is_still_delivering(cluster: Databases) -> None:
    a, b = cluster.queue(node="node-a"), cluster.queue(node="node-b")
    first, second = queued(a, 2)
    assert ids(a.due(NOW)) == [first, second]
    # A pass later a is still busy with the first: its lease runs on; the
    # second it did not start is handed back for anyone to take.
    assert a.due(NOW + 50, skip={first}, limit=0) == []
    assert ids(b.due(NOW + 100)) == [second]
    assert b.due(NOW + 100, skip={second}) == []  # the first is a's until NOW + 110
    assert ids(b.due(NOW + 111, skip={second})) == [first]


def test_a_stopping_node_hands_its_claims_back(cluster: Databases) -> None:
    a, b = cluster.queue(node="node-a"), cluster.queue(node="node-b")
    claimed = queued(a, 3)
    assert ids(a.due(NOW)) == claimed
    assert b.due(NOW) == []
    a.close()  # SIGTERM: Queue.close hands the leases back
    assert ids(b.due(NOW)) == claimed


def test_any_node_reads_and_manages_what_another_queued(cluster: Databases) -> None:
    a, b = cluster.queue(node="node-a"), cluster.queue(node="node-b")
    staged = a.stage(
        "alice@example.test", [QueuedRecipient("bob@solo.test")], [RAW[:20], RAW[20:]],
        received_at=NOW,
    )  # fmt: skip
    assert b.get(staged.queue_id) is None  # staged: neither rows nor content yet
    staged.publish()
    staged.close()
    qid = staged.queue_id
    assert b.open_message(qid) == RAW and ids(b.list()) == [qid]
    assert b.hold([qid], NOW) == [qid] and a.due(NOW) == []
    assert b.release([qid]) == [qid]
    a.record(qid, [Attempt("bob@solo.test", "deferred", "451 later", next_attempt=NOW + 600)])
    assert b.flush(NOW) == 1 and ids(a.due(NOW)) == [qid]
    b.delete(qid)
    assert a.get(qid) is None
    with pytest.raises(KeyError):
        a.open_message(qid)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    (tmp_path / "node-b").mkdir()
    w = World(tmp_path / "node-b")
    yield w
    w.close()


@in_loop
async def test_a_message_whose_node_died_is_delivered_by_the_other(
    cluster: Databases, world: World
) -> None:
    node_a = cluster.queue(node="node-a")
    # Node b's outbound engine, on the shared queue, with fake DNS and time.
    world.queue.close()
    world.queue = cluster.queue(node="node-b")
    world.outbound = world._outbound()
    mx = world.mx("127.0.0.1")
    now = world.clock.time()
    qid = node_a.enqueue(
        "alice@example.test", [QueuedRecipient("bob@solo.test")], [RAW], received_at=now
    )
    assert ids(node_a.due(now)) == [qid]  # node a took it, then died
    assert await world.run_once() == 0
    world.clock.advance(61)  # a's claim runs out
    assert await world.run_once() == 1
    assert [t.accepted for t in mx.transactions] == [("bob@solo.test",)]
    assert mx.transactions[0].message.content.endswith(b"\r\n\r\nbody\r\n")
    assert node_a.get(qid) is None  # delivered: gone for every node
