"""The abuse checks' shared state: rate buckets and greylisting rows every worker and node sees.

``serve`` forks several workers that accept on the same sockets, and a
cluster runs several nodes behind one address, so a count kept in one
process would let a client send N times its limit. The rate buckets and
the greylist are rows of a database instead, written by every worker:

* SQLite (the embedded default): ``<data_dir>/abuse.sqlite3``, in WAL mode
  with ``synchronous=NORMAL``: a commit is a write to the WAL, without an
  fsync (losing the last counts in a power cut is harmless), and takes tens
  of microseconds. ``BEGIN IMMEDIATE`` lets one writer in at a time.
* PostgreSQL (``[storage] backend = "postgresql"``): the ``abuse``
  component's tables in the cluster's database, so a guesser or a flood
  spread over nodes meets one limit. Writers run side by side there, so
  each write locks the rows it reads (``SELECT … FOR UPDATE``, in key order:
  two nodes never wait on each other in a circle) and a sweep skips rows
  another write holds.

The checks call it from the event loop, so a writer never waits long: the
lock wait is short, and a check that cannot get the lock lets the command
through (:class:`Unavailable`) rather than stall every session of the
worker. A database that cannot be opened or written fails the same way:
the limits are off until it can, mail is not.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from mailstead.pgsql.compat import Connection
from mailstead.pgsql.connect import DatabaseUnavailable, shared_pool
from mailstead.pgsql.migrate import SchemaTooNew, migrate
from mailstead.sqlconn import SQLConnection
from mailstead.sqlite_wal import enable_wal

__all__ = [
    "POSTGRES_MIGRATIONS",
    "AbuseDB",
    "PostgresAbuseDB",
    "SQLiteAbuseDB",
    "Sweep",
    "Unavailable",
]

log = logging.getLogger("mailstead.abuse")

#: Seconds a command may wait for another worker's write (it runs on the event loop).
_BUSY_TIMEOUT = 0.25
#: Seconds between sweeps of rows nobody needs any more.
_SWEEP_EVERY = 60.0
#: Seconds without a try after the cluster database could not be reached: a
#: connection attempt may take seconds, and it would take them on the event loop.
_RETRY_AFTER = 10.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS rate (
    key     TEXT PRIMARY KEY,   -- "ip:192.0.2.1:messages", "user:alice@example.test:recipients" …
    tokens  REAL NOT NULL,      -- what is left in the bucket at `updated`
    updated REAL NOT NULL,      -- Unix time
    full_at REAL NOT NULL       -- when the bucket is full again: the row may go
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS greylist (
    triplet TEXT PRIMARY KEY,   -- network, sender, recipient (NUL-separated)
    first   REAL NOT NULL,      -- the attempt that started the wait
    passed  REAL,               -- when a retry was accepted; NULL while waiting
    last    REAL NOT NULL       -- the latest attempt
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS greylist_network (
    network TEXT PRIMARY KEY,   -- IPv4 /24 or IPv6 /64 of the client
    passed  INTEGER NOT NULL,   -- triplets of this network that passed
    last    REAL NOT NULL
) WITHOUT ROWID;
"""


