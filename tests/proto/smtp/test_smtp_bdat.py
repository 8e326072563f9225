"""CHUNKING (RFC 3030): BDAT octet counts, LAST, and staying in step when refused."""

from __future__ import annotations

import pytest

from mailstead.proto.smtp.events import Closing, MailFrom
from tests.proto.smtp.transcript import Transcript


def _ready() -> Transcript:
    t = Transcript().handshake()
    t.run("""
    C: MAIL FROM:<carol@remote.test> BODY=8BITMIME
    C: RCPT TO:<alice@example.test>
    S: 250 2.1.0 Sender OK
    S: 250 2.1.5 Recipient OK
    """)
    return t


def test_chunks_are_joined_without_dot_stuffing() -> None:
    t = _ready()
    assert t.feed(b"BDAT 9\r\n.a\r\n.\r\n..") == b"250 2.0.0 9 octets received\r\n"
    assert t.feed(b"BDAT 4 LAST\r\n") == b""
    assert t.feed(b"x\r\n") == b""  # three of four octets
    assert t.feed(b".") == b"250 2.0.0 Queued as M1\r\n"
    assert [m.content for m in t.messages] == [b".a\r\n.\r\n..x\r\n."]


def test_bdat_0_last_ends_the_message() -> None:
    t = _ready()
    t.run("""
    C: BDAT 5
    C: abc
    S: 250 2.0.0 5 octets received
    C: BDAT 0 LAST
    S: 250 2.0.0 Queued as M1
    """)
    assert t.messages[0].content == b"abc\r\n"


def test_empty_message_by_bdat_0_last() -> None:
    t = _ready()
    assert t.feed(b"BDAT 0 LAST\r\n") == b"250 2.0.0 Queued as M1\r\n"
    assert t.messages[0].content == b""


def test_chunk_bytes_that_look_like_commands_are_not_executed() -> None:
    t = _ready()
    chunk = b"RSET\r\nMAIL FROM:<evil@bad.example>\r\nQUIT\r\n"
    said = t.feed(b"BDAT %d LAST\r\n" % len(chunk) + chunk + b"NOOP\r\n")
    assert said == b"250 2.0.0 Queued as M1\r\n250 2.0.0 OK\r\n"
    assert t.messages[0].content == chunk
    assert [e.sender for e in t.of_type(MailFrom)] == ["carol@remote.test"]
    assert not t.closed


def test_bdat_without_mail_consumes_the_chunk_and_says_503() -> None:
    t = Transcript().handshake()
    said = t.feed(b"BDAT 12 LAST\r\nQUIT\r\nQUIT\r\nNOOP\r\n")
    assert said == b"503 5.5.1 Send MAIL first\r\n250 2.0.0 OK\r\n"
    assert t.messages == [] and not t.closed


def test_bdat_without_recipients_consumes_the_chunk_and_says_554() -> None:
    t = Transcript().handshake()
    t.run("""
    C: MAIL FROM:<carol@remote.test>
    C: RCPT TO:<nobody@example.test>
    C: BDAT 6 LAST
    C: QUIT
    C: NOOP
    S: 250 2.1.0 Sender OK
    S: 550 5.1.1 No such user here
    S: 554 5.5.1 No valid recipients
    S: 250 2.0.0 OK
    """)


@pytest.mark.parametrize(
    "line",
    [
        b"BDAT\r\n",
        b"BDAT x\r\n",
        b"BDAT 10 NOW\r\n",
        b"BDAT 1 LAST 2\r\n",
        b"BDAT -1\r\n",
        "BDAT ²\r\n".encode(),
        b"BDAT 123456789012345678901\r\n",
    ],
)
def test_bad_bdat_syntax_cannot_be_resynchronised_so_the_session_ends(line: bytes) -> None:
    t = _ready()
    said = t.feed(line + b"NOOP\r\n")
    assert said == (
        b"501 5.5.4 Syntax: BDAT size [LAST]\r\n"
        b"421 4.5.0 Cannot resynchronise after bad BDAT, closing\r\n"
    )
    assert t.events[-1] == Closing("bad BDAT") and t.closed


def test_data_and_rcpt_after_bdat_are_bad_sequences() -> None:
    _ready().run("""
    C: BDAT 3
    C: a
    S: 250 2.0.0 3 octets received
    C: DATA
    S: 503 5.5.1 Bad sequence of commands
    C: RCPT TO:<bob@example.test>
    S: 503 5.5.1 Bad sequence of commands
    C: RSET
    S: 250 2.0.0 OK
    """)


def test_bare_cr_in_a_chunk_refuses_the_message() -> None:
    t = _ready()
    said = t.feed(b"BDAT 5 LAST\r\na\rb\r\n")
    assert said == b"550 5.6.0 Message contains a bare CR (RFC 5321 section 2.3.8)\r\n"
    assert t.messages == []
