"""Failed-login penalties across the nodes of a cluster, and when its database fails.

Each "node" is an AuthPenalty of its own (its own shared memory) on one
PostgreSQL database, as two ``serve`` processes behind a load balancer are.
"""

from __future__ import annotations

import dataclasses
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from mailstead.limits import SharedPenaltyLimits
from mailstead.net.auth_penalty import BLOCKED, AuthPenalty
from mailstead.net.auth_penalty_db import COMPONENT, PostgresFailures
from mailstead.testing.postgres import TemporaryPostgres

IP = "203.0.113.9"
# Generous: the machine running the tests may be busy. The deadline itself
# is tested with a short one.
PATIENT = SharedPenaltyLimits(round_trip=5.0, retry_after=60.0)
# Once a node has its pool and its table: how long a login waits when the
# database fails.
SHORT = SharedPenaltyLimits(round_trip=0.25, retry_after=60.0)


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def node(dsn: str, limits: SharedPenaltyLimits = PATIENT, **settings: Any) -> AuthPenalty:
    """One more node of the cluster on ``dsn``: its own shared memory, the same database."""
    shared = PostgresFailures(dsn, block_time=settings.get("block_time", 900.0), limits=limits)
    return AuthPenalty(**settings, shared=shared)


def hurried(each: AuthPenalty, limits: SharedPenaltyLimits = SHORT) -> AuthPenalty:
    """``each`` (after its first request, which opens the pool and the table) with ``limits``."""
    assert isinstance(each.shared, PostgresFailures)
    assert each.shared.counts("198.51.100.99") is not None
    each.shared.limits = limits
    return each


def eventually(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait for ``condition``: a success is written without the login waiting for it."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def rows(dsn: str) -> dict[str, int]:
    with psycopg.connect(dsn) as conn:
        return dict(conn.execute("SELECT key, failures FROM auth_failures").fetchall())


def test_failures_on_one_node_delay_then_block_logins_on_the_other(pg_dsn: str) -> None:
    a, b = node(pg_dsn, block_after=3), node(pg_dsn, block_after=3)
    assert a.attempt(IP) == 0.0  # fails
    assert b.attempt(IP) == 2.0  # waits for a's failure, fails
    assert a.attempt(IP) == 4.0  # fails
    assert b.attempt(IP) == BLOCKED
    assert b.failures(IP) == 4
    assert rows(pg_dsn) == {IP: 4, "203.0.113.0/24": 4}


def test_a_network_spread_over_nodes_meets_one_count(pg_dsn: str) -> None:
    nodes = [node(pg_dsn, block_after=1) for _ in range(4)]
    for n, each in enumerate(nodes):  # one failure from each address, each on another node
        each.attempt(f"203.0.113.{n + 1}")
    assert node(pg_dsn, block_after=1).attempt("203.0.113.200") == BLOCKED


def test_a_login_on_one_node_clears_the_address_on_the_others(pg_dsn: str) -> None:
    a, b = node(pg_dsn), node(pg_dsn)
    a.attempt(IP)
    a.attempt(IP)
    assert b.attempt(IP) == 4.0
    b.succeeded(IP)  # the right password, on b
    eventually(lambda: a.failures(IP) == 0)
    assert a.attempt(IP) == 0.0  # a's own memory of two failures does not count


def test_parallel_attempts_on_many_nodes_are_all_counted(pg_dsn: str) -> None:
    nodes = [node(pg_dsn, block_after=1000) for _ in range(4)]

    def guess(each: AuthPenalty) -> None:
        for _ in range(10):
            each.attempt(IP)

    threads = [threading.Thread(target=guess, args=(each,)) for each in nodes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert rows(pg_dsn)[IP] == 40


def _refuse_connections(postgres: TemporaryPostgres, dsn: str, allow: bool) -> None:
    """The database stops (or starts again) taking connections, and drops those it has."""
    name = dsn.rsplit("/", 1)[1]
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(allow).lower()}'.encode())
        if not allow:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )


