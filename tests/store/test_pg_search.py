"""SEARCH's trigram index in PostgreSQL (store/pg_search.py): what it finds, that it
only narrows (the matcher's answer is the answer), and that it keeps up with
APPEND, COPY and EXPUNGE; without ``pg_trgm`` every message is read as before."""

from __future__ import annotations

import logging
from collections.abc import Container, Iterator
from dataclasses import dataclass

import pytest
from tests.store.test_search_index import B64_LATIN1, PLAIN, QP_UTF8

from mailstead.pgsql.connect import Pool, open_pool
from mailstead.proto.imap.search_plan import text_candidates
from mailstead.store import pg_search
from mailstead.store.inspect import parse_query, search
from mailstead.store.pg_account import PgAccount
from mailstead.store.pg_delivery import PgMailStore
from mailstead.store.pg_mailbox import PgMailbox
from mailstead.store.pg_rows import autocommit
from mailstead.store.pg_schema import ensure_schema

ADDRESS = "alice@example.test"
WHEN = 837596665.0

RAW_UTF8 = "From: carol@example.net\nSubject: Überweisung\n\nDie GRÖSSE zählt.\n".encode()
WILDCARDS = b"From: dave@example.net\nSubject: sale\n\nprice 50%off for snake_case fans\n"
LOOKALIKE = b"From: erin@example.net\nSubject: sale\n\nprice 50 off for snakeXcase fans\n"
MESSAGES = (PLAIN, QP_UTF8, B64_LATIN1, RAW_UTF8, WILDCARDS, LOOKALIKE)


@dataclass
class Store:
    pool: Pool
    delivery: PgMailStore

    def deliver(self, data: bytes) -> None:
        self.delivery.deliver(ADDRESS, [data], "a@example.test", WHEN)

    def mailbox(self, name: str = "INBOX") -> PgMailbox:
        """The mailbox as another process opens it (nothing known yet)."""
        box = PgAccount(self.pool, ADDRESS).mailbox(name)
        assert isinstance(box, PgMailbox)
        box.refresh()
        return box

    def indexed_mailbox(self, name: str = "INBOX") -> PgMailbox:
        """The mailbox with every message indexed (what the filler thread does)."""
        box = self.mailbox(name)
        assert box.text_index.fill()
        return box

    def indexed(self) -> int:
        with autocommit(self.pool) as conn:
            row = conn.execute("SELECT count(*) FROM mail_search").fetchone()
        assert row is not None
        return int(row[0])


@pytest.fixture
def store(pg_dsn: str) -> Iterator[Store]:
    pool = open_pool(pg_dsn)
    try:
        ensure_schema(pool)
        found = Store(pool, PgMailStore(pool))
        for data in MESSAGES:
            found.deliver(data)
        yield found
    finally:
        pool.close()


def _candidates(box: PgMailbox, query: str) -> Container[int] | None:
    return text_candidates(box, parse_query(query).program)


@pytest.mark.parametrize(
    ("query", "uids"),
    [
        ("TEXT noon", [1]),
        ('BODY "unch pla"', []),  # the subject is not the body
        ('TEXT "unch pla"', [1]),  # any substring, not words
        ("BODY köln", [2]),  # quoted-printable UTF-8
        ("BODY STRASSE", [2]),  # casefolded: ß is ss
        ('SUBJECT "köln trip"', [2]),  # RFC 2047 base64
        ("FROM jürgen", [2]),  # RFC 2047 display name
        ("FROM JURGEN@EXAMPLE", [2]),
        ('BODY "déjà vu"', [3]),  # base64 ISO-8859-1 part
        ("TEXT quarterly", [3]),
        ("SUBJECT überweisung", [4]),  # raw 8-bit UTF-8
        ("BODY größe", [4]),
        ("BODY 50%off", [5]),  # % is a character, not a wildcard
        ("BODY snake_case", [5]),  # _ too
        ('BODY "50%"', [5]),
        ("BODY %%%", []),
        ("BODY ___", []),
        ("BODY e_c", [5]),
        ("OR SUBJECT report BODY noon", [1, 3]),
        ("SUBJECT sale BODY fans", [5, 6]),
        ("SUBJECT sale NOT BODY snake_case", [6]),
        ("BODY nowhere", []),
    ],
)
def test_the_index_narrows_and_the_answer_is_the_matchers(
    store: Store, query: str, uids: list[int]
) -> None:
    box = store.indexed_mailbox()
    assert search(box, parse_query(query)) == uids
    narrowed = _candidates(box, query)
    assert narrowed is not None
    assert all(uid in narrowed for uid in uids)  # never a missed match


