"""The full-text search index: what it keeps, how it catches up, and that it
only ever narrows a SEARCH (the plain matcher's answer is the answer)."""

from __future__ import annotations

import base64
import sqlite3
from collections.abc import Container
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailstead.proto.imap.search_plan import AllOf, AnyOf, Contains, prefilter, text_candidates
from mailstead.store.account import Account
from mailstead.store.inspect import parse_query, search
from mailstead.store.mailbox import Mailbox
from mailstead.store.search_index import SEARCH_INDEX_NAME, trigrams
from mailstead.store.search_indexer import AccountTextIndex, BackgroundIndexer
from mailstead.store.search_text import MAX_INDEXED_CHARS, indexed_text


class ManualIndexer(BackgroundIndexer):
    """Remembers kicks instead of indexing: the test says when to catch up."""

    def __init__(self) -> None:
        super().__init__()
        self.kicked: list[int] = []

    def kick(self, account: AccountTextIndex, mailbox_id: int, folder: Path) -> None:
        self.kicked.append(mailbox_id)


def _account(tmp_path: Path) -> tuple[Account, Mailbox, ManualIndexer]:
    account = Account(tmp_path / "Maildir")
    manual = ManualIndexer()
    account.text_index.indexer = manual
    box = account.mailbox("INBOX")
    box.refresh()
    return account, box, manual


def _catch_up(account: Account, box: Mailbox) -> None:
    assert account.text_index.catch_up(box.id, box.path)


def _candidates(box: Mailbox, query: str) -> Container[int] | None:
    return text_candidates(box, parse_query(query).program)


def _fts_search(box: Mailbox, query: str) -> list[int]:
    """SEARCH as the IMAP server runs it: the index narrows, the matcher decides."""
    parsed = parse_query(query)
    narrowed = text_candidates(box, parsed.program)
    return [u for u in search(box, parsed) if narrowed is None or u in narrowed]


PLAIN = b"From: Bob <bob@example.net>\nSubject: lunch plans\n\nShall we meet at noon?\n"
QP_UTF8 = (
    b"From: =?utf-8?q?J=C3=BCrgen?= <jurgen@example.net>\n"
    b"Subject: =?utf-8?b?S8O2bG4gdHJpcA==?=\n"
    b"Content-Type: text/plain; charset=utf-8\n"
    b"Content-Transfer-Encoding: quoted-printable\n\n"
    b"Gr=C3=BC=C3=9Fe aus K=C3=B6ln, die Stra=C3=9Fe ist nass.\n"
)
B64_LATIN1 = (
    b"From: alice@example.org\nSubject: report\n"
    b"MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=XX\n\n"
    b"--XX\nContent-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: base64\n\n"
    + base64.b64encode("Déjà vu, garçon: quarterly figures".encode("latin-1"))
    + b"\n--XX\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n"
    + base64.b64encode(b"secretbinarypayload")
    + b"\n--XX--\n"
)


# --- what is kept -----------------------------------------------------------------


def test_decoded_text_of_encoded_parts_and_headers_is_kept() -> None:
    qp = indexed_text(QP_UTF8.replace(b"\n", b"\r\n"))
    assert "köln trip" in qp.fields and "jürgen" in qp.fields
    assert "grüsse aus köln, die strasse ist nass." in qp.text  # casefolded: ß is ss
    b64 = indexed_text(B64_LATIN1.replace(b"\n", b"\r\n"))
    assert "déjà vu, garçon" in b64.text
    assert "secretbinarypayload" not in b64.text  # not a text part: not searched
    assert qp.complete and b64.complete


def test_a_plain_message_is_kept_raw_and_addresses_as_read() -> None:
    text = indexed_text(b'From: "Doe, John" (work) <j@x.test>\r\n\r\nhello\r\n')
    assert 'from: "doe, john" (work) <j@x.test>' in text.text
    assert "doe, john <j@x.test>" in text.fields


