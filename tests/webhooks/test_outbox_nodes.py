"""Two nodes on one PostgreSQL outbox: each delivery goes to one node's dispatcher,
a dead node's leases run out for the other, a restarting node frees only its own."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from mailstead.events import Event
from mailstead.webhooks.outbox import Attempted, Claimed, Outbox
from tests.mta.queue_backends import Databases, cluster, together
from tests.webhooks.fakes import Clock

__all__ = ["cluster"]  # the fixture, for pytest


@pytest.fixture
def clock() -> Clock:
    return Clock()


def nodes(cluster: Databases, clock: Clock) -> tuple[Outbox, Outbox]:
    return cluster.outbox(node="node-a", clock=clock), cluster.outbox(node="node-b", clock=clock)


def event(account: str = "alice@example.test") -> Event:
    return Event("auth.failed", {}, account=account, domain="example.test")


def sent(claimed: Claimed) -> Attempted:
    return Attempted(claimed, 200, None, 0.01, "ok", next_attempt=None, succeeded=True)


def test_two_dispatchers_at_once_never_send_one_delivery_twice(
    cluster: Databases, clock: Clock
) -> None:
    a, b = nodes(cluster, clock)
    endpoint = a.endpoints.add("https://hooks.example/x")
    for _ in range(10):
        a.emit([event() for _ in range(10)])
    posted: dict[str, list[str]] = {"a": [], "b": []}

    def dispatcher(name: str, outbox: Outbox) -> Callable[[], None]:
        def run() -> None:
            while claimed := outbox.claim(endpoint, 4, lease=120):
                posted[name] += [c.id for c in claimed]
                outbox.record([sent(c) for c in claimed])

        return run

    assert together(dispatcher("a", a), dispatcher("b", b)) == []
    every = posted["a"] + posted["b"]
    assert len(every) == len(set(every)) == 100
    assert posted["a"] and posted["b"]
    assert {d.state for d in b.deliveries()} == {"succeeded"}


def test_a_dead_nodes_lease_runs_out_and_the_other_node_sends_it(
    cluster: Databases, clock: Clock
) -> None:
    a, b = nodes(cluster, clock)
    endpoint = a.endpoints.add("https://hooks.example/x")
    a.emit([event()])
    (claimed,) = a.claim(endpoint, 10, lease=120)  # node a dies mid-POST
    assert b.claim(endpoint, 10, lease=120) == []
    clock.now += 121
    (again,) = b.claim(endpoint, 10, lease=120)
    assert again.id == claimed.id  # the same webhook-id: receivers deduplicate


def test_a_restarting_node_frees_only_its_own_leases(cluster: Databases, clock: Clock) -> None:
    a, b = nodes(cluster, clock)
    endpoint = a.endpoints.add("https://hooks.example/x")
    a.emit([event(), event()])
    (mine,) = a.claim(endpoint, 1, lease=120)
    (theirs,) = b.claim(endpoint, 1, lease=120)
    # Node b restarts: its dispatcher was killed; node a's is still sending.
    assert cluster.outbox(node="node-b", clock=clock).release_leases() == 1
    (again,) = b.claim(endpoint, 10, lease=120)
    assert again.id == theirs.id != mine.id


def test_an_ordered_endpoint_gets_one_delivery_per_account_across_nodes(
    cluster: Databases, clock: Clock
) -> None:
    a, b = nodes(cluster, clock)
    endpoint = a.endpoints.add("https://hooks.example/x", ordered=True)
    a.emit([event("alice@example.test"), event("alice@example.test")])
    (first,) = a.claim(endpoint, 10, lease=120)
    assert b.claim(endpoint, 10, lease=120) == []  # alice's second waits for her first
    a.record([sent(first)])
    (second,) = b.claim(endpoint, 10, lease=120)
    assert second.id != first.id
