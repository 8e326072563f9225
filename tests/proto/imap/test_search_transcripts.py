"""SEARCH over a selected mailbox, as C:/S: transcripts byte for byte.

The search grammar and matching alone are in ``test_search.py``.
"""

from __future__ import annotations

from pathlib import Path

from tests.proto.imap.imap_transcript import selected

# -- SEARCH (RFC 9051 §6.4.4, RFC 4731 ESEARCH) ---------------------------------------


def test_search_classic_and_esearch(root: Path) -> None:
    selected(root).run(r"""
        C: a SEARCH ALL
        S: * SEARCH 1 2 3
        S: a OK SEARCH completed
        C: b SEARCH SUBJECT two
        S: * SEARCH 2
        S: b OK SEARCH completed
        C: c SEARCH RETURN (MIN MAX COUNT ALL) ALL
        S: * ESEARCH (TAG "c") MIN 1 MAX 3 COUNT 3 ALL 1:3
        S: c OK SEARCH completed
        C: d UID SEARCH RETURN (COUNT) UNSEEN
        S: * ESEARCH (TAG "d") UID COUNT 3
        S: d OK SEARCH completed
        C: e SEARCH SUBJECT nothing-like-this
        S: * SEARCH
        S: e OK SEARCH completed
        C: f SEARCH RETURN (MIN) SUBJECT nothing-like-this
        S: * ESEARCH (TAG "f")
        S: f OK SEARCH completed
        C: g SEARCH CHARSET KOI8-R SUBJECT x
        S: g NO [BADCHARSET (UTF-8)] Only UTF-8 is supported
    """)


def test_search_in_imap4rev2_answers_esearch(root: Path) -> None:
    # RFC 9051 §6.4.4: IMAP4rev2 has no SEARCH response; no RETURN means ALL.
    t = selected(root)
    t.run("""
        C: a ENABLE IMAP4rev2
        S: * ENABLED IMAP4rev2
        S: a OK ENABLE completed
        C: b SEARCH SUBJECT o
        S: * ESEARCH (TAG "b") ALL 1:2
        S: b OK SEARCH completed
        C: c UID SEARCH FROM nobody-here
        S: * ESEARCH (TAG "c") UID
        S: c OK SEARCH completed
    """)


def test_search_save_with_min_keeps_only_the_minimum(root: Path) -> None:
    # RFC 5182 §2.4: SAVE with MIN (and no ALL/COUNT) saves just the minimum.
    selected(root).run("""
        C: a SEARCH RETURN (SAVE MIN) ALL
        S: * ESEARCH (TAG "a") MIN 1
        S: a OK SEARCH completed
        C: b FETCH $ (UID)
        S: * 1 FETCH (UID 1)
        S: b OK FETCH completed
    """)


def test_header_search_answers_the_same_from_remembered_fields(root: Path) -> None:
    t = selected(root)
    for tag in "ab":
        t.run(f"""
            C: {tag} SEARCH OR SUBJECT gr FROM carol
            S: * SEARCH 2 3
            S: {tag} OK SEARCH completed
        """)
    # A field outside the remembered ones still reads the message.
    t.run("""
        C: c SEARCH HEADER Message-ID 1@example
        S: * SEARCH 1
        S: c OK SEARCH completed
    """)


def test_search_charset_utf8(root: Path) -> None:
    t = selected(root)
    assert t.feed(b'a SEARCH CHARSET UTF-8 SUBJECT "gr\xc3\xbc\xc3\x9fe"\r\n') == (
        b"* SEARCH 3\r\na OK SEARCH completed\r\n"
    )
    t.run("""
        C: b SEARCH CHARSET UTF-8 SUBJECT {6}
        S: + Ready for literal data
    """)
    assert t.feed(b"gr\xc3\xbc\xc3\x9f\r\n") == b"* SEARCH 3\r\nb OK SEARCH completed\r\n"
