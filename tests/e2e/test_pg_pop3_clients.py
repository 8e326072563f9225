"""The POP3 client suite of ``test_pop3_clients.py`` (fetchmail, getmail6, mpop;
keep and delete) once more, with the mail store (and the rest of the shared
state) on PostgreSQL; what the server still holds is read through the store
(``test_pg_imap_mutt.stored_flags``) instead of its Maildir."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import tests.e2e.test_pop3_clients as suite
from tests.e2e.test_pg_imap_mutt import stored_flags

# isort: off
from tests.e2e.test_pop3_clients import *  # noqa: F403 - its tests and fixtures
from tests.e2e.test_pg_store import server  # noqa: F401 - the server, on PostgreSQL
# isort: on


@pytest.fixture(autouse=True)
def files_through_the_store(monkeypatch: pytest.MonkeyPatch, pg_dsn: str) -> Iterator[None]:
    """The suite's look at alice's INBOX, taken in the test's database instead."""
    monkeypatch.setattr(
        suite, "_server_files", lambda _server: stored_flags(pg_dsn, "alice@example.test")
    )
    yield