def test_huge_input_is_cut_and_marked_incomplete() -> None:
    big = b"Subject: x\r\n\r\n" + b"a" * (MAX_INDEXED_CHARS + 10)
    text = indexed_text(big)
    assert not text.complete and len(text.text) == MAX_INDEXED_CHARS


def test_prefilter_of_programs() -> None:
    assert prefilter(parse_query("TEXT Hello").program) == Contains("text", "hello")
    assert prefilter(parse_query("SEEN SUBJECT lunch BODY ab").program) == Contains(
        "fields", "lunch"
    )
    assert prefilter(parse_query("OR BODY noon FROM bob").program) == AnyOf(
        (Contains("text", "noon"), Contains("fields", "bob"))
    )
    assert prefilter(parse_query("BODY noon TO carol").program) == AllOf(
        (Contains("text", "noon"), Contains("fields", "carol"))
    )
    for scanning in ("BODY ab", "NOT BODY noon", "OR BODY noon SEEN", "ALL"):
        assert prefilter(parse_query(scanning).program) is None, scanning


def test_trigrams_of_a_long_needle_are_bounded_and_spread() -> None:
    assert trigrams("abcd") == ["abc", "bcd"]
    many = trigrams("the quick brown fox jumps over the lazy dog")
    assert len(many) == 12 and many[0] == "the" and many[-1] == "dog"


# --- catching up ------------------------------------------------------------------


def test_search_before_during_and_after_catch_up(tmp_path: Path) -> None:
    account, box, manual = _account(tmp_path)
    uids = [box.append(m, [], None) for m in (PLAIN, QP_UTF8, B64_LATIN1)]
    # Nothing indexed: the index cannot say, SEARCH scans (and asks for a catch-up).
    assert _candidates(box, "BODY noon") is None
    assert manual.kicked == [box.id]
    _catch_up(account, box)
    found = _candidates(box, "BODY noon")
    assert found is not None and [u for u in uids if u in found] == [uids[0]]
    assert _fts_search(box, "BODY köln") == [uids[1]]
    assert _fts_search(box, "SUBJECT KÖLN") == [uids[1]]
    assert _fts_search(box, "TEXT garçon") == [uids[2]]
    assert _fts_search(box, "FROM jürgen") == [uids[1]]
    assert _fts_search(box, "HEADER content-type iso-8859-1") == []  # a part's header: body
    assert _fts_search(box, "BODY iso-8859-1") == [uids[2]]
    # Delivered after the catch-up: above the mark, found by reading it.
    late = box.append(b"Subject: late\r\n\r\nnoon again\r\n", [], None)
    box.refresh()
    found = _candidates(box, "BODY noon")
    assert found is not None and late in found
    assert _fts_search(box, "BODY noon") == [uids[0], late]
    _catch_up(account, box)
    assert account.text_index.search_index() is not None
    assert _fts_search(box, "BODY noon") == [uids[0], late]


def test_expunged_messages_leave_the_index(tmp_path: Path) -> None:
    account, box, _ = _account(tmp_path)
    first = box.append(PLAIN, [], None)
    second = box.append(PLAIN.replace(b"lunch", b"dinner"), [], None)
    _catch_up(account, box)
    box.expunge([first])
    _catch_up(account, box)
    index = account.text_index.search_index()
    assert index is not None and index.count() == 1
    assert _fts_search(box, "BODY noon") == [second]


def test_copy_and_move_reach_the_other_mailbox(tmp_path: Path) -> None:
    account, inbox, _ = _account(tmp_path)
    account.create("Archive")
    archive = account.mailbox("Archive")
    archive.refresh()
    uid = inbox.append(QP_UTF8, [], None)
    _catch_up(account, inbox)
    _catch_up(account, archive)
    ((_, copied),) = inbox.copy_to([uid], archive)
    inbox.expunge([uid])  # a MOVE
    archive.refresh()
    _catch_up(account, archive)
    _catch_up(account, inbox)
    assert _fts_search(archive, "BODY strasse") == [copied]
    assert _fts_search(inbox, "BODY strasse") == []


