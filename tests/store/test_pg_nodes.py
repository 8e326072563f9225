"""The mail store on PostgreSQL between nodes: UIDs, shared bodies, delivery, POP3.

Each :class:`PgAccount` (and each pool) stands for one node; they meet
only in the database.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailstead.config import load_config
from mailstead.durable import publish_all
from mailstead.pgsql.connect import Pool, open_pool
from mailstead.pgsql.migrate import schema_version
from mailstead.proto.pop3.maildrop import MaildropInUse
from mailstead.store import MaildirStore, open_mail_store
from mailstead.store.pg_account import PgAccount
from mailstead.store.pg_delivery import PgMailStore
from mailstead.store.pg_maildrop import PgMaildrops
from mailstead.store.pg_rows import collect_bodies
from mailstead.store.pg_schema import MIGRATIONS, StoreUnavailable, ensure_schema

ALICE = "alice@example.test"
BOB = "bob@example.test"
BODY = b"Subject: hello\n\nthe shared body\n"


@pytest.fixture
def nodes(pg_dsn: str) -> Iterator[tuple[Pool, Pool]]:
    """Two nodes' pools on one database."""
    a, b = open_pool(pg_dsn, max_size=6), open_pool(pg_dsn, max_size=6)
    try:
        assert ensure_schema(a) == len(MIGRATIONS)
        assert ensure_schema(b) == 0  # the second node finds it done
        yield a, b
    finally:
        a.close()
        b.close()


def _count(pool: Pool, sql: str) -> int:
    with pool.connection() as conn:
        row = conn.execute(sql.encode()).fetchone()
    assert row is not None
    return int(str(row[0]))


def test_the_schema_is_versioned(nodes: tuple[Pool, Pool]) -> None:
    with nodes[0].connection() as conn:
        assert schema_version(conn, "store") == len(MIGRATIONS)


