"""The queue's size and age for ``mailstead status``: a read-only look at its database.

Read here rather than through :class:`mailstead.mta.queue.Queue`, whose
constructor creates directories and tidies orphan files: a status request
must change nothing. The query reads two columns the schema has had from
its first version (``messages.received_at``, ``recipients.state``); a state
added later is counted under its own name.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["QueueSummary", "queue_summary"]

# Waiting for a writer's lock longer than this is not worth a status reply.
_BUSY_TIMEOUT = 2.0


@dataclass(frozen=True, slots=True)
class QueueSummary:
    """How much is queued and since when."""

    messages: int = 0
    #: Recipients still queued (delivered and failed ones have left), by state.
    recipients: dict[str, int] = field(default_factory=dict)
    #: Unix time the oldest queued message was received; None when empty.
    oldest: float | None = None


def queue_summary(db_path: Path) -> QueueSummary:
    """Count what ``db_path`` holds; an absent database is an empty queue."""
    if not db_path.exists():
        return QueueSummary()
    # mode=ro: never creates the database nor takes a write lock.
    uri = f"{db_path.resolve().as_uri()}?mode=ro"
    conn = sqlite3.connect(uri, uri=True, timeout=_BUSY_TIMEOUT)
    try:
        try:
            count, oldest = conn.execute(
                "SELECT COUNT(*), MIN(received_at) FROM messages"
            ).fetchone()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):  # created, never written: nothing queued
                return QueueSummary()
            raise
        by_state = {
            str(state): int(n)
            for state, n in conn.execute(
                "SELECT state, COUNT(*) FROM recipients GROUP BY state ORDER BY state"
            )
        }
    finally:
        conn.close()
    return QueueSummary(int(count), by_state, None if oldest is None else float(oldest))
