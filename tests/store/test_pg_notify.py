"""Change notices between nodes (LISTEN/NOTIFY): what sends them, who hears, reconnecting.

Each pool stands for one node; :class:`ChangeNotices` is one node's
listening connection. The tests change mailboxes the ways the store does
and listen with a plain psycopg connection: one notice per committed
change, none for a change that was rolled back.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import psycopg
import pytest

from mailstead.pgsql.connect import DatabaseUnavailable, Pool, connect, open_pool
from mailstead.store import pg_rows
from mailstead.store.pg_account import PgAccount
from mailstead.store.pg_delivery import PgMailStore
from mailstead.store.pg_notify import NOTIFY_CHANNEL, ChangeNotices
from mailstead.store.pg_schema import ensure_schema

ALICE = "alice@example.test"


@pytest.fixture
def pool(pg_dsn: str) -> Iterator[Pool]:
    pool = open_pool(pg_dsn, max_size=4)
    try:
        ensure_schema(pool)
        yield pool
    finally:
        pool.close()


@pytest.fixture
def listener(pg_dsn: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    conn = connect(pg_dsn, autocommit=True)
    conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
    try:
        yield conn
    finally:
        conn.close()


def _heard(conn: psycopg.Connection[tuple[object, ...]]) -> list[str]:
    return [n.payload for n in conn.notifies(timeout=0.3)]


def _eventually(check: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "not within the time"
        time.sleep(0.01)


def _deliver(store: PgMailStore, text: bytes = b"Subject: hi\n\nhello\n") -> None:
    store.deliver(ALICE, [b"Return-Path: <c@remote.test>\n", text], "c@remote.test", time.time())


def test_every_change_of_a_mailbox_is_one_notice_at_commit(
    pool: Pool, listener: psycopg.Connection[tuple[object, ...]]
) -> None:
    store = PgMailStore(pool)
    account = PgAccount(pool, ALICE)
    inbox = account.mailbox("INBOX")
    box = str(inbox.id)
    assert _heard(listener) == []  # making the account and INBOX changed no messages

    _deliver(store)
    assert _heard(listener) == [box]
    inbox.refresh()
    assert inbox.store([1], ["\\Seen"], "+") == [1]
    assert _heard(listener) == [box]
    assert inbox.store([1], ["\\Seen"], "+") == []  # no change: rolled back, no notice
    assert _heard(listener) == []
    assert inbox.append(b"Subject: two\n\nx\n", ["\\Seen"], None) == 2
    assert inbox.expunge([1, 2]) == [1, 2]
    assert _heard(listener) == [box, box]  # one per transaction

    account.create("Lists")
    lists = account.mailbox("Lists")
    account.rename("Lists", "Groups")
    account.delete("Groups")
    assert _heard(listener) == [str(lists.id), str(lists.id)]  # renamed, deleted


def test_the_listener_marks_the_mailboxes_named(pool: Pool, pg_dsn: str) -> None:
    notices = ChangeNotices(pg_dsn)
    try:
        notices.want()
        _eventually(lambda: notices.listening)
        inbox = PgAccount(pool, ALICE).mailbox("INBOX")
        before = notices.mark(inbox.id)
        _deliver(PgMailStore(pool))
        _eventually(lambda: notices.mark(inbox.id) != before)
        assert notices.mark(inbox.id)[0] == before[0]  # same epoch, one more notice
    finally:
        notices.stop()
    assert not notices.listening


def test_idle_reads_the_database_only_when_told(
    pool: Pool, pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Node A idles on its INBOX; node B delivers.
    node_b = open_pool(pg_dsn, max_size=2)
    notices = ChangeNotices(pg_dsn)
    try:
        inbox = PgAccount(pool, ALICE, notices=notices).mailbox("INBOX")
        inbox.refresh()
        inbox.refresh(max_age=0.01)  # the first IDLE look starts the listener
        _eventually(lambda: notices.listening)
        time.sleep(0.02)
        inbox.refresh(max_age=0.01)  # read once more: a new epoch began
        assert inbox.uids == []

        # A change whose notice was lost (its node died right after the
        # commit) is not read before the fallback interval: IDLE is quiet
        # without notices.
        with monkeypatch.context() as patched:
            patched.setattr(pg_rows, "announce", lambda conn, ids: None)
            _deliver(PgMailStore(node_b))
        time.sleep(0.02)
        inbox.refresh(max_age=0.01)
        assert inbox.uids == []
        inbox._read_at -= 60  # the fallback interval passed
        time.sleep(0.02)
        inbox.refresh(max_age=0.01)
        assert inbox.uids == [1]

        # With the notice the next look reads.
        _deliver(PgMailStore(node_b))
        _eventually(lambda: (inbox.refresh(max_age=0.01), inbox.uids)[1] == [1, 2])
    finally:
        notices.stop()
        node_b.close()


def test_a_lost_connection_is_opened_again_and_every_mailbox_reads_once(
    pool: Pool, pg_dsn: str
) -> None:
    notices = ChangeNotices(pg_dsn, backoff=(0.05, 0.2))
    try:
        notices.want()
        _eventually(lambda: notices.listening)
        inbox = PgAccount(pool, ALICE).mailbox("INBOX")
        before = notices.mark(inbox.id)
        with pool.connection() as conn:
            (ended,) = conn.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                f" WHERE query = 'LISTEN {NOTIFY_CHANNEL}'"
            ).fetchone() or (0,)
        assert ended == 1
        _eventually(lambda: notices.connections == 2 and notices.listening)
        assert notices.mark(inbox.id)[0] == before[0] + 1  # a new epoch: read again
        after = notices.mark(inbox.id)
        _deliver(PgMailStore(pool))
        _eventually(lambda: notices.mark(inbox.id) != after)  # heard on the new connection
    finally:
        notices.stop()


class _Refusing:
    """Opens no connection the first ``failures`` times, then a silent one."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.attempts: list[float] = []

    def __call__(self, dsn: str) -> _Silent:
        self.attempts.append(time.monotonic())
        if len(self.attempts) <= self.failures:
            raise DatabaseUnavailable("cannot reach the database host=db: refused")
        return _Silent()


