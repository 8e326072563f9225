"""The abuse database on both backends: ``abuse`` opens one more view of this test's rows,
as another worker process or another node of a cluster would."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from mailstead.mailauth.abuse_db import AbuseDB, PostgresAbuseDB, SQLiteAbuseDB
from mailstead.pgsql.connect import connect
from mailstead.sqlconn import Row
from mailstead.testing.clock import FakeClock
from mailstead.testing.postgres import TemporaryPostgres


class AbuseBackend:
    """One test's abuse database, on SQLite or PostgreSQL."""

    def __init__(self, kind: str, tmp_path: Path, dsn: str = "") -> None:
        self.kind = kind
        self.path = tmp_path / "abuse.sqlite3"
        self.dsn = dsn
        self.opened: list[AbuseDB] = []

    def open(self, clock: FakeClock) -> AbuseDB:
        """A new AbuseDB on the shared rows: one worker, or one node."""
        db: AbuseDB
        if self.kind == "sqlite":
            db = SQLiteAbuseDB(self.path, clock=clock.time)
        else:
            db = PostgresAbuseDB(self.dsn, clock=clock.time)
        self.opened.append(db)
        return db

    def rows(self, sql: str) -> list[Row]:
        if self.kind == "sqlite":
            with sqlite3.connect(self.path) as conn:
                return conn.execute(sql).fetchall()
        with connect(self.dsn) as conn:
            return conn.execute(sql.encode()).fetchall()

    def triplet(self, network: str, sender: str, recipient: str) -> str:
        separator = "\0" if self.kind == "sqlite" else "\x1f"
        return separator.join((network, sender, recipient))

    @contextmanager
    def stuck_writer(self, key: str) -> Iterator[None]:
        """Another worker inside a write that holds the bucket ``key``, and does not finish."""
        if self.kind == "sqlite":
            other = sqlite3.connect(self.path, isolation_level=None)
            other.execute("BEGIN IMMEDIATE")
            try:
                yield
            finally:
                other.execute("ROLLBACK")
                other.close()
            return
        with connect(self.dsn) as other:
            other.execute(b"SELECT key FROM rate WHERE key = %s FOR UPDATE", (key,))
            yield
            other.rollback()


@pytest.fixture(scope="module")
def abuse_pg_dsn(postgres: TemporaryPostgres) -> str:
    """One database for the module's tests; each starts from an empty schema in it."""
    return postgres.create_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def abuse(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AbuseBackend]:
    if request.param == "sqlite":
        backend = AbuseBackend("sqlite", tmp_path)
    else:
        dsn: str = request.getfixturevalue("abuse_pg_dsn")
        with connect(dsn, autocommit=True) as conn:
            conn.execute(b"DROP SCHEMA public CASCADE")
            conn.execute(b"CREATE SCHEMA public")
        backend = AbuseBackend("postgresql", tmp_path, dsn)
    yield backend
    for db in backend.opened:
        db.close()
