"""Switching a shared SQLite database to WAL mode, safely among processes.

Every worker process opens the same databases at start. Changing the
journal mode needs a moment of exclusive access, and SQLite answers "database
is locked" at once (without its busy timeout) when another process is doing
the same; retrying for a few seconds settles that race.
"""

from __future__ import annotations

import sqlite3
import time

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