class _Silent:
    def execute(self, query: str) -> object:
        assert query == f"LISTEN {NOTIFY_CHANNEL}"
        return None

    def notifies(self, *, timeout: float | None = None, stop_after: int | None = None) -> list[_N]:
        time.sleep(timeout or 0)
        return [_N("not a number"), _N("7")]

    def close(self) -> None:
        pass


class _N:
    def __init__(self, payload: str) -> None:
        self.payload = payload


def test_an_unreachable_database_is_tried_again_with_growing_pauses() -> None:
    opener = _Refusing(failures=3)
    notices = ChangeNotices("host=db", open_connection=opener, backoff=(0.05, 0.1))
    try:
        notices.want()
        _eventually(lambda: notices.listening)
        assert len(opener.attempts) == 4
        pauses = [b - a for a, b in zip(opener.attempts, opener.attempts[1:], strict=False)]
        assert pauses[0] >= 0.05 and pauses[1] >= 0.1 and pauses[2] >= 0.1
        assert pauses[2] < 0.5  # capped
        _eventually(lambda: notices.mark(7)[1] >= 1)  # a stray payload is ignored
    finally:
        notices.stop()


def test_the_thread_ends_when_nobody_idles() -> None:
    notices = ChangeNotices("host=db", open_connection=_Refusing(0), linger=0.2)
    notices.want()
    _eventually(lambda: notices.listening)
    _eventually(lambda: not notices.listening, seconds=3)
    epoch = notices.mark(1)[0]
    notices.want()  # the next IDLE starts it again, in a new epoch
    _eventually(lambda: notices.listening and notices.mark(1)[0] > epoch)
    notices.stop()
