"""Idempotency stores: remember which ``webhook-id`` values were handled, for a while.

The receiver claims an id before running the handlers and releases it if a
handler raises, so the sender's retry runs them again; a successful delivery
keeps its claim until the entry expires. The time to live must outlast the
sender's retries and twice the timestamp tolerance (a replayed request is
refused by its old timestamp after that).

Standard library only; every store is safe to share between threads.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

__all__ = [
    "DEFAULT_TTL",
    "IdempotencyStore",
    "MemoryIdempotencyStore",
    "SQLiteIdempotencyStore",
]

# A day: longer than any replay window (2 x 5 min) and than a sender's
# crash-and-resend, short enough to stay small.
DEFAULT_TTL = 24 * 3600.0


class IdempotencyStore(Protocol):
    """Which webhook ids are taken: ``claim`` is atomic, so of two racing deliveries one wins."""

    def claim(self, webhook_id: str) -> bool:
        """Mark ``webhook_id`` as seen; True if it was not already (the caller handles it)."""
        ...

    def release(self, webhook_id: str) -> None:
        """Forget ``webhook_id`` (its handling failed), so a retry is handled again."""
        ...


class MemoryIdempotencyStore:
    """Ids seen by this process, at most ``max_entries`` (oldest dropped first) for ``ttl`` s.

    Lost on restart and not shared between processes: use
    :class:`SQLiteIdempotencyStore` (or a Redis-compatible one) for several workers.
    """

    def __init__(
        self,
        *,
        ttl: float = DEFAULT_TTL,
        max_entries: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl <= 0 or max_entries <= 0:
            raise ValueError("ttl and max_entries must be positive")
        self._ttl = ttl
        self._max = max_entries
        self._clock = clock
        self._expiry: OrderedDict[str, float] = OrderedDict()  # oldest claim first
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._expiry)

    def claim(self, webhook_id: str) -> bool:
        now = self._clock()
        with self._lock:
            while self._expiry and next(iter(self._expiry.values())) <= now:
                self._expiry.popitem(last=False)
            if webhook_id in self._expiry:
                return False
            self._expiry[webhook_id] = now + self._ttl
            if len(self._expiry) > self._max:
                self._expiry.popitem(last=False)
            return True

    def release(self, webhook_id: str) -> None:
        with self._lock:
            self._expiry.pop(webhook_id, None)


class SQLiteIdempotencyStore:
    """Ids in an SQLite table with an expiry, shared by every process that opens the file."""

    _PURGE_EVERY = 1000  # claims between sweeps of expired rows

    def __init__(
        self,
        path: str | Path,
        *,
        ttl: float = DEFAULT_TTL,
        table: str = "webhook_ids",
        clock: Callable[[], float] = time.time,
    ) -> None:
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        if not table.isidentifier():
            raise ValueError(f"not a table name: {table!r}")
        self._ttl = ttl
        self._table = table
        self._clock = clock
        self._lock = threading.Lock()
        self._claims = 0
        # Autocommit mode: each statement below is its own transaction.
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA busy_timeout = 5000")
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute(
            f"CREATE TABLE IF NOT EXISTS {table} (id TEXT PRIMARY KEY, expires REAL NOT NULL)"
        )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def claim(self, webhook_id: str) -> bool:
        now = self._clock()
        with self._lock:
            self._claims += 1
            if self._claims % self._PURGE_EVERY == 0:
                self._db.execute(f"DELETE FROM {self._table} WHERE expires <= ?", (now,))
            # One statement, so atomic between processes: a new id is inserted,
            # an expired one taken over, a live one left alone (0 rows changed).
            cursor = self._db.execute(
                f"INSERT INTO {self._table} (id, expires) VALUES (?, ?) "
                "ON CONFLICT (id) DO UPDATE SET expires = excluded.expires "
                "WHERE expires <= ?",
                (webhook_id, now + self._ttl, now),
            )
            return cursor.rowcount == 1

    def release(self, webhook_id: str) -> None:
        with self._lock:
            self._db.execute(f"DELETE FROM {self._table} WHERE id = ?", (webhook_id,))
