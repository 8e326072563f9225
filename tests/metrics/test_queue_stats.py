"""The queue's size and oldest age, read from its database at scrape time."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from prometheus_client.core import CollectorRegistry
from prometheus_client.exposition import generate_latest

from mailstead.metrics.queue_stats import QueueStats, QueueSummary, queue_summary
from mailstead.mta.envelope import Attempt, QueuedRecipient
from mailstead.mta.queue import Queue
from mailstead.mta.queue_db import PostgresDatabase
from mailstead.mta.queue_schema import POSTGRES_MIGRATIONS
from mailstead.pgsql.connect import shared_pool

NOW = 1_800_000_000.0


def scrape(stats: QueueStats) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(stats)
    return "\n".join(
        line for line in generate_latest(registry).decode().splitlines() if not line.startswith("#")
    )


def test_size_states_and_oldest_age(tmp_path: Path) -> None:
    queue = Queue(tmp_path)
    body = [b"Subject: x\r\n\r\nbody\r\n"]
    first = queue.enqueue(
        "a@example.test",
        [QueuedRecipient("x@remote.test"), QueuedRecipient("y@remote.test")],
        body,
        received_at=NOW - 3600,
    )
    queue.enqueue("b@example.test", [QueuedRecipient("z@remote.test")], body, received_at=NOW - 5)
    queue.record(first, [Attempt("x@remote.test", "deferred", "451 4.4.1 later", NOW + 60)])
    stats = QueueStats(tmp_path / "queue.sqlite3", clock=lambda: NOW)
    assert scrape(stats) == (
        "mailstead_queue_messages 2.0\n"
        'mailstead_queue_recipients{state="pending"} 2.0\n'
        'mailstead_queue_recipients{state="deferred"} 1.0\n'
        "mailstead_queue_oldest_age_seconds 3600.0"
    )
    queue.close()


def test_an_empty_queue_is_zero(tmp_path: Path) -> None:
    Queue(tmp_path).close()
    text = scrape(QueueStats(tmp_path / "queue.sqlite3", clock=lambda: NOW))
    assert "mailstead_queue_messages 0.0" in text
    assert "mailstead_queue_oldest_age_seconds 0.0" in text


def test_no_database_no_queue_metrics(tmp_path: Path) -> None:
    assert scrape(QueueStats(tmp_path / "queue.sqlite3")) == ""
    assert not (tmp_path / "queue.sqlite3").exists()  # read-only: never created


def test_a_database_never_written_is_an_empty_queue(tmp_path: Path) -> None:
    sqlite3.connect(tmp_path / "queue.sqlite3").close()
    assert "mailstead_queue_messages 0.0" in scrape(QueueStats(tmp_path / "queue.sqlite3"))


def test_the_scrape_never_writes(tmp_path: Path) -> None:
    Queue(tmp_path).close()
    db = tmp_path / "queue.sqlite3"
    before = db.stat().st_mtime_ns, db.read_bytes()
    scrape(QueueStats(db))
    assert (db.stat().st_mtime_ns, db.read_bytes()) == before


def test_the_cluster_queue_is_read_from_the_database(pg_dsn: str, tmp_path: Path) -> None:
    assert queue_summary(pg_dsn) == QueueSummary()  # no tables yet: nothing queued
    database = PostgresDatabase(shared_pool(pg_dsn), "queue", POSTGRES_MIGRATIONS)
    with Queue(tmp_path, database=database, node="n1") as queue:
        queue.enqueue(
            "a@example.test", [QueuedRecipient("b@remote.test")], [b"x\n"], received_at=NOW - 60
        )
    summary = queue_summary(pg_dsn)
    assert (summary.messages, summary.recipients, summary.oldest) == (1, {"pending": 1}, NOW - 60)
    text = scrape(QueueStats(pg_dsn, clock=lambda: NOW))
    assert "mailstead_queue_messages 1.0" in text
