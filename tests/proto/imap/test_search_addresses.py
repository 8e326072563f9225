"""SEARCH FROM/TO/CC/BCC against address fields as a reader sees them, as C:/S: transcripts.

RFC 9051 §6.4.4: the string matches a case-insensitive substring of the
field. Addresses are matched both as sent (encoded words decoded) and as
read: comments dropped (a lone one is the display name), quoting undone,
words spaced by one space (RFC 5322 §3.4).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mailstead.proto.imap.search_match import address_text
from tests.proto.imap.imap_transcript import WHEN, IMAPTranscript, deliver

MAILBOX = (
    b"From: sender@example.test\r\nTo: rcpt@example.test\r\n\r\n1\r\n",
    b"From: Sam Sender <sender@example.test>\r\nTo: Rita <rcpt@example.test>\r\n\r\n2\r\n",
    # Comments inside the address: only a reader of the address finds it whole.
    b"From: <sender (the boss)@ (home) example.test>\r\nTo: <rcpt@example.test>\r\n\r\n3\r\n",
    # A comment after the address is the display name.
    b"From: sender@example.test (Sam Sender)\r\nTo: rcpt@example.test (Rita)\r\n\r\n4\r\n",
    b"From: one@example.test, two@example.test\r\n\r\n5\r\n",
    b"To: team: m1@example.test, m2@example.test;,\r\n  crew: m3@example.test;\r\n\r\n6\r\n",
    b'From: "Bob \\"The Builder\\" Smith" <bob@example.test>\r\n\r\n7\r\n',
    b"From: =?UTF-8?Q?J=C3=B6rg?=\r\n\t=?UTF-8?Q?_M=C3=BCller?= <jm@example.test>\r\n\r\n8\r\n",
    b"From: =?ISO-8859-1?Q?=93Quoted=94?= <q@example.test>\r\n\r\n9\r\n",
    b"From: Tab\r\n\tFolded <tf@example.test>\r\n\r\n10\r\n",
)


@pytest.fixture
def box(tmp_path: Path) -> IMAPTranscript:
    root = tmp_path / "Maildir"
    deliver(root, *MAILBOX, when=WHEN)
    t = IMAPTranscript(root).login()
    assert t.say("s SELECT INBOX").endswith("s OK [READ-WRITE] SELECT completed\r\n")
    return t


def test_whole_and_partial_addresses(box: IMAPTranscript) -> None:
    box.run("""
        C: a SEARCH FROM sender@example.test
        S: * SEARCH 1 2 3 4
        S: a OK SEARCH completed
        C: b SEARCH FROM ender@exam
        S: * SEARCH 1 2 3 4
        S: b OK SEARCH completed
        C: c SEARCH TO RCPT@EXAMPLE.TEST
        S: * SEARCH 1 2 3 4
        S: c OK SEARCH completed
        C: d SEARCH FROM two@example
        S: * SEARCH 5
        S: d OK SEARCH completed
    """)


def test_display_names_quoted_commented_encoded_folded(box: IMAPTranscript) -> None:
    box.run("""
        C: a SEARCH FROM "sam sender"
        S: * SEARCH 2 4
        S: a OK SEARCH completed
        C: b SEARCH FROM "Sam Sender <sender@"
        S: * SEARCH 2 4
        S: b OK SEARCH completed
        C: c SEARCH FROM "Bob \\"The Builder\\" Smith"
        S: * SEARCH 7
        S: c OK SEARCH completed
        C: d SEARCH CHARSET UTF-8 FROM "jörg müller"
        S: * SEARCH 8
        S: d OK SEARCH completed
        C: e SEARCH CHARSET UTF-8 FROM "“quoted”"
        S: * SEARCH 9
        S: e OK SEARCH completed
        C: f SEARCH FROM "tab folded"
        S: * SEARCH 10
        S: f OK SEARCH completed
        C: g SEARCH FROM boss
        S: * SEARCH 3
        S: g OK SEARCH completed
    """)


def test_groups(box: IMAPTranscript) -> None:
    box.run("""
        C: a SEARCH TO team
        S: * SEARCH 6
        S: a OK SEARCH completed
        C: b SEARCH TO crew
        S: * SEARCH 6
        S: b OK SEARCH completed
        C: c SEARCH TO m3@example.test
        S: * SEARCH 6
        S: c OK SEARCH completed
        C: d SEARCH TO m4
        S: * SEARCH
        S: d OK SEARCH completed
        C: e SEARCH HEADER TO ""
        S: * SEARCH 1 2 3 4 6
        S: e OK SEARCH completed
    """)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (b"<u (c)@ (c) d.example>", "u@d.example"),
        (b"u@d.example (Real Name)", "Real Name <u@d.example>"),
        (b'"Smith, Bob" <b@x.example>', "Smith, Bob <b@x.example>"),
        (b"=?utf-8?q?Bj=C3=B6rn_?= <b@x.example>", "Björn <b@x.example>"),
        (b"g: a@x.example, b@x.example;, c@x.example", "g: a@x.example, b@x.example, c@x.example"),
        (b"Undisclosed recipients:;", "Undisclosed recipients:"),
        (b"", ""),
        (b"(only a comment)", ""),
    ],
)
def test_address_text(value: bytes, text: str) -> None:
    assert address_text(value) == text
