"""The failed-login counts every node of a cluster meets, as rows of its PostgreSQL database.

With ``[storage] backend = "postgresql"`` several nodes stand behind one
load balancer, and a guesser that spreads its attempts over them must meet
one count, not one per node. :class:`PostgresFailures` keeps the counts of
net/auth_penalty.py in the ``auth_penalty`` component's table, one row per
client address and one per network (IPv4 /24, IPv6 /64), with the same
rules: an attempt counts at once (an atomic ``INSERT … ON CONFLICT … DO
UPDATE … RETURNING`` that also reads the counts it decides on), a success
deletes the address's row and takes one from its network's, a count is
forgotten ``block_time`` after its last attempt, and old rows are swept.
Times are the nodes' wall clocks (NTP-synchronised nodes differ by far
less than the 15 minutes a count lasts).

The counts are asked for on the event loop, before each password check
(net/stream.py ``check_login``). A database round trip there must be
bounded even when the database or the network to it hangs, which
``statement_timeout`` alone cannot promise (it runs on the server), so
each request runs on one thread of this process and the loop waits for
its answer at most ``SharedPenaltyLimits.round_trip`` (250 ms); a success
is not waited for at all. An answer that does not come in time, or an
error, leaves this node's own shared-memory counts to decide for
``retry_after`` seconds (see :meth:`PostgresFailures._ask` for why that is
the safe direction).
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import TypeVar

import psycopg

from mailstead.config import Config
from mailstead.limits import SharedPenaltyLimits
from mailstead.net.auth_penalty import AuthPenalty, Counts
from mailstead.peernet import network_of
from mailstead.pgsql.compat import Connection
from mailstead.pgsql.connect import DatabaseUnavailable, shared_pool
from mailstead.pgsql.migrate import SchemaTooNew, migrate

__all__ = [
    "COMPONENT",
    "POSTGRES_MIGRATIONS",
    "PostgresFailures",
    "Unavailable",
    "open_auth_penalty",
]

log = logging.getLogger("mailstead.net")

T = TypeVar("T")

DEFAULT_LIMITS = SharedPenaltyLimits()

#: The schema component of the table (``mailstead_schema``).
COMPONENT = "auth_penalty"

# An address's key is the address as the session knows it ("192.0.2.9"),
# a network's its prefix ("192.0.2.0/24"): the slash keeps them apart.
POSTGRES_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE auth_failures (
            key      text PRIMARY KEY,
            failures integer NOT NULL,
            last     double precision NOT NULL
        )""",
        # The sweep finds the rows whose last attempt is old.
        "CREATE INDEX auth_failures_last ON auth_failures (last)",
    ),
)

# Counts an attempt in each row (a row whose last attempt is older than the
# block time starts again at 1) and returns the counts after it. Rows are
# locked in the order of the VALUES, address first, so two nodes counting
# addresses of one network never wait on each other in a circle. A node
# whose clock is behind never moves `last` back.
_COUNT_ATTEMPT = """
INSERT INTO auth_failures AS f (key, failures, last) VALUES {rows}
ON CONFLICT (key) DO UPDATE SET
    failures = CASE WHEN EXCLUDED.last - f.last > ? THEN 1 ELSE f.failures + 1 END,
    last = GREATEST(f.last, EXCLUDED.last)
RETURNING key, failures
"""
_READ = "SELECT key, failures, last FROM auth_failures WHERE key IN ({keys})"
_CLEAR = """
WITH cleared AS (DELETE FROM auth_failures WHERE key = ?)
UPDATE auth_failures SET failures = failures - 1 WHERE key = ? AND failures > 0
"""
_CLEAR_ADDRESS = "DELETE FROM auth_failures WHERE key = ?"
# Rows another node is counting in are left for the next sweep.
_SWEEP = """
DELETE FROM auth_failures WHERE key IN (
    SELECT key FROM auth_failures WHERE last < ? LIMIT ? FOR UPDATE SKIP LOCKED
)
"""


class Unavailable(Exception):
    """The database did not answer, or answered with an error (one line)."""


