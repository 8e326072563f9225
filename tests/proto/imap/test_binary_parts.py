"""BINARY (RFC 3516) and the odd sections of RFC 9051 §6.4.5, as C:/S: transcripts.

The mailbox holds messages chosen for their edges: a quoted-printable part
with every trap of RFC 2045 §6.7, a message with no body at all, one with
an empty body, and a multipart whose first part is empty.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.proto.imap.imap_transcript import WHEN, IMAPTranscript, deliver

# RFC 2045 §6.7: trailing white space is padding (rule 3), "= " before the
# line break is a soft break with padding (rule 5), "=b" at the end is no
# escape (note 2), lower-case hex is read too (note 1), line ends are CRLF; the
# CRLF before the boundary belongs to the boundary (RFC 2046 §5.1.1).
QP_BODY = b"".join(
    (
        b"hello   \r\n",
        b"foo=09bar\r\n",
        b"foo=09 =09b=  \r\n",
        b"ar\r\n",
        b"50=25 off, a=b\r\n",
        b"caf=c3=a9\r\n",
    )
)
QP = (
    b"From: qp@example.test\r\nSubject: qp\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
    b"--b\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n\r\n" + QP_BODY + b"--b--\r\n"
)
NO_BODY = b"From: a@example.test\r\nSubject: no body\r\n"
EMPTY_BODY = b"From: a@example.test\r\nSubject: empty\r\n\r\n"
EMPTY_PART = (
    b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
    b"--b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b--\r\n"
)
NESTED = (
    b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
    b"--b\r\nContent-Type: message/rfc822\r\n\r\n"
    b"Subject: inner\r\n\r\ninner body\r\n--b--\r\n"
)


@pytest.fixture
def box(tmp_path: Path) -> IMAPTranscript:
    root = tmp_path / "Maildir"
    deliver(root, QP, NO_BODY, EMPTY_BODY, EMPTY_PART, NESTED, when=WHEN)
    t = IMAPTranscript(root).login()
    assert t.say("s SELECT INBOX").endswith("s OK [READ-WRITE] SELECT completed\r\n")
    return t


def test_quoted_printable_decoded_per_rfc_2045(box: IMAPTranscript) -> None:
    # RFC 3516 §4.2: BINARY.SIZE is the size of the decoded part, BINARY its octets.
    box.run("""
        C: a FETCH 1 (BINARY.SIZE[1] BINARY.PEEK[1])
        S: * 1 FETCH (BINARY.SIZE[1] 46 BINARY[1] {46}
        S: hello
        S: foo\tbar
        S: foo\t \tbar
        S: 50% off, a=b
        S: café)
        S: a OK FETCH completed
    """)


def test_partial_binary_names_its_origin(box: IMAPTranscript) -> None:
    # RFC 3516 §4.2 / RFC 9051 §7.5.2: BINARY[<section>]<<number>>, the offset
    # counted in the decoded data; past the end is an empty string.
    box.run("""
        C: a FETCH 1 (BINARY.PEEK[1]<0.5> BINARY.PEEK[1]<43.99> BINARY.PEEK[1]<99.1>)
        S: * 1 FETCH (BINARY[1]<0> "hello" BINARY[1]<43> {3}
        S: fé BINARY[1]<99> "")
        S: a OK FETCH completed
        C: b FETCH 1 (BODY.PEEK[1]<0.5> BINARY.PEEK[]<0.4>)
        S: * 1 FETCH (BODY[1]<0> "hello" BINARY[]<0> "From")
        S: b OK FETCH completed
    """)


def test_literal8_append_and_binary_fetch_give_the_octets_back(box: IMAPTranscript) -> None:
    # RFC 3516 §4.3: APPEND takes a literal8; BINARY gives NUL back in a literal8,
    # BODY (a literal, no NUL allowed, RFC 9051 §9) shows 0x80 in its place.
    msg = (
        "From: a@example.test\r\nContent-Type: application/octet-stream\r\n"
        "Content-Transfer-Encoding: binary\r\n\r\n\x00\x01\r\nz"
    )
    said = box.feed(f"a APPEND INBOX ~{{{len(msg)}}}\r\n".encode())
    assert said == b"+ Ready for literal data\r\n"
    said = box.feed(msg.encode() + b"\r\n")
    assert said.endswith(b"] APPEND completed\r\n") and b"a OK [APPENDUID " in said
    box.run("""
        C: b FETCH 6 (BINARY.PEEK[1] BINARY.SIZE[1] BINARY.PEEK[1]<1.3>)
        S: * 6 FETCH (BINARY[1] ~{5}
        S: \x00\x01
        S: z BINARY.SIZE[1] 5 BINARY[1]<1> {3}
        S: \x01
        S: )
        S: b OK FETCH completed
    """)
    assert box.feed(b"c FETCH 6 BODY.PEEK[1]\r\n") == (
        b"* 6 FETCH (BODY[1] {5}\r\n\x80\x01\r\nz)\r\nc OK FETCH completed\r\n"
    )


def test_a_literal_with_nul_is_refused() -> None:
    # RFC 9051 §9: literal = *CHAR8, which has no NUL; only literal8 may carry one.
    from mailstead.proto.imap.parser import BadCommand, CommandParser

    p = CommandParser(authenticated=True)
    p.receive_data(b"a APPEND INBOX {3}\r\n")
    p.next_event()  # the "+"
    p.receive_data(b"a\0b\r\n")
    assert p.next_event() == BadCommand("a", "NUL octet in literal")


def test_odd_sections(box: IMAPTranscript) -> None:
    # RFC 9051 §6.4.5: a non-multipart message has part 1, its body; a message
    # without a body has an empty one; a part number past the last, or TEXT
    # and HEADER of a part that is no message, are empty strings.
    box.run("""
        C: a FETCH 2 (BODY.PEEK[1] BODY.PEEK[TEXT] BINARY.PEEK[1] BINARY.SIZE[1] BODY.PEEK[2])
        S: * 2 FETCH (BODY[1] "" BODY[TEXT] "" BINARY[1] "" BINARY.SIZE[1] 0 BODY[2] "")
        S: a OK FETCH completed
        C: b FETCH 3 (BODY.PEEK[1] BODY.PEEK[1]<0.10> BODY.PEEK[1.1] BODY.PEEK[1.TEXT])
        S: * 3 FETCH (BODY[1] "" BODY[1]<0> "" BODY[1.1] "" BODY[1.TEXT] "")
        S: b OK FETCH completed
        C: c FETCH 4 (BODY.PEEK[1] BODY.PEEK[1.MIME] BODY.PEEK[2] BODY.PEEK[3] BINARY.SIZE[3])
        S: * 4 FETCH (BODY[1] "" BODY[1.MIME] "" BODY[2] "x" BODY[3] "" BINARY.SIZE[3] 0)
        S: c OK FETCH completed
        C: d FETCH 5 (BODY.PEEK[1.TEXT] BODY.PEEK[1.1] BODY.PEEK[1.2] BODY.PEEK[2.TEXT])
        S: * 5 FETCH (BODY[1.TEXT] "inner body" BODY[1.1] "inner body" BODY[1.2] "" BODY[2.TEXT] "")
        S: d OK FETCH completed
    """)


def test_bodystructure_of_a_message_without_body(box: IMAPTranscript) -> None:
    plain = '("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 0 0 NIL NIL NIL NIL)'
    box.run(f"""
        C: a FETCH 2 BODYSTRUCTURE
        S: * 2 FETCH (BODYSTRUCTURE {plain})
        S: a OK FETCH completed
    """)
