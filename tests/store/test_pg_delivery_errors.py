"""A database failure during local delivery is an OSError, as a full disk is for the file stores.

The delivery transaction's callers handle OSError: the receiver answers
451 and takes back the copies already published, local delivery defers
and discards what it staged. The PostgreSQL store must fail the same way.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from mailstead.durable import publish_all
from mailstead.pgsql.connect import Pool, open_pool
from mailstead.store.pg_delivery import PgMailStore, StoreDatabaseError
from mailstead.store.pg_schema import ensure_schema

BODY = b"Subject: hello\n\nbody\n"


@pytest.fixture
def pool(pg_dsn: str) -> Iterator[Pool]:
    pool = open_pool(pg_dsn)
    ensure_schema(pool)
    yield pool
    pool.close()


def test_a_failed_publish_is_an_oserror_and_takes_back_the_copies_before_it(
    pool: Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = PgMailStore(pool)
    first = store.stage("alice@example.test", [b"Delivered-To: alice\n", BODY], "", 1.0)
    second = store.stage("bob@example.test", [b"Delivered-To: bob\n", BODY], "", 1.0)
    real_add = store.add
    calls = []

    def add_then_fail(address: str, new: object) -> tuple[int, int]:
        calls.append(address)
        if address.startswith("bob"):
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return real_add(address, new)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "add", add_then_fail)
    with pytest.raises(OSError) as failed:
        publish_all([first, second])
    assert isinstance(failed.value, StoreDatabaseError)
    assert str(failed.value) == "mail database: server closed the connection unexpectedly"
    assert calls == ["alice@example.test", "bob@example.test"]
    with pool.connection() as conn:  # alice's copy was taken back (expunged)
        assert conn.execute("SELECT count(*) FROM mail_messages").fetchone() == (0,)
