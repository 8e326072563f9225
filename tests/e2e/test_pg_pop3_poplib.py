"""The poplib suite of ``test_pop3_poplib.py`` (STLS and POP3S, RFC 1939's
commands, the UPDATE state, the maildrop lock) once more, with the mail store
(and the rest of the shared state) on PostgreSQL.

Where the suite reads the Maildir after QUIT, the same look is taken through
the store (``test_pg_imap_mutt.stored_flags``); the servers it starts itself
are started on the test's database too.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import tests.e2e.test_pop3_poplib as suite
from mailstead.config import load_config
from tests.e2e.harness import ServerHandle, running_config, write_config
from tests.e2e.test_pg_imap_mutt import stored_flags

# isort: off
from tests.e2e import test_pg_store
from tests.e2e.test_pop3_poplib import *  # noqa: F403 - its tests and fixtures
# isort: on

server = test_pg_store.server  # the server fixture, on PostgreSQL

ALICE = "alice@example.test"


@pytest.fixture(autouse=True)
def files_through_the_store(monkeypatch: pytest.MonkeyPatch, pg_dsn: str) -> Iterator[None]:
    """The suite's look at alice's INBOX, taken in the test's database instead."""
    monkeypatch.setattr(suite, "_files", lambda _server: stored_flags(pg_dsn, ALICE))
    yield


@pytest.fixture
def delete_retrieved(tmp_path: Path, pg_dsn: str) -> Iterator[ServerHandle]:
    path = write_config(tmp_path, dsn=pg_dsn)
    with path.open("a") as f:
        f.write("[pop3]\ndelete_retrieved = true\n")
    with running_config(load_config(path)) as handle:
        yield handle


def test_uidl_is_stable_across_a_server_restart(tmp_path: Path, pg_dsn: str) -> None:
    config = load_config(write_config(tmp_path, dsn=pg_dsn))
    with running_config(config) as handle:
        suite._deliver(handle, "one", "two")
        client = suite._stls(handle)
        first = client.uidl()[1]
        client.quit()
    with running_config(config) as handle:
        suite._deliver(handle, "three")
        client = suite._stls(handle)
        second = client.uidl()[1]
        assert client.stat()[0] == 3
        client.quit()
    assert second[:2] == first
    assert second[2] not in first


def test_retr_sets_seen_at_quit(server: ServerHandle, pg_dsn: str) -> None:
    suite._deliver(server, "read", "unread")
    client = suite._stls(server)
    numbers = suite._numbers(client)  # TOP is no retrieval
    client.retr(numbers["read"])
    client.top(numbers["unread"], 5)
    assert stored_flags(pg_dsn, ALICE) == {"read": "", "unread": ""}  # nothing before QUIT
    client.quit()
    assert stored_flags(pg_dsn, ALICE) == {"read": "S", "unread": ""}


# These two put files into the Maildir's new/ as another MDA would: the database has none.
del test_lf_message_is_sent_with_crlf_and_dot_stuffed  # noqa: F821 - star-imported
del test_messages_are_numbered_in_arrival_order  # noqa: F821
