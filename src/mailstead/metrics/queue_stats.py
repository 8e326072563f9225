"""The outbound queue's size and age, read from its database without changing it.

``mailstead status`` and the metrics scrape both ask this, not the mail
path: the queue is the truth, and two queries on a read-only connection
cost less than a counter kept on every enqueue and delivery. Read here
rather than through :class:`mailstead.mta.queue.Queue`, whose constructor
creates directories and tidies orphan files: a look must change nothing.
Only columns every schema version has are read (``messages.received_at``,
``recipients.state``; see mta/queue.py); a state added later is counted
under its own name. With ``[storage] backend = "postgresql"`` the same two
queries go to the cluster database: the queue every node shares.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from mailstead.config import Config
from mailstead.pgsql.compat import Connection
from mailstead.pgsql.connect import DATABASE_ERRORS, shared_pool
from mailstead.sqlconn import SQLConnection

__all__ = ["QueueSource", "QueueStats", "QueueSummary", "queue_source", "queue_summary"]

#: Where the queue is: its SQLite file, or the cluster database's DSN.
QueueSource = Path | str

log = logging.getLogger("mailstead.metrics")

# Waiting for a queue write to finish longer than this is not worth an answer.
_BUSY_TIMEOUT = 1.0
_READ_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, *DATABASE_ERRORS)
# The recipient states that are still waiting (delivered and failed ones leave).
_OPEN_STATES = ("pending", "deferred")


@dataclass(frozen=True, slots=True)
class QueueSummary:
    """How much is queued and since when."""

    messages: int = 0
    #: Recipients still queued, by state.
    recipients: dict[str, int] = field(default_factory=dict)
    #: Unix time the oldest queued message was received; None when empty.
    oldest: float | None = None


def queue_source(config: Config) -> QueueSource:
    """The queue ``config`` serves from."""
    if config.storage.backend == "postgresql":
        return config.storage.dsn
    return config.data_dir / "queue.sqlite3"


def queue_summary(source: QueueSource) -> QueueSummary:
    """Count what the queue holds; an absent or never written SQLite file is an empty queue."""
    if isinstance(source, str):
        with shared_pool(source).connection(timeout=_BUSY_TIMEOUT) as raw:
            try:
                return _summary(Connection(raw))
            except psycopg.errors.UndefinedTable:  # no node has served yet
                return QueueSummary()
    if not source.exists():
        return QueueSummary()
    # mode=ro: never creates the database nor takes a write lock.
    uri = f"{source.resolve().as_uri()}?mode=ro"
    conn = sqlite3.connect(uri, uri=True, timeout=_BUSY_TIMEOUT, check_same_thread=False)
    try:
        return _summary(conn)
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):  # created, never written: nothing queued
            return QueueSummary()
        raise
    finally:
        conn.close()


def _summary(conn: SQLConnection) -> QueueSummary:
    row = conn.execute("SELECT count(*), min(received_at) FROM messages").fetchone()
    count, oldest = row if row is not None else (0, None)
    by_state = {
        str(state): int(n)
        for state, n in conn.execute(
            "SELECT state, count(*) FROM recipients GROUP BY state ORDER BY state"
        )
    }
    return QueueSummary(int(count), by_state, None if oldest is None else float(oldest))


class QueueStats:
    """A collector reading the queue, read-only, at every scrape."""

    def __init__(self, source: QueueSource, clock: Callable[[], float] = time.time) -> None:
        self.source = source
        self.clock = clock

    def collect(self) -> Iterable[Metric]:
        if isinstance(self.source, Path) and not self.source.exists():
            return []  # no queue yet: nothing to say, rather than a false zero
        try:
            summary = queue_summary(self.source)
        except _READ_ERRORS as exc:
            log.warning("queue metrics unavailable: %s", exc)
            return []
        size = GaugeMetricFamily(
            "mailstead_queue_messages", "Messages in the outbound queue (any recipient open)"
        )
        size.add_metric([], summary.messages)
        recipients = GaugeMetricFamily(
            "mailstead_queue_recipients",
            "Queued recipients not yet delivered, by state (pending: never tried;"
            " deferred: tried, waiting for a retry)",
            labels=["state"],
        )
        for state in _OPEN_STATES:
            recipients.add_metric([state], summary.recipients.get(state, 0))
        age = GaugeMetricFamily(
            "mailstead_queue_oldest_age_seconds",
            "Seconds since the oldest queued message was received (0 when the queue is empty)",
        )
        oldest = summary.oldest
        age.add_metric([], max(0.0, self.clock() - oldest) if oldest is not None else 0.0)
        return [size, recipients, age]
