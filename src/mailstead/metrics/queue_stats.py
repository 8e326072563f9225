"""The outbound queue's size and the age of its oldest message, read at scrape time.

Counted from the queue's database when a scrape asks, not kept up to
date on the mail path: the queue is the truth, and two queries on a
read-only connection cost less than a counter on every enqueue and
delivery. Only columns every schema version has are read
(``messages.received_at``, ``recipients.state``; see mta/queue.py).
"""

from __future__ import annotations

import logging
import sqlite3
import time
import urllib.parse
from collections.abc import Callable, Iterable
from pathlib import Path

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

__all__ = ["QueueStats"]

log = logging.getLogger("mailstead.metrics")

# A scrape waits at most this long for a queue write to finish.
_BUSY_TIMEOUT = 1.0


class QueueStats:
    """A collector reading ``queue.sqlite3`` read-only at every scrape."""

    def __init__(self, db_path: Path, clock: Callable[[], float] = time.time) -> None:
        self.db_path = db_path
        self.clock = clock

    def collect(self) -> Iterable[Metric]:
        if not self.db_path.exists():
            return []  # no queue yet: nothing to say, rather than a false zero
        try:
            messages, oldest, open_by_state = self._read()
        except sqlite3.Error as exc:
            log.warning("queue metrics unavailable: %s", exc)
            return []
        size = GaugeMetricFamily(
            "mailstead_queue_messages", "Messages in the outbound queue (any recipient open)"
        )
        size.add_metric([], messages)
        recipients = GaugeMetricFamily(
            "mailstead_queue_recipients",
            "Queued recipients not yet delivered, by state (pending: never tried;"
            " deferred: tried, waiting for a retry)",
            labels=["state"],
        )
        for state in ("pending", "deferred"):
            recipients.add_metric([state], open_by_state.get(state, 0))
        age = GaugeMetricFamily(
            "mailstead_queue_oldest_age_seconds",
            "Seconds since the oldest queued message was received (0 when the queue is empty)",
        )
        age.add_metric([], max(0.0, self.clock() - oldest) if oldest is not None else 0.0)
        return [size, recipients, age]

    def _read(self) -> tuple[int, float | None, dict[str, int]]:
        uri = f"file:{urllib.parse.quote(str(self.db_path))}?mode=ro"
        conn = sqlite3.connect(uri, uri=True, timeout=_BUSY_TIMEOUT, check_same_thread=False)
        try:
            conn.execute("PRAGMA query_only = ON")
            count, oldest = conn.execute(
                "SELECT count(*), min(received_at) FROM messages"
            ).fetchone()
            states = conn.execute(
                "SELECT state, count(*) FROM recipients"
                " WHERE state IN ('pending', 'deferred') GROUP BY state"
            ).fetchall()
        finally:
            conn.close()
        return int(count), (float(oldest) if oldest is not None else None), dict(states)
