"""Fixtures every test directory may use.

``postgres`` is one private PostgreSQL server for the whole run, started the
first time a test asks for it (``mailstead.testing.postgres``); ``pg_dsn`` is
a new empty database on it for one test, so tests never see each other's
rows.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mailstead.testing.postgres import TemporaryPostgres
from tests.tools import require


@pytest.fixture(scope="session")
def postgres() -> Iterator[TemporaryPostgres]:
    require("initdb")
    server = TemporaryPostgres()
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_dsn(postgres: TemporaryPostgres) -> str:
    return postgres.create_database()