# The same tables in the cluster's database. A greylist triplet's fields are
# joined with a unit separator there (TRIPLET_SEPARATOR): text cannot hold NUL.
POSTGRES_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE rate (
            key     text PRIMARY KEY,
            tokens  double precision NOT NULL,
            updated double precision NOT NULL,
            full_at double precision NOT NULL
        )""",
        """CREATE TABLE greylist (
            triplet text PRIMARY KEY,
            first   double precision NOT NULL,
            passed  double precision,
            last    double precision NOT NULL
        )""",
        """CREATE TABLE greylist_network (
            network text PRIMARY KEY,
            passed  integer NOT NULL,
            last    double precision NOT NULL
        )""",
    ),
)

#: ``sweep(conn, now)``: drops the rows nobody needs any more.
Sweep = Callable[[SQLConnection, float], None]


class Unavailable(Exception):
    """Another worker held the database too long, or it is broken (unwritable, corrupt,
    unreachable): the caller lets the command through."""


class AbuseDB:
    """The shared rows of the rate limits and greylisting: write transactions, sweeps.

    The checks write one set of queries against it; the engines differ in
    the few texts below, which the queries splice in.
    """

    #: After a SELECT of rows the write goes on to change: locks them until the
    #: commit where writers run side by side (SQLite's BEGIN IMMEDIATE already
    #: admits one writer at a time).
    lock_rows = ""
    #: After the SELECT of rows a sweep deletes: rows another write holds are
    #: left for the next sweep instead of waited for.
    skip_locked = ""
    #: Joins the network, sender and recipient of a greylist triplet.
    triplet_separator = "\0"

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._swept = 0.0
        self._warned = float("-inf")
        self._sweepers: list[Sweep] = []

    def on_sweep(self, sweep: Sweep) -> None:
        """Call ``sweep(conn, now)`` inside a write, once a minute, to drop old rows."""
        self._sweepers.append(sweep)

    @contextmanager
    def write(self) -> Iterator[SQLConnection]:
        """One write transaction, committed at the end, or :class:`Unavailable`."""
        with self._transaction() as conn:
            yield conn
            now = self.clock()
            if now - self._swept >= _SWEEP_EVERY:
                self._swept = now
                for sweep in self._sweepers:
                    sweep(conn, now)

    def _transaction(self) -> contextlib.AbstractContextManager[SQLConnection]:
        raise NotImplementedError

    def skipped(self, what: str, exc: Unavailable) -> None:
        """Log that ``what`` was not checked, at most once a minute (not once per command)."""
        now = time.monotonic()
        if now - self._warned >= _SWEEP_EVERY:
            self._warned = now
            log.warning("%s not checked: abuse database unavailable (%s)", what, exc)

    def close(self) -> None:
        """Let go of the connection, if this object owns one."""


class SQLiteAbuseDB(AbuseDB):
    """Owns one connection to ``abuse.sqlite3`` (thread-safe, opened on first use).

    Opening late keeps ``serve``'s pre-fork set-up (still root) from making
    the file: the worker that first needs it makes it, as the server's
    account.
    """

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        super().__init__(clock=clock)
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, timeout=_BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
        )
        try:
            enable_wal(conn)
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(f"BEGIN IMMEDIATE; {_SCHEMA} COMMIT;")
        except BaseException:
            conn.close()
            raise
        return conn

    @contextmanager
    def _transaction(self) -> Iterator[SQLConnection]:
        with self._lock:
            try:
                if self._conn is None:
                    self._conn = self._connect()
                conn = self._conn
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise Unavailable(str(exc)) from None
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise Unavailable(str(exc)) from None
                raise

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


class PostgresAbuseDB(AbuseDB):
    """The rows in the cluster's database, through this process's shared pool.

    The pool is asked for at each write, not kept: an object made before
    ``serve`` forks must not carry the parent's connections into a worker
    (:func:`~mailstead.pgsql.connect.shared_pool` gives each process its own).
    The tables are created or upgraded at the first write of each process.
    """

    lock_rows = " FOR UPDATE"
    skip_locked = " FOR UPDATE SKIP LOCKED"
    triplet_separator = "\x1f"

    def __init__(self, dsn: str, *, clock: Callable[[], float] = time.time) -> None:
        super().__init__(clock=clock)
        self.dsn = dsn
        self._migrated = False
        self._down_until = float("-inf")

    @contextmanager
    def _transaction(self) -> Iterator[SQLConnection]:
        if time.monotonic() < self._down_until:
            raise Unavailable("the database was unreachable a moment ago")
        try:
            with shared_pool(self.dsn).connection(timeout=_BUSY_TIMEOUT) as raw:
                if not self._migrated:
                    migrate(raw, "abuse", POSTGRES_MIGRATIONS)
                    self._migrated = True
                conn = Connection(raw)
                # The event loop waits on this transaction: a row another
                # node holds is waited for briefly, then let go.
                wait = f"{round(_BUSY_TIMEOUT * 1000)}ms"
                conn.execute(
                    "SELECT set_config('lock_timeout', ?, true),"
                    " set_config('statement_timeout', ?, true)",
                    (wait, f"{round(_BUSY_TIMEOUT * 4000)}ms"),
                )
                yield conn
        except DatabaseUnavailable as exc:
            self._down_until = time.monotonic() + _RETRY_AFTER
            raise Unavailable(str(exc)) from None
        except SchemaTooNew as exc:
            raise Unavailable(str(exc)) from None
        except psycopg.Error as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise Unavailable(first) from None
