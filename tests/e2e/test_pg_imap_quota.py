"""The quota suite of ``test_imap_quota.py`` (SMTP 452 at RCPT and DATA, the queue
waiting for room, IMAP APPEND and COPY over quota, GETQUOTAROOT) once more,
with the mail store (and the rest of the shared state) on PostgreSQL.

The suite sets limits in, and looks at, the files of a node; here the same
steps go to the cluster: the directory and queue of the server's config
(``open_directory``, ``open_queue``) and the INBOX in the database.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import tests.e2e.test_imap_quota as suite
from mailstead.directory import Quota, open_directory
from mailstead.mta.queue import Queue, open_queue
from tests.e2e.harness import ServerHandle
from tests.e2e.test_pg_imap_mutt import stored_messages

# isort: off
from tests.e2e import test_pg_store
from tests.e2e.test_imap_quota import *  # noqa: F403 - its tests and fixtures
# isort: on

server = test_pg_store.server  # the server fixture, on PostgreSQL


def _set_quota(server: ServerHandle, address: str, quota: Quota) -> None:
    directory = open_directory(server.config)
    try:
        directory.set_quota(address, quota)
    finally:
        directory.close()


@pytest.fixture(autouse=True)
def through_the_cluster(
    monkeypatch: pytest.MonkeyPatch, server: ServerHandle, pg_dsn: str
) -> Iterator[None]:
    """The suite's directory, queue and INBOX, in the test's database instead."""

    def queue(_data_dir: object) -> Queue:
        return open_queue(server.config)

    monkeypatch.setattr(suite, "set_quota", _set_quota)
    monkeypatch.setattr(suite, "Queue", queue)
    monkeypatch.setattr(
        type(server),
        "new_messages",
        lambda _self, address: [data for data, _ in stored_messages(pg_dsn, address)],
    )
    yield
