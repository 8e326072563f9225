"""The COMPRESS=DEFLATE suite of ``test_imap_compress.py`` once more, with the
mail store (and the rest of the shared state) on PostgreSQL; its look at the
Maildir is taken through the store (``test_pg_imap_mutt.flags_at``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import tests.e2e.test_imap_compress as suite
from tests.e2e.test_pg_imap_mutt import flags_at

# isort: off
from tests.e2e.test_imap_compress import *  # noqa: F403 - its tests and fixtures
from tests.e2e.test_pg_store import server  # noqa: F401 - the server, on PostgreSQL
# isort: on


@pytest.fixture(autouse=True)
def files_through_the_store(monkeypatch: pytest.MonkeyPatch, pg_dsn: str) -> Iterator[None]:
    monkeypatch.setattr(suite, "_files", lambda folder: flags_at(pg_dsn, folder))
    yield
