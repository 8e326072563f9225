"""The abuse checks' shared state: one small SQLite database every worker process opens.

``serve`` forks several workers that accept on the same sockets, so a
count kept in one process would let a client send N times its limit. The
rate buckets and the greylist live in ``<data_dir>/abuse.sqlite3`` instead,
in WAL mode with ``synchronous=NORMAL``: a commit is a write to the WAL,
without an fsync (losing the last counts in a power cut is harmless), and
takes tens of microseconds.

The checks call it from the event loop, so a writer never waits long: the
busy timeout is short, and a check that cannot get the lock lets the
command through (:class:`Unavailable`) rather than stall every session of the
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

from mailstead.sqlite_wal import enable_wal

__all__ = ["AbuseDB", "Unavailable"]

log = logging.getLogger("mailstead.abuse")

#: Seconds a command may wait for another worker's write (it runs on the event loop).
_BUSY_TIMEOUT = 0.25
#: Seconds between sweeps of rows nobody needs any more.
_SWEEP_EVERY = 60.0

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


class Unavailable(Exception):
    """Another worker held the database too long, or it is broken (unwritable, corrupt):
    the caller lets the command through."""


class AbuseDB:
    """Owns one connection to ``abuse.sqlite3`` (thread-safe, opened on first use).

    Opening late keeps ``serve``'s pre-fork set-up (still root) from making
    the file: the worker that first needs it makes it, as the server's
    account.
    """

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.clock = clock
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._swept = 0.0
        self._warned = float("-inf")
        self._sweepers: list[Callable[[sqlite3.Connection, float], None]] = []

    def on_sweep(self, sweep: Callable[[sqlite3.Connection, float], None]) -> None:
        """Call ``sweep(conn, now)`` inside a write, once a minute, to drop old rows."""
        self._sweepers.append(sweep)

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
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE … COMMIT), or :class:`Unavailable`."""
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
                now = self.clock()
                if now - self._swept >= _SWEEP_EVERY:
                    self._swept = now
                    for sweep in self._sweepers:
                        sweep(conn, now)
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise Unavailable(str(exc)) from None
                raise

    def skipped(self, what: str, exc: Unavailable) -> None:
        """Log that ``what`` was not checked, at most once a minute (not once per command)."""
        now = time.monotonic()
        if now - self._warned >= _SWEEP_EVERY:
            self._warned = now
            log.warning("%s not checked: abuse database unavailable (%s)", what, exc)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