class _Runner:
    """One daemon thread of this process that runs database requests in order.

    A daemon thread, so a request stuck on a lost connection never holds up
    the process's exit; made after any fork (a thread does not survive one).
    """

    def __init__(self) -> None:
        self.pid = os.getpid()
        self._jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        name = "mailstead-auth-penalty-db"
        threading.Thread(target=self._run, name=name, daemon=True).start()

    @property
    def backlog(self) -> int:
        return self._jobs.qsize()

    def submit(self, work: Callable[[], T]) -> Future[T]:
        future: Future[T] = Future()

        def job() -> None:
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(work())
                except BaseException as exc:
                    future.set_exception(exc)

        self._jobs.put(job)
        return future

    def _run(self) -> None:
        while True:
            self._jobs.get()()


def _keys(ip: str) -> tuple[str, ...]:
    """The rows ``ip`` counts in: its own, then its network's (none for an unparsable peer)."""
    network = network_of(ip)
    return (ip,) if network == ip else (ip, network)


def _counts(ip: str, found: dict[str, float]) -> Counts:
    """``ip``'s address and network counts among the rows ``found`` (absent: 0)."""
    keys = _keys(ip)
    network = found.get(keys[1], 0.0) if len(keys) > 1 else 0.0
    return found.get(ip, 0.0), network


