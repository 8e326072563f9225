"""Failed-login penalties: waits that grow, blocks that pass, never the account.

Every rule is checked on both stores. In shared memory, as one node's
workers count; and on PostgreSQL with each call made by a new node (fresh
shared memory, one cluster database), so that only the database's rows can
remember a failure: what passes there holds for a guesser spreading over
the nodes of a cluster.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest

from mailstead.limits import SharedPenaltyLimits
from mailstead.net.auth_penalty import BLOCKED, NETWORK_SHARE, AuthPenalty
from mailstead.net.auth_penalty_db import PostgresFailures

# Generous: the machine running the tests may be busy (the deadline has tests
# of its own, in test_auth_penalty_cluster.py).
PATIENT = SharedPenaltyLimits(round_trip=5.0)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class NewNodeEachCall:
    """The AuthPenalty face, each call on a new node of one cluster: only the database remembers."""

    def __init__(self, shared: PostgresFailures, settings: dict[str, Any]) -> None:
        self.shared = shared
        self.settings = settings

    def _node(self) -> AuthPenalty:
        return AuthPenalty(**self.settings, clock=self.shared.clock, shared=self.shared)

    def attempt(self, ip: str) -> float:
        return self._node().attempt(ip)

    def failures(self, ip: str) -> int:
        return self._node().failures(ip)

    def succeeded(self, ip: str) -> None:
        self._node().succeeded(ip)


Penalty = AuthPenalty | NewNodeEachCall
MakePenalty = Callable[..., Penalty]


@pytest.fixture(params=["shared memory", "postgresql"])
def make_penalty(request: pytest.FixtureRequest) -> MakePenalty:
    """``make_penalty(clock, **settings)``: a penalty on this test's store."""
    dsn = request.getfixturevalue("pg_dsn") if request.param == "postgresql" else ""

    def make(clock: Clock | None = None, **settings: Any) -> Penalty:
        clock = clock or Clock()
        if not dsn:
            return AuthPenalty(**settings, clock=clock)
        block_time = settings.get("block_time", 900.0)
        shared = PostgresFailures(dsn, block_time=block_time, clock=clock, limits=PATIENT)
        return NewNodeEachCall(shared, settings)

    return make


def test_each_failure_doubles_the_wait_up_to_the_cap_then_blocks(make_penalty: MakePenalty) -> None:
    penalty = make_penalty(max_delay=15, block_after=7)
    waits = [penalty.attempt("192.0.2.1") for _ in range(8)]
    assert waits == [0.0, 2.0, 4.0, 8.0, 15.0, 15.0, 15.0, BLOCKED]


def test_another_address_of_another_network_is_not_slowed(make_penalty: MakePenalty) -> None:
    penalty = make_penalty()
    for _ in range(5):
        penalty.attempt("192.0.2.1")
    assert penalty.attempt("198.51.100.7") == 0.0


def test_a_success_takes_its_attempt_back_and_clears_the_address(
    make_penalty: MakePenalty,
) -> None:
    penalty = make_penalty()
    penalty.attempt("192.0.2.1")
    penalty.attempt("192.0.2.1")
    penalty.succeeded("192.0.2.1")
    assert penalty.failures("192.0.2.1") == 0
    assert penalty.attempt("192.0.2.1") == 0.0


def test_a_success_leaves_the_networks_other_failures(make_penalty: MakePenalty) -> None:
    penalty = make_penalty(block_after=1)
    for n in range(NETWORK_SHARE + 1):
        penalty.attempt(f"192.0.2.{n + 1}")
    penalty.succeeded("192.0.2.1")  # the network forgets that one attempt only
    assert penalty.attempt("192.0.2.200") == BLOCKED


def test_addresses_of_one_network_share_a_count(make_penalty: MakePenalty) -> None:
    penalty = make_penalty(block_after=3)
    for n in range(3 * NETWORK_SHARE):  # one failure each from many addresses
        penalty.attempt(f"192.0.2.{n + 1}")
    assert penalty.attempt("192.0.2.200") == BLOCKED
    assert penalty.attempt("192.0.3.1") == 0.0  # the next /24 is another network


def test_ipv6_counts_per_64(make_penalty: MakePenalty) -> None:
    penalty = make_penalty(block_after=1)
    for n in range(NETWORK_SHARE):
        penalty.attempt(f"2001:db8:0:1::{n + 1}")
    assert penalty.attempt("2001:db8:0:1:ffff::9") == BLOCKED
    assert penalty.attempt("2001:db8:0:2::1") == 0.0


def test_a_peer_without_an_address_is_counted_alone(make_penalty: MakePenalty) -> None:
    penalty = make_penalty()
    assert [penalty.attempt("unknown") for _ in range(3)] == [0.0, 2.0, 4.0]


def test_failures_are_forgotten_after_the_block_time(make_penalty: MakePenalty) -> None:
    clock = Clock()
    penalty = make_penalty(clock, block_after=2, block_time=900)
    penalty.attempt("192.0.2.1")
    penalty.attempt("192.0.2.1")
    assert penalty.attempt("192.0.2.1") == BLOCKED
    clock.now += 600  # still trying while blocked keeps the block
    assert penalty.attempt("192.0.2.1") == BLOCKED
    clock.now += 901
    assert penalty.failures("192.0.2.1") == 0
    assert penalty.attempt("192.0.2.1") == 0.0


def test_worker_processes_share_the_counts(make_penalty: MakePenalty) -> None:
    penalty = make_penalty()
    pid = os.fork()
    if pid == 0:  # a worker sees three failures
        for _ in range(3):
            penalty.attempt("192.0.2.1")
        os._exit(0)
    os.waitpid(pid, 0)
    assert penalty.failures("192.0.2.1") == 3
    assert penalty.attempt("192.0.2.1") == 8.0
