"""SEARCH through the full-text index, with imaplib, on mail delivered over SMTP.

The answers are the same before the background indexer has caught up (the
server reads what is not indexed), while it catches up, and after; an
expunge takes a message out of the index.
"""

from __future__ import annotations

import imaplib
import smtplib
import sqlite3
import time
from collections.abc import Iterator
from email.mime.text import MIMEText

import pytest

from mailstead.store.search_index import SEARCH_INDEX_NAME
from mailstead.store.search_indexer import BACKGROUND
from tests.e2e.harness import ServerHandle, client_tls_context

ALICE = "alice@example.test"
PASSWORD = "alice-pw"
COUNT = 45


def _deliver(server: ServerHandle) -> None:
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as smtp:
        for n in range(COUNT):
            if n % 3 == 0:  # quoted-printable UTF-8, encoded subject
                part = MIMEText(f"Grüße aus Köln, Nummer {n}", "plain", "utf-8")
                part.replace_header("Content-Transfer-Encoding", "quoted-printable")
                part.set_payload(f"Gr=C3=BC=C3=9Fe aus K=C3=B6ln, Nummer {n}\n")
                part["Subject"] = "=?utf-8?q?Stra=C3=9Fenfest?="
            elif n % 3 == 1:
                part = MIMEText(f"lunch at noon, item {n}\n", "plain", "us-ascii")
                part["Subject"] = f"plans {n}"
            else:
                part = MIMEText(f"quarterly figures {n}\n", "plain", "utf-8")  # base64
                part["Subject"] = "report"
            part["From"] = "Carol Example <carol@remote.test>"
            part["To"] = ALICE
            smtp.sendmail("carol@remote.test", [ALICE], part.as_bytes())


@pytest.fixture
def imap(server: ServerHandle) -> Iterator[imaplib.IMAP4]:
    client = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=10)
    client.starttls(client_tls_context())
    client.login(ALICE, PASSWORD)
    yield client
    client.logout()


def _uid_search(imap: imaplib.IMAP4, *criteria: str) -> list[int]:
    typ, data = imap.uid("SEARCH", *criteria)
    assert typ == "OK", data
    return [int(n) for n in data[0].split()]


def _indexed(server: ServerHandle) -> int:
    path = server.maildir(ALICE) / SEARCH_INDEX_NAME
    if not path.exists():
        return 0
    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT count(*) FROM docs").fetchone()[0])


QUERIES = [
    ("TEXT", "noon"),
    ("BODY", "köln"),
    ("BODY", "STRASSE"),  # no: the body says Grüße, the subject Straßenfest
    ("TEXT", "straßenfest"),
    ("SUBJECT", "plans 1"),
    ("FROM", "carol example"),
    ("BODY", "figures 5"),
    ("TEXT", "zz"),  # too short for a trigram: scanned
]


def _answers(imap: imaplib.IMAP4) -> dict[str, list[int]]:
    out = {}
    for key, needle in QUERIES:
        literal = needle.encode()
        imap.literal = literal  # type: ignore[attr-defined]
        out[f"{key} {needle}"] = _uid_search(imap, "CHARSET", "UTF-8", key)
    return out


def test_search_is_right_before_during_and_after_indexing(
    server: ServerHandle, imap: imaplib.IMAP4
) -> None:
    _deliver(server)
    imap.select("INBOX")
    # Nothing is indexed before the first SEARCH asks for it.
    before = _answers(imap)
    assert len(before["BODY köln"]) == COUNT // 3
    assert before["BODY STRASSE"] == []
    assert len(before["TEXT straßenfest"]) == COUNT // 3
    assert before["SUBJECT plans 1"] == [2, 11, 14, 17, 20]  # plans 1, 10, 13, 16, 19
    assert len(before["FROM carol example"]) == COUNT
    during = _answers(imap)
    assert during == before
    assert BACKGROUND.wait_idle(30)
    assert _indexed(server) == COUNT
    after = _answers(imap)
    assert after == before

    # An expunge takes the message out of the answers and, soon, of the index.
    noon = after["TEXT noon"]
    imap.uid("STORE", str(noon[0]), "+FLAGS", "(\\Deleted)")
    imap.expunge()
    assert _answers(imap)["TEXT noon"] == noon[1:]
    assert BACKGROUND.wait_idle(30)
    deadline = time.monotonic() + 10
    while _indexed(server) != COUNT - 1 and time.monotonic() < deadline:
        _uid_search(imap, "TEXT", "noon")  # each SEARCH asks for a catch-up
        BACKGROUND.wait_idle(10)
    assert _indexed(server) == COUNT - 1


def test_new_mail_after_indexing_is_found_at_once(
    server: ServerHandle, imap: imaplib.IMAP4
) -> None:
    _deliver(server)
    imap.select("INBOX")
    _uid_search(imap, "TEXT", "noon")
    assert BACKGROUND.wait_idle(30)
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as smtp:
        smtp.sendmail(
            "carol@remote.test", [ALICE], f"To: {ALICE}\r\nSubject: late\r\n\r\nnoon tea\r\n"
        )
    imap.noop()
    found = _uid_search(imap, "BODY", '"noon tea"')
    assert found == [COUNT + 1]