def test_concurrent_deliveries_and_appends_on_two_nodes_lose_no_uid(
    nodes: tuple[Pool, Pool],
) -> None:
    # Two nodes, two threads each: one delivers over "SMTP", one APPENDs.
    per_thread = 15
    errors: list[BaseException] = []
    appended: list[list[int]] = []

    def deliver(pool: Pool, tag: int) -> None:
        store = PgMailStore(pool)
        try:
            for i in range(per_thread):
                store.deliver(ALICE, [b"Subject: d%d-%d\n\nx\n" % (tag, i)], "", 1.0)
        except BaseException as exc:  # reported below
            errors.append(exc)

    def append(pool: Pool, tag: int) -> None:
        inbox = PgAccount(pool, ALICE).mailbox("INBOX")
        try:
            appended.append(
                [
                    inbox.append(b"Subject: a%d-%d\r\n\r\nx\r\n" % (tag, i), [], None)
                    for i in range(per_thread)
                ]
            )
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=deliver, args=(pool, n)) for n, pool in enumerate(nodes)]
    threads += [threading.Thread(target=append, args=(pool, n)) for n, pool in enumerate(nodes)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    total = 4 * per_thread
    for mine in appended:
        assert mine == sorted(mine)  # each APPEND's UID above the last one's
    views = []
    for pool in nodes:
        inbox = PgAccount(pool, ALICE).mailbox("INBOX")
        inbox.refresh()
        views.append(inbox)
    a, b = views
    assert a.uids == b.uids == list(range(1, total + 1))
    assert a.uidnext == b.uidnext == total + 1
    assert {a.read(u) for u in a.uids} == {b.read(u) for u in b.uids}
    assert len({a.read(u) for u in a.uids}) == total
    # Modseqs ascend with UIDs: each new message took the mailbox's next one.
    modseqs = [a.messages[u].modseq for u in a.uids]
    assert modseqs == sorted(modseqs) and len(set(modseqs)) == total


def test_a_delivery_on_one_node_reaches_the_other_at_its_next_refresh(
    nodes: tuple[Pool, Pool],
) -> None:
    a, b = (PgAccount(pool, ALICE).mailbox("INBOX") for pool in nodes)
    a.refresh()
    b.refresh()
    seen = b.highestmodseq
    PgMailStore(nodes[0]).deliver(ALICE, [b"Delivered-To: alice\n", BODY], "", 1.0)
    b.refresh()
    assert b.uids == [1] and b.highestmodseq > seen
    assert b.read(1) == b"Delivered-To: alice\n" + BODY
    a.refresh()
    assert a.uids == b.uids and a.uidvalidity == b.uidvalidity
    b.store([1], ["\\Answered"], "+")
    a.refresh()
    assert a.messages[1].flags == ("\\Answered",)
    a.expunge([1])
    b.refresh()
    assert b.uids == [] and b.read(1) == b"Delivered-To: alice\n" + BODY  # RFC 2180 §4.1


def test_the_recipients_of_one_delivery_share_one_body(nodes: tuple[Pool, Pool]) -> None:
    store = PgMailStore(nodes[0])
    copies = [
        store.stage(rcpt, [b"Delivered-To: %s\n" % rcpt.encode(), BODY], "", 1.0)
        for rcpt in (ALICE, BOB)
    ]
    publish_all(copies)
    assert [c.uid for c in copies] == [1, 1]
    assert _count(nodes[0], "SELECT count(*) FROM mail_bodies") == 1
    assert _count(nodes[0], "SELECT count(*) FROM mail_messages") == 2
    found = store.find_delivered([c.stored_as for c in copies])
    assert [(u.mailbox, u.uid) for u in found if u] == [("INBOX", 1), ("INBOX", 1)]


def test_an_undone_copy_is_expunged_and_its_body_collected_later(nodes: tuple[Pool, Pool]) -> None:
    store = PgMailStore(nodes[0])
    inbox = PgAccount(nodes[1], ALICE).mailbox("INBOX")
    copy = store.stage(ALICE, [BODY], "", 1.0)
    copy.publish()
    inbox.refresh()
    assert inbox.uids == [1]
    copy.undo()
    copy.close()
    inbox.refresh()
    assert inbox.uids == [] and inbox.expunged_since(0) == [1]
    # Kept while a session may still read it, then collected.
    assert collect_bodies(nodes[0]) == 0
    assert inbox.read(1) == BODY
    assert collect_bodies(nodes[0], retain=0) == 1
    assert _count(nodes[0], "SELECT count(*) FROM mail_bodies") == 0
    # The next delivery of the same content stores it again.
    store.deliver(ALICE, [BODY], "", 1.0)
    inbox.refresh()
    assert inbox.uids == [2] and inbox.read(2) == BODY


def test_a_body_still_named_by_a_copy_is_not_collected(nodes: tuple[Pool, Pool]) -> None:
    store = PgMailStore(nodes[0])
    store.deliver(ALICE, [BODY], "", 1.0)
    store.deliver(BOB, [BODY], "", 1.0)
    alice = PgAccount(nodes[0], ALICE).mailbox("INBOX")
    alice.refresh()
    alice.expunge([1])
    assert collect_bodies(nodes[0], retain=0) == 0
    bob = PgAccount(nodes[1], BOB).mailbox("INBOX")
    bob.refresh()
    assert bob.read(1) == BODY


def test_a_deleted_mailbox_leaves_no_rows(nodes: tuple[Pool, Pool]) -> None:
    account = PgAccount(nodes[0], ALICE)
    account.create("Box")
    account.mailbox("Box").append(BODY, [], None)
    account.delete("Box")
    assert _count(nodes[0], "SELECT count(*) FROM mail_messages") == 0
    assert collect_bodies(nodes[0], retain=0) == 1


def test_one_pop3_session_per_maildrop_across_nodes(nodes: tuple[Pool, Pool]) -> None:
    PgMailStore(nodes[0]).deliver(ALICE, [BODY], "", 1.0)
    first = PgMaildrops(nodes[0]).open(ALICE)
    with pytest.raises(MaildropInUse):
        PgMaildrops(nodes[1]).open(ALICE)
    assert [size for _, size in first.listing()] == [len(BODY) + 3]
    assert first.read(0) == BODY
    first.mark_seen([0])
    first.delete([0])
    first.close()
    second = PgMaildrops(nodes[1]).open(ALICE)
    assert second.listing() == []
    second.close()


def test_a_mailbox_made_again_on_another_node_is_a_new_one(nodes: tuple[Pool, Pool]) -> None:
    here, there = PgAccount(nodes[0], ALICE), PgAccount(nodes[1], ALICE)
    here.create("Box")
    old = here.mailbox("Box")
    old.append(BODY, [], None)
    there.delete("Box")
    there.create("Box")
    with pytest.raises(FileNotFoundError):
        old.refresh()  # a session that had it selected is told BYE
    new = here.mailbox("Box")
    new.refresh()
    assert new.uidvalidity > old.uidvalidity and new.uids == []


def test_usage_counts_every_mailbox_of_the_account(nodes: tuple[Pool, Pool]) -> None:
    store = PgMailStore(nodes[0])
    store.deliver(ALICE, [BODY], "", 1.0)
    account = PgAccount(nodes[1], ALICE)
    account.create("Box")
    account.mailbox("Box").append(b"x\r\n", [], None)
    assert store.usage(ALICE) == account.quota_usage()
    assert (store.usage(ALICE).messages, store.usage(ALICE).octets) == (2, len(BODY) + 3 + 3)
    assert store.usage(BOB).messages == 0


def test_a_database_newer_than_the_code_is_refused_in_one_line(pg_dsn: str) -> None:
    pool = open_pool(pg_dsn)
    try:
        ensure_schema(pool)
        with pool.connection() as conn:
            conn.execute(b"UPDATE mailstead_schema SET version = 99 WHERE component = 'store'")
        with pytest.raises(StoreUnavailable) as refused:
            ensure_schema(pool)
        assert "version 99" in str(refused.value) and "\n" not in str(refused.value)
    finally:
        pool.close()


def test_reads_in_uid_order_fetch_the_next_messages_along(nodes: tuple[Pool, Pool]) -> None:
    store = PgMailStore(nodes[0])
    # 30 small messages, then 10 of 200 kB each.
    sent = [b"Subject: %d\n\n" % i + b"x" * (1000 if i < 30 else 200_000) for i in range(40)]
    for data in sent:
        store.deliver(ALICE, [b"Delivered-To: alice\n", data], "", 1.0)
    inbox = PgAccount(nodes[1], ALICE).mailbox("INBOX")
    inbox.refresh()
    queries = 0
    fetch = inbox._readahead.fetch

    def counting(*args: object, **kwargs: object) -> bytes | None:
        nonlocal queries
        queries += 1
        return fetch(*args, **kwargs)  # type: ignore[arg-type]

    inbox._readahead.fetch = counting  # type: ignore[method-assign]
    assert [inbox.read(uid) for uid in inbox.uids] == [b"Delivered-To: alice\n" + d for d in sent]
    assert queries == 1 + 10  # the small ones together, each large one alone
    assert inbox.read(1) == b"Delivered-To: alice\n" + sent[0]


def test_the_config_picks_the_store(tmp_path: Path, pg_dsn: str) -> None:
    base = 'domains = ["example.test"]\ndata_dir = "var"\n'
    (tmp_path / "files.toml").write_text(base)
    (tmp_path / "cluster.toml").write_text(
        f'{base}[storage]\nbackend = "postgresql"\ndsn = "{pg_dsn}"\n'
    )
    files = open_mail_store(load_config(tmp_path / "files.toml"))
    assert isinstance(files.delivery, MaildirStore)
    cluster = open_mail_store(load_config(tmp_path / "cluster.toml"))
    assert isinstance(cluster.delivery, PgMailStore)
    cluster.delivery.deliver(ALICE, [BODY], "", 1.0)
    inbox = cluster.accounts.open_for_login(ALICE).mailbox("INBOX")
    inbox.refresh()
    assert inbox.uids == [1]
    drop = cluster.maildrops.open(ALICE)
    assert len(drop.listing()) == 1
    drop.close()