def test_rebuild_from_nothing(tmp_path: Path) -> None:
    account, box, _ = _account(tmp_path)
    uid = box.append(PLAIN, [], None)
    (account.root / SEARCH_INDEX_NAME).unlink(missing_ok=True)
    assert account.text_index.rebuild([(box.id, box.path)]) == 1
    assert _fts_search(box, 'TEXT "lunch plans"') == [uid]
    with sqlite3.connect(account.root / SEARCH_INDEX_NAME) as db:
        (n,) = db.execute("SELECT count(*) FROM docs").fetchone()
    assert n == 1


def test_incomplete_messages_are_always_candidates(tmp_path: Path) -> None:
    account, box, _ = _account(tmp_path)
    tail = b"the needle sits at the end"
    uid = box.append(b"Subject: big\r\n\r\n" + b"x" * MAX_INDEXED_CHARS + tail, [], None)
    _catch_up(account, box)
    assert _fts_search(box, "BODY needle") == [uid]


# --- FTS-assisted search is the plain search --------------------------------------

_WORDS = ["noon", "Köln", "straße", "lunch", "Plans", "naïve", "a-b", "ÉTÉ", "xyz", "q"]
_text = st.lists(st.sampled_from(_WORDS), min_size=0, max_size=6).map(" ".join)


@st.composite
def _messages(draw: st.DrawFn) -> bytes:
    sender = draw(_text).replace('"', "")
    head = f'From: "{sender}" (x) <bob@example.net>\n'.encode()
    return head + draw(_bodies())


@st.composite
def _bodies(draw: st.DrawFn) -> bytes:
    subject = draw(_text)
    body = draw(_text)
    kind = draw(st.sampled_from(["plain", "qp", "b64", "word", "raw8bit"]))
    if kind == "plain" and subject.isascii() and body.isascii():
        return f"Subject: {subject}\n\n{body}\n".encode()
    if kind == "raw8bit":
        return f"Subject: {subject}\n\n{body}\n".encode()
    if kind == "word":
        encoded = base64.b64encode(subject.encode()).decode()
        return f"Subject: =?utf-8?b?{encoded}?=\n\n{body}\n".encode()
    cte = "quoted-printable" if kind == "qp" else "base64"
    payload = body.encode()
    data = (
        base64.b64encode(payload)
        if kind == "b64"
        else "".join(f"={b:02X}" if b > 126 else chr(b) for b in payload).encode()
    )
    return (
        (
            f"Subject: {subject}\nContent-Type: text/plain; charset=utf-8\n"
            f"Content-Transfer-Encoding: {cte}\n\n"
        ).encode()
        + data
        + b"\n"
    )


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    messages=st.lists(_messages(), min_size=1, max_size=8),
    key=st.sampled_from(["BODY", "TEXT", "SUBJECT", "HEADER Subject", "FROM"]),
    needle=st.one_of(
        st.sampled_from(_WORDS),
        st.sampled_from(_WORDS).map(lambda w: w[1:]),  # a substring
        st.sampled_from(_WORDS).map(str.upper),
        st.text(alphabet="nokölaé ß", min_size=1, max_size=5),
    ),
)
def test_fts_assisted_search_equals_the_plain_matcher(
    tmp_path_factory: pytest.TempPathFactory, messages: list[bytes], key: str, needle: str
) -> None:
    account, box, _ = _account(tmp_path_factory.mktemp("fts"))
    for data in messages:
        box.append(data, [], None)
    _catch_up(account, box)
    quoted = '"' + needle.replace("\\", "\\\\").replace('"', '\\"') + '"'
    query = f"{key} {quoted}"
    assert _fts_search(box, query) == search(box, parse_query(query))