class PostgresFailures:
    """Owns this server's requests to the cluster's failed-login rows, and their deadline.

    Made before ``serve`` forks: the pool and the thread are each process's
    own, opened at first use (:func:`~mailstead.pgsql.connect.shared_pool`),
    and the table is created or upgraded by each process's first request.
    """

    def __init__(
        self,
        dsn: str,
        *,
        block_time: float = 900.0,
        clock: Callable[[], float] = time.time,
        limits: SharedPenaltyLimits = DEFAULT_LIMITS,
    ) -> None:
        self.dsn = dsn
        self.block_time = block_time
        self.clock = clock
        self.limits = limits
        self._runner_of_process: _Runner | None = None
        self._runner_lock = threading.Lock()
        self._migrated = False
        self._down_until = float("-inf")
        self._down = False
        self._warned = float("-inf")
        self._swept = float("-inf")

    # -- the SharedFailures face (net/auth_penalty.py) --------------------------

    def attempt(self, ip: str) -> Counts | None:
        """Count an attempt from ``ip`` on every node; the counts before it (None: no answer)."""
        now = self.clock()
        after = self._ask(lambda: self._count_attempt(ip, now))
        if after is None:
            return None
        if now - self._swept >= self.limits.sweep_every:
            self._swept = now
            self._send(lambda: self._sweep(now))
        # The counts this attempt is judged by are those before it.
        return max(0.0, after[0] - 1), max(0.0, after[1] - 1)

    def counts(self, ip: str) -> Counts | None:
        """``ip``'s counts on every node now (None: no answer in time)."""
        now = self.clock()
        return self._ask(lambda: self._read(ip, now))

    def succeeded(self, ip: str) -> None:
        """Clear ``ip``'s row and take one from its network's, without waiting for it."""
        self._send(lambda: self._clear(ip))

    # -- the deadline -------------------------------------------------------------

    def _ask(self, request: Callable[[], Counts]) -> Counts | None:
        """``request``'s answer, or None when it did not come within ``round_trip``.

        None makes the caller fall back to this node's own counts, which
        AuthPenalty keeps whatever the database does. That is the safe
        direction both ways: the penalty never drops below what this node
        saw (a guesser gains only the spread over nodes, and only while
        the database is out), and an outage never adds a penalty, so it
        cannot lock anyone out: a correct password still goes in after
        this node's wait. Refusing every login instead would turn a
        database hiccup into an outage for every user.
        """
        runner = self._runner()
        if runner is None:
            return None
        answer = runner.submit(request)
        try:
            counts = answer.result(timeout=self.limits.round_trip)
        except TimeoutError:
            answer.cancel()  # if it has not started: nobody wants it any more
            self._went_down(f"no answer within {self.limits.round_trip:g} s")
        except Unavailable as exc:
            self._went_down(str(exc))
        else:
            if self._down:
                self._down = False
                log.warning("the cluster's failed-login counts answer again")
            return counts
        return None

    def _send(self, request: Callable[[], None]) -> None:
        """Run ``request`` on the database thread; nobody waits for it.

        Past ``backlog`` waiting requests it is dropped instead: a row left
        unchanged only keeps a count (stricter) until it expires.
        """
        runner = self._runner()
        if runner is not None and runner.backlog < self.limits.backlog:
            runner.submit(request).add_done_callback(self._sent)

    def _sent(self, done: Future[None]) -> None:
        exc = done.exception()
        if isinstance(exc, Unavailable):
            self._went_down(str(exc))
        elif exc is not None:
            log.error("updating the cluster's failed-login counts failed: %r", exc)

    def _runner(self) -> _Runner | None:
        """This process's database thread, or None while the database is taken as down."""
        if time.monotonic() < self._down_until:
            return None
        with self._runner_lock:  # callers may be executor threads too
            runner = self._runner_of_process
            if runner is None or runner.pid != os.getpid():
                runner = self._runner_of_process = _Runner()
                self._migrated = False
        return runner

    def _went_down(self, reason: str) -> None:
        now = time.monotonic()
        self._down_until = now + self.limits.retry_after
        self._down = True
        # Once a minute, not once per login.
        if now - self._warned >= 60.0:
            self._warned = now
            log.warning(
                "the cluster's failed-login counts are unavailable (%s): "
                "this node's own counts decide for %g s",
                reason,
                self.limits.retry_after,
            )

    # -- on the database thread -----------------------------------------------------

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Connection]:
        try:
            pool = shared_pool(self.dsn)
            with pool.connection(timeout=self.limits.round_trip) as raw:
                if not self._migrated:
                    migrate(raw, COMPONENT, POSTGRES_MIGRATIONS)
                    self._migrated = True
                conn = Connection(raw)
                # The server gives up when the loop has: a row another node
                # holds, or a slow statement, never keeps this thread longer.
                wait = f"{round(self.limits.round_trip * 1000)}ms"
                conn.execute(
                    "SELECT set_config('lock_timeout', ?, true),"
                    " set_config('statement_timeout', ?, true)",
                    (wait, wait),
                )
                yield conn
        except (DatabaseUnavailable, SchemaTooNew) as exc:
            raise Unavailable(str(exc)) from None
        except psycopg.Error as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise Unavailable(first) from None

    def _count_attempt(self, ip: str, now: float) -> Counts:
        keys = _keys(ip)
        sql = _COUNT_ATTEMPT.format(rows=", ".join(["(?, 1, ?)"] * len(keys)))
        params: list[object] = [value for key in keys for value in (key, now)]
        with self._transaction() as conn:
            rows = conn.execute(sql, (*params, self.block_time)).fetchall()
        return _counts(ip, {str(key): float(failures) for key, failures in rows})

    def _read(self, ip: str, now: float) -> Counts:
        keys = _keys(ip)
        with self._transaction() as conn:
            rows = conn.execute(_READ.format(keys=", ".join("?" * len(keys))), keys).fetchall()
        # A count is forgotten block_time after its last attempt, as in shared memory.
        live = {str(key): float(n) for key, n, last in rows if now - last <= self.block_time}
        return _counts(ip, live)

    def _clear(self, ip: str) -> None:
        keys = _keys(ip)
        with self._transaction() as conn:
            if len(keys) == 1:
                conn.execute(_CLEAR_ADDRESS, keys)
            else:
                conn.execute(_CLEAR, keys)

    def _sweep(self, now: float) -> None:
        with self._transaction() as conn:
            conn.execute(_SWEEP, (now - self.block_time, self.limits.sweep_rows))


def open_auth_penalty(config: Config) -> AuthPenalty:
    """The failed-login penalty of ``config``'s ``[limits]``: counted in this node's
    shared memory, and with ``[storage] backend = "postgresql"`` in the cluster's
    database as well, so every node meets one count."""
    counts = config.limits
    shared = None
    if config.storage.backend == "postgresql":
        shared = PostgresFailures(config.storage.dsn, block_time=counts.auth_block_time)
    return AuthPenalty(
        max_delay=counts.auth_penalty_max,
        block_after=counts.auth_block_after,
        block_time=counts.auth_block_time,
        shared=shared,
    )