@pytest.mark.parametrize(
    ("query", "candidates"),
    [("BODY 50%off", [5]), ("BODY snake_case", [5]), ("TEXT noon", [1]), ("BODY köln", [2])],
)
def test_wildcards_in_the_needle_are_literal(
    store: Store, query: str, candidates: list[int]
) -> None:
    box = store.indexed_mailbox()
    narrowed = _candidates(box, query)
    assert narrowed is not None
    assert [uid for uid in box.uids if uid in narrowed] == candidates


def test_short_needles_and_not_read_everything(store: Store) -> None:
    box = store.mailbox()
    assert _candidates(box, "BODY ab") is None
    assert _candidates(box, "NOT BODY noon") is None
    assert search(box, parse_query("BODY at")) == [1, 3]  # "application" in part 2


def test_the_first_search_indexes_then_only_candidates_are_read(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    for n in range(40):
        store.deliver(b"Subject: filler %d\n\nnothing to see here\n" % n)
    box = store.mailbox()
    assert store.indexed() == 0  # delivery writes no text
    reads: list[int] = []
    real_read = box.read
    monkeypatch.setattr(box, "read", lambda uid: reads.append(uid) or real_read(uid))
    assert search(box, parse_query("TEXT quarterly")) == [3]
    assert len(reads) == 46  # nothing indexed yet: all read, as without an index
    assert pg_search.FILLER.wait_idle(30)  # the search woke the filler
    assert store.indexed() == 46
    reads.clear()
    assert search(box, parse_query("TEXT quarterly")) == [3]
    assert reads == [3]
    reads.clear()
    assert search(box, parse_query("TEXT filler")) == list(range(7, 47))
    assert len(reads) == 40


def test_mail_appended_delivered_or_copied_after_indexing_is_found(store: Store) -> None:
    box = store.indexed_mailbox()
    assert search(box, parse_query("BODY zebra")) == []
    store.deliver(b"Subject: zoo\n\na zebra delivered\n")
    uid = box.append(b"Subject: zoo\r\n\r\na zebra appended\r\n", ["\\Seen"], WHEN)
    box.refresh()
    assert uid == 8
    assert search(box, parse_query("BODY zebra")) == [7, 8]  # not indexed yet: read
    assert pg_search.FILLER.wait_idle(30)
    assert store.indexed() == 8
    narrowed = _candidates(box, "BODY zebra")
    assert narrowed is not None and [u for u in box.uids if u in narrowed] == [7, 8]
    assert search(box, parse_query("BODY zebra")) == [7, 8]
    account = PgAccount(store.pool, ADDRESS)
    account.create("Archive")
    dest = account.mailbox("Archive")
    assert isinstance(dest, PgMailbox)
    dest.refresh()
    assert box.copy_to([2, 8], dest) == [(2, 1), (8, 2)]
    dest.refresh()
    assert search(dest, parse_query("BODY zebra")) == [2]
    assert search(dest, parse_query("BODY köln")) == [1]


def test_an_expunged_message_leaves_the_index(store: Store) -> None:
    box = store.indexed_mailbox()
    assert search(box, parse_query("SUBJECT sale")) == [5, 6]
    assert store.indexed() == 6
    box.store([5], ["\\Deleted"], "+")
    assert box.expunge([5]) == [5]
    assert store.indexed() == 5
    assert search(box, parse_query("SUBJECT sale")) == [6]
    other = store.mailbox()  # another node, which never saw UID 5
    assert search(other, parse_query("BODY 50%off")) == []


def test_a_message_too_large_to_index_is_always_a_candidate(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("mailstead.store.search_text.MAX_INDEXED_CHARS", 60)
    store.deliver(b"Subject: long\n\n" + b"padding " * 20 + b"needle at the end\n")
    box = store.indexed_mailbox()
    narrowed = _candidates(box, "BODY needle")
    assert narrowed is not None
    assert 7 in narrowed
    assert search(box, parse_query("BODY needle")) == [7]


def test_until_the_filler_is_done_the_unindexed_are_candidates(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pg_search, "FILL_BATCH", 2)
    box = store.mailbox()
    assert not box.text_index.fill(batches=1)  # one turn of the filler: UIDs 1 and 2
    assert store.indexed() == 2
    narrowed = _candidates(box, "BODY nowhere")
    assert narrowed is not None
    assert [uid for uid in box.uids if uid in narrowed] == [3, 4, 5, 6]
    assert search(box, parse_query("BODY snake_case")) == [5]
    assert pg_search.FILLER.wait_idle(30)
    assert store.indexed() == 6
    narrowed = _candidates(box, "BODY nowhere")
    assert narrowed is not None and not [uid for uid in box.uids if uid in narrowed]


def test_without_pg_trgm_every_message_is_read_and_one_line_says_why(
    pg_dsn: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(pg_search, "EXTENSIONS", ("mailstead_no_such_extension",))
    pool = open_pool(pg_dsn)
    try:
        with caplog.at_level(logging.WARNING, logger="mailstead.store"):
            ensure_schema(pool)
        (line,) = [r.getMessage() for r in caplog.records]
        assert line.startswith("full-text search index unavailable, SEARCH reads every message:")
        assert "mailstead_no_such_extension" in line
        store = Store(pool, PgMailStore(pool))
        for data in MESSAGES:
            store.deliver(data)
        box = store.mailbox()
        assert _candidates(box, "BODY köln") is None
        assert search(box, parse_query("BODY köln")) == [2]
        assert pg_search.FILLER.wait_idle(30)
        assert store.indexed() == 0
        # Once the extension can be made, the next start makes the index.
        monkeypatch.setattr(pg_search, "EXTENSIONS", ("pg_trgm", "btree_gin"))
        caplog.clear()
        ensure_schema(pool)
        assert not caplog.records
    finally:
        pool.close()
    pool = open_pool(pg_dsn)  # a new process: it looks for the index again
    try:
        box = Store(pool, PgMailStore(pool)).mailbox()
        assert _candidates(box, "BODY köln") is not None
        assert search(box, parse_query("BODY köln")) == [2]
    finally:
        pool.close()


@pytest.mark.parametrize(
    ("needle", "pattern"),
    [("abc", "%abc%"), ("50%", "%50\\%%"), ("a_b", "%a\\_b%"), ("c:\\x", "%c:\\\\x%")],
)
def test_like_patterns_escape_the_wildcards(needle: str, pattern: str) -> None:
    assert pg_search.like_pattern(needle) == pattern


def test_the_trigram_index_answers_like(store: Store) -> None:
    store.indexed_mailbox()
    with autocommit(store.pool) as conn:
        conn.execute("SET enable_seqscan = off")
        plan = "\n".join(
            str(row[0])
            for row in conn.execute(
                # Without the mailbox: on 6 rows the planner may prefer the primary key.
                "EXPLAIN SELECT uid FROM mail_search WHERE text LIKE ?",
                ("%quarterly%",),
            )
        )
    assert pg_search.INDEX_NAME in plan
