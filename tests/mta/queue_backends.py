"""The queue database on both engines, for the queue's and the outbox's contract tests.

``databases`` is parametrised over SQLite (``<tmp_path>/queue.sqlite3`` and
message files) and PostgreSQL (a fresh database on the test server, one
pool); each :meth:`Databases.queue` or :meth:`Databases.outbox` is one more
object on the same database: two of them are two nodes.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mailstead.events import EventSink
from mailstead.mta import queue_schema
from mailstead.mta.queue import Queue
from mailstead.mta.queue_db import PostgresDatabase
from mailstead.pgsql.connect import Pool, open_pool
from mailstead.webhooks import outbox_schema
from mailstead.webhooks.outbox import Outbox

BACKENDS = ("sqlite", "postgresql")


class Databases:
    """Queues and outboxes of one test, all on one database of ``backend``."""

    def __init__(self, backend: str, data_dir: Path, dsn: str | None) -> None:
        self.backend = backend
        self.data_dir = data_dir
        self.pool: Pool | None = open_pool(dsn, max_size=8) if dsn is not None else None
        self._opened: list[Queue | Outbox] = []

    @property
    def postgresql(self) -> bool:
        return self.pool is not None

    def queue(
        self,
        *,
        events: EventSink | None = None,
        node: str = "node-a",
        lease: float = 60.0,
        orphan_grace: float = 900.0,
    ) -> Queue:
        """One more queue on the test's database (``node`` names it in claims)."""
        database = None
        if self.pool is not None:
            database = PostgresDatabase(self.pool, "queue", queue_schema.POSTGRES_MIGRATIONS)
        queue = Queue(
            self.data_dir,
            events=events,
            database=database,
            node=node,
            lease=lease,
            orphan_grace=orphan_grace,
        )
        self._opened.append(queue)
        return queue

    def outbox(self, *, node: str = "node-a", clock: Callable[[], float] = time.time) -> Outbox:
        """One more outbox on the test's database (``node`` names it in leases)."""
        if self.pool is None:
            outbox = Outbox(self.data_dir / "queue.sqlite3", node=node, clock=clock)
        else:
            database = PostgresDatabase(self.pool, "outbox", outbox_schema.POSTGRES_MIGRATIONS)
            outbox = Outbox(database=database, node=node, clock=clock)
        self._opened.append(outbox)
        return outbox

    def close(self) -> None:
        for opened in reversed(self._opened):
            with contextlib.suppress(Exception):
                opened.close()
        if self.pool is not None:
            self.pool.close()


def together(*work: Callable[[], None], timeout: float = 60.0) -> list[BaseException]:
    """Run each of ``work`` in its own thread, all starting at once; what they raised."""
    start = threading.Barrier(len(work))
    errors: list[BaseException] = []

    def run(one: Callable[[], None]) -> None:
        try:
            start.wait()
            one()
        except BaseException as exc:  # pragma: no cover - reported by the caller
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(one,)) for one in work]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
    return errors


@pytest.fixture
def cluster(pg_dsn: str, tmp_path: Path) -> Iterator[Databases]:
    """Queues and outboxes on one PostgreSQL database: each one more node."""
    opened = Databases("postgresql", tmp_path, pg_dsn)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture(params=BACKENDS)
def databases(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Databases]:
    dsn = request.getfixturevalue("pg_dsn") if request.param == "postgresql" else None
    opened = Databases(request.param, tmp_path, dsn)
    try:
        yield opened
    finally:
        opened.close()