def test_a_database_that_goes_away_keeps_this_nodes_penalty_and_lets_a_password_in(
    postgres: TemporaryPostgres, pg_dsn: str
) -> None:
    a, b = (hurried(node(pg_dsn, block_after=3)) for _ in range(2))
    assert a.attempt(IP) == 0.0
    assert a.attempt(IP) == 2.0
    _refuse_connections(postgres, pg_dsn, allow=False)
    try:
        assert a.attempt(IP) == 4.0  # a still counts its own two failures
        assert b.attempt(IP) == 0.0  # b never saw one: nobody is locked out
        b.succeeded(IP)  # the right password goes in
        assert a.attempt(IP) == BLOCKED  # a's own count reached the block
    finally:
        _refuse_connections(postgres, pg_dsn, allow=True)


def test_this_nodes_failures_still_count_when_the_database_is_back(
    postgres: TemporaryPostgres, pg_dsn: str
) -> None:
    a = hurried(node(pg_dsn, block_after=3), dataclasses.replace(SHORT, retry_after=0.0))
    assert a.attempt(IP) == 0.0
    _refuse_connections(postgres, pg_dsn, allow=False)
    assert [a.attempt(IP) for _ in range(2)] == [2.0, 4.0]  # the database missed these
    _refuse_connections(postgres, pg_dsn, allow=True)
    assert a.shared is not None
    eventually(lambda: a.shared is not None and a.shared.counts(IP) == (1.0, 1.0), 30.0)
    # The database counts 1 before this attempt, this node 3: the larger decides.
    assert a.attempt(IP) == BLOCKED
    assert rows(pg_dsn)[IP] == 2


class Relay:
    """A TCP relay to the database that can stop passing bytes, as a lost network does:
    nothing is refused or closed, nothing answers."""

    def __init__(self, port: int) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._target = ("127.0.0.1", port)
        self.passing = threading.Event()
        self.passing.set()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self._target)
            self._sockets += [client, server]
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                self.passing.wait()
                sink.sendall(data)
        except OSError:
            pass

    def close(self) -> None:
        self._listener.close()
        for sock in self._sockets:
            sock.close()
        self.passing.set()


@pytest.fixture
def relay(postgres: TemporaryPostgres) -> Iterator[Relay]:
    relay = Relay(postgres.port)
    yield relay
    relay.close()


def test_a_database_that_stops_answering_costs_a_login_at_most_the_round_trip(
    postgres: TemporaryPostgres, pg_dsn: str, relay: Relay
) -> None:
    dsn = pg_dsn.replace(f":{postgres.port}/", f":{relay.port}/")
    a = hurried(node(dsn))
    assert a.attempt(IP) == 0.0
    relay.passing.clear()
    started = time.monotonic()
    assert a.attempt(IP) == 2.0  # this node's own count
    assert 0.2 < time.monotonic() - started < 1.5
    started = time.monotonic()
    assert a.attempt(IP) == 4.0  # no new question until retry_after
    assert time.monotonic() - started < 0.1
    a.succeeded(IP)
    assert a.attempt(IP) == 0.0


def test_rows_older_than_the_block_time_are_swept(pg_dsn: str) -> None:
    clock = Clock()
    shared = PostgresFailures(pg_dsn, block_time=900, clock=clock, limits=PATIENT)
    a = AuthPenalty(shared=shared)
    a.attempt(IP)
    clock.now += 901
    a.attempt("198.51.100.7")  # a minute after the last sweep: sweeps
    eventually(lambda: set(rows(pg_dsn)) == {"198.51.100.7", "198.51.100.0/24"})


def test_the_table_is_a_versioned_component(pg_dsn: str) -> None:
    node(pg_dsn).attempt(IP)
    with psycopg.connect(pg_dsn) as conn:
        version = conn.execute(
            "SELECT version FROM mailstead_schema WHERE component = %s", (COMPONENT,)
        ).fetchone()
    assert version == (1,)
