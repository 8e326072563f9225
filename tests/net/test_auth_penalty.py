"""Failed-login penalties: waits that grow, blocks that pass, never the account."""

from __future__ import annotations

import os

from mailstead.net.auth_penalty import BLOCKED, NETWORK_SHARE, AuthPenalty


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_each_failure_doubles_the_wait_up_to_the_cap_then_blocks() -> None:
    penalty = AuthPenalty(max_delay=15, block_after=7, clock=Clock())
    waits = [penalty.attempt("192.0.2.1") for _ in range(8)]
    assert waits == [0.0, 2.0, 4.0, 8.0, 15.0, 15.0, 15.0, BLOCKED]


def test_another_address_of_another_network_is_not_slowed() -> None:
    penalty = AuthPenalty(clock=Clock())
    for _ in range(5):
        penalty.attempt("192.0.2.1")
    assert penalty.attempt("198.51.100.7") == 0.0


def test_a_success_takes_its_attempt_back_and_clears_the_address() -> None:
    penalty = AuthPenalty(clock=Clock())
    penalty.attempt("192.0.2.1")
    penalty.attempt("192.0.2.1")
    penalty.succeeded("192.0.2.1")
    assert penalty.failures("192.0.2.1") == 0
    assert penalty.attempt("192.0.2.1") == 0.0


def test_addresses_of_one_network_share_a_count() -> None:
    penalty = AuthPenalty(block_after=3, clock=Clock())
    for n in range(3 * NETWORK_SHARE):  # one failure each from many addresses
        penalty.attempt(f"192.0.2.{n + 1}")
    assert penalty.attempt("192.0.2.200") == BLOCKED
    assert penalty.attempt("192.0.3.1") == 0.0  # the next /24 is another network


def test_ipv6_counts_per_64() -> None:
    penalty = AuthPenalty(block_after=1, clock=Clock())
    for n in range(NETWORK_SHARE):
        penalty.attempt(f"2001:db8:0:1::{n + 1}")
    assert penalty.attempt("2001:db8:0:1:ffff::9") == BLOCKED
    assert penalty.attempt("2001:db8:0:2::1") == 0.0


def test_failures_are_forgotten_after_the_block_time() -> None:
    clock = Clock()
    penalty = AuthPenalty(block_after=2, block_time=900, clock=clock)
    penalty.attempt("192.0.2.1")
    penalty.attempt("192.0.2.1")
    assert penalty.attempt("192.0.2.1") == BLOCKED
    clock.now += 600  # still trying while blocked keeps the block
    assert penalty.attempt("192.0.2.1") == BLOCKED
    clock.now += 901
    assert penalty.attempt("192.0.2.1") == 0.0


def test_worker_processes_share_the_counts() -> None:
    penalty = AuthPenalty()
    pid = os.fork()
    if pid == 0:  # a worker sees three failures
        for _ in range(3):
            penalty.attempt("192.0.2.1")
        os._exit(0)
    os.waitpid(pid, 0)
    assert penalty.failures("192.0.2.1") == 3
    assert penalty.attempt("192.0.2.1") == 8.0
