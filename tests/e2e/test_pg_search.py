"""SEARCH over imaplib on a server whose mail is in PostgreSQL (the trigram index of
store/pg_search.py) answers what the SQLite + Maildir server answers for the
same mail, before and after the index is filled, after an expunge and for
mail that came after it."""

from __future__ import annotations

import imaplib
import smtplib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from mailstead.pgsql.connect import connect
from mailstead.store.pg_search import FILLER
from tests.e2e.harness import ServerHandle, client_tls_context, running_server
from tests.e2e.test_imap_fts import ALICE, COUNT, PASSWORD, _answers, _deliver, _uid_search

WILDCARD_MAIL = (
    f"From: dave@remote.test\r\nTo: {ALICE}\r\nSubject: sale\r\n\r\n"
    "price 50%off for snake_case fans\r\n"
)
LOOKALIKE_MAIL = (
    f"From: erin@remote.test\r\nTo: {ALICE}\r\nSubject: sale\r\n\r\n"
    "price 50 off for snakeXcase fans\r\n"
)


def _imap(server: ServerHandle) -> imaplib.IMAP4_SSL:
    client = imaplib.IMAP4_SSL(
        "127.0.0.1", server.ports["imaps"], ssl_context=client_tls_context(), timeout=10
    )
    client.login(ALICE, PASSWORD)
    client.select("INBOX")
    return client


def _send(server: ServerHandle, *messages: str) -> None:
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as smtp:
        for text in messages:
            smtp.sendmail("carol@remote.test", [ALICE], text)


def _indexed(dsn: str) -> int:
    conn: psycopg.Connection[tuple[object, ...]]
    with connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM mail_search").fetchone()
    assert row is not None
    return int(str(row[0]))


@contextmanager
def _both(tmp_path: Path, dsn: str) -> Iterator[tuple[ServerHandle, ServerHandle]]:
    (tmp_path / "sqlite").mkdir()
    (tmp_path / "pg").mkdir()
    with (
        running_server(tmp_path / "sqlite") as sqlite,
        running_server(tmp_path / "pg", dsn=dsn) as pg,
    ):
        yield sqlite, pg


def test_uid_search_text_answers_as_the_sqlite_server(tmp_path: Path, pg_dsn: str) -> None:
    with _both(tmp_path, pg_dsn) as (sqlite, pg):
        for server in (sqlite, pg):
            _deliver(server)
            _send(server, WILDCARD_MAIL, LOOKALIKE_MAIL)
        lite, cluster = _imap(sqlite), _imap(pg)
        assert _indexed(pg_dsn) == 0  # delivery wrote no text: the first SEARCH does

        # C: A1 UID SEARCH CHARSET UTF-8 TEXT {4+} noon … (each query of test_imap_fts)
        expected = _answers(lite)
        assert _answers(cluster) == expected  # read, and the filler woken
        assert FILLER.wait_idle(30)
        assert _indexed(pg_dsn) == COUNT + 2
        assert len(expected["BODY köln"]) == COUNT // 3
        assert _answers(cluster) == expected  # from the index alone now

        # % and _ are characters of the needle, not LIKE's wildcards.
        for needle, uids in (("50%off", [COUNT + 1]), ("snake_case", [COUNT + 1])):
            assert _uid_search(lite, "TEXT", needle) == uids
            assert _uid_search(cluster, "TEXT", needle) == uids
        assert _uid_search(cluster, "SUBJECT", "sale") == [COUNT + 1, COUNT + 2]

        # An expunged message is gone from the answer and from the index.
        noon = expected["TEXT noon"]
        for client in (lite, cluster):
            client.uid("STORE", str(noon[0]), "+FLAGS", "(\\Deleted)")
            client.expunge()
            assert _uid_search(client, "TEXT", "noon") == noon[1:]
        assert _indexed(pg_dsn) == COUNT + 1

        # Mail delivered after the index was filled is found at once.
        late = f"To: {ALICE}\r\nSubject: late\r\n\r\nnoon tea\r\n"
        for server, client in ((sqlite, lite), (pg, cluster)):
            _send(server, late)
            client.noop()
            assert _uid_search(client, "BODY", '"noon tea"') == [COUNT + 3]
        assert FILLER.wait_idle(30)
        assert _indexed(pg_dsn) == COUNT + 2
        assert _answers(cluster) == _answers(lite)
        lite.logout()
        cluster.logout()
