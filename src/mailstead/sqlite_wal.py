"""Shared SQLite databases in WAL mode: opening them, and one way to write.

Every worker process opens the same databases at start. Changing the
journal mode needs a moment of exclusive access, and SQLite answers "database
is locked" at once (without its busy timeout) when another process is doing
the same; retrying for a few seconds settles that race.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

_RETRY_FOR = 10.0
_PAUSE = 0.02


def enable_wal(conn: sqlite3.Connection) -> str:
    """``PRAGMA journal_mode=WAL``, retried while another process holds the lock; the mode."""
    deadline = time.monotonic() + _RETRY_FOR
    while True:
        try:
            return str(conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]).lower()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(_PAUSE)


def connect_durable(path: Path, what: str) -> sqlite3.Connection:
    """A connection to the database at ``path`` in WAL mode, every commit fsynced.

    For the databases whose commits are promises (the queue, the webhook
    outbox): ``synchronous=FULL`` fsyncs the WAL at each commit, so a commit
    survives power loss (NORMAL would only keep it consistent). Transactions
    are explicit (``isolation_level=None``; see :func:`immediate`); the
    connection may be shared by threads under the caller's lock.
    """
    conn = sqlite3.connect(path, timeout=5.0, isolation_level=None, check_same_thread=False)
    try:
        mode = enable_wal(conn)
        if mode != "wal":
            raise sqlite3.OperationalError(f"{what} database refused WAL mode ({mode})")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
    except BaseException:
        conn.close()
        raise
    return conn


@contextlib.contextmanager
def immediate(conn: sqlite3.Connection, lock: threading.Lock) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` under ``lock``; ``ROLLBACK`` if anything fails.

    A failed COMMIT (SQLITE_BUSY, an I/O error) can leave the transaction
    open; it is rolled back so the connection stays usable.
    """
    with lock:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error as exc:
                    log.error("ROLLBACK failed: %s", exc)
            raise
