"""Hostile peers: smuggling, floods, oversize input, injection. One line per attack."""

from __future__ import annotations

import pytest

from mailstead.limits import SMTPLimits
from mailstead.proto.smtp.events import Closing, MailFrom, Message
from tests.proto.smtp.transcript import Transcript

BARE_CR = b"550 5.6.0 Message contains a bare CR (RFC 5321 section 2.3.8)\r\n"
SMUGGLED = b"MAIL FROM:<evil@bad.example>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\nforged\r\n"


def _in_data(limits: SMTPLimits | None = None) -> Transcript:
    t = Transcript(limits=limits).handshake()
    said = t.feed(b"MAIL FROM:<carol@remote.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n")
    assert said.endswith(b"354 End data with <CR><LF>.<CR><LF>\r\n")
    return t


# -- SMTP smuggling: only <CRLF>.<CRLF> ends the data --------------------------------


# Each fake end is followed by a smuggled second transaction and, later, the
# real end. Bare LF is a content line end (docs/quirks.md); bare CR refuses the
# message. Either way: one outcome, one reply, and the smuggled MAIL never runs.
@pytest.mark.parametrize(
    ("fake_end", "outcome"),
    [
        (b"\n.\n", b"250 2.0.0 Queued as M1\r\n"),
        (b"\n.\r\n", b"250 2.0.0 Queued as M1\r\n"),
        (b"\r\n.\n", b"250 2.0.0 Queued as M1\r\n"),
        (b"\r.\r", BARE_CR),
        (b"\r\n.\r", BARE_CR),
        (b"\r.\r\n", BARE_CR),
        (b"\n.\r", BARE_CR),
    ],
)
def test_smuggled_end_of_data_is_never_an_end(fake_end: bytes, outcome: bytes) -> None:
    t = _in_data()
    said = t.feed(b"Subject: one\r\n\r\nbody" + fake_end + SMUGGLED + b".\r\n")
    assert said == outcome
    assert len(t.messages) <= 1
    assert [e.sender for e in t.events if isinstance(e, MailFrom)] == ["carol@remote.test"]
    if t.messages:
        assert b"MAIL FROM:<evil@bad.example>" in t.messages[0].content
        assert t.messages[0].content.count(b"\r") == t.messages[0].content.count(b"\n")
    assert t.feed(b"NOOP\r\n") == b"250 2.0.0 OK\r\n"


@pytest.mark.parametrize("split", range(1, 8))
def test_smuggling_split_across_reads_gives_the_same_single_outcome(split: int) -> None:
    t = _in_data()
    data = b"body\n.\r\n" + SMUGGLED + b".\r\n"
    said = t.feed(data[:split]) + t.feed(data[split:])
    assert said == b"250 2.0.0 Queued as M1\r\n" and len(t.messages) == 1


# -- floods and oversize input -------------------------------------------------------


def test_a_megabyte_line_gets_one_500_and_memory_stays_bounded() -> None:
    t = Transcript().handshake()
    said = b""
    for _ in range(16):
        said += t.feed(b"X" * 65536)
        assert t.server.buffered <= 4096
    said += t.feed(b"\r\nNOOP\r\n")
    assert said == b"500 5.5.2 Line too long\r\n250 2.0.0 OK\r\n"


def test_an_overlong_line_ending_in_the_same_read_spares_the_next_command() -> None:
    t = Transcript(limits=SMTPLimits(command_line=100)).handshake()
    said = t.feed(b"A" * 150 + b"\r\nNOOP\r\n")
    assert said == b"500 5.5.2 Line too long\r\n250 2.0.0 OK\r\n"
    assert t.feed(b"NOOP\r\n") == b"250 2.0.0 OK\r\n"


def test_ten_thousand_recipients_get_452_beyond_the_limit_and_no_error_close() -> None:
    limits = SMTPLimits(recipients_per_message=100, errors_per_session=5)
    t = Transcript(limits=limits).handshake()
    t.feed(b"MAIL FROM:<carol@remote.test>\r\n")
    said = t.feed(b"RCPT TO:<alice@example.test>\r\n" * 10_000)
    replies = said.split(b"\r\n")[:-1]
    assert replies[:100] == [b"250 2.1.5 Recipient OK"] * 100
    assert replies[100:] == [b"452 4.5.3 Too many recipients"] * 9_900
    assert not t.closed
    t.run("""
    C: RSET
    S: 250 2.0.0 OK
    C: MAIL FROM:<carol@remote.test>
    S: 250 2.1.0 Sender OK
    """)


def test_error_flood_closes_with_421() -> None:
    t = Transcript(limits=SMTPLimits(errors_per_session=3)).handshake()
    said = t.feed(b"BOGUS\r\n" * 10)
    assert said == b"500 5.5.1 Command unrecognized\r\n" * 3 + (
        b"421 4.7.0 Too many errors, closing connection\r\n"
    )
    assert t.closed and t.server.buffered == 0
    assert t.feed(b"NOOP\r\n") == b""


def test_command_flood_closes_with_421() -> None:
    t = Transcript(limits=SMTPLimits(commands_per_session=5)).handshake()  # EHLO is one
    said = t.feed(b"NOOP\r\n" * 10)
    assert said == b"250 2.0.0 OK\r\n" * 4 + b"421 4.7.0 Too many commands, closing connection\r\n"
    assert t.closed


def test_messages_per_session() -> None:
    t = Transcript(limits=SMTPLimits(messages_per_session=1)).handshake()
    one = b"MAIL FROM:<c@remote.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\nx\r\n.\r\n"
    assert t.feed(one).endswith(b"250 2.0.0 Queued as M1\r\n")
    assert t.feed(one) == b"421 4.7.0 Too many messages in one session\r\n"
    assert t.closed


def test_oversize_data_is_refused_at_its_end_with_memory_bounded() -> None:
    t = _in_data(SMTPLimits(message_size=1000))
    for _ in range(32):
        assert t.feed(b"0123456789abcdef" * 4095 + b"\r\n") == b""
        assert t.server.buffered <= 1000 + 2
    assert t.feed(b".\r\n") == b"552 5.3.4 Message size exceeds fixed maximum message size\r\n"
    assert t.messages == []
    t.run("""
    C: MAIL FROM:<carol@remote.test>
    C: RCPT TO:<alice@example.test>
    C: DATA
    S: 250 2.1.0 Sender OK
    S: 250 2.1.5 Recipient OK
    S: 354 End data with <CR><LF>.<CR><LF>
    C: small
    C: .
    S: 250 2.0.0 Queued as M1
    """)


def test_oversize_data_in_one_read_is_refused() -> None:
    t = _in_data(SMTPLimits(message_size=10))
    assert t.feed(b"0123456789\r\n.\r\nNOOP\r\n") == (
        b"552 5.3.4 Message size exceeds fixed maximum message size\r\n250 2.0.0 OK\r\n"
    )


def test_oversize_bdat_is_refused_with_memory_bounded() -> None:
    t = Transcript(limits=SMTPLimits(message_size=1000)).handshake()
    t.feed(b"MAIL FROM:<carol@remote.test>\r\nRCPT TO:<alice@example.test>\r\n")
    too_big = b"552 5.3.4 Message size exceeds fixed maximum message size\r\n"
    assert t.feed(b"BDAT 1048576\r\n") == b""
    for _ in range(16):
        assert t.feed(b"z" * 65536) in (b"", too_big)
        assert t.server.buffered == 0
    assert t.feed(b"BDAT 1 LAST\r\nz") == too_big
    assert t.messages == []
    t.run("""
    C: MAIL FROM:<carol@remote.test>
    S: 250 2.1.0 Sender OK
    """)


def test_message_exactly_at_the_limit_is_accepted() -> None:
    t = _in_data(SMTPLimits(message_size=10))
    assert t.feed(b"01234567\r\n.\r\n") == b"250 2.0.0 Queued as M1\r\n"


# -- one-line attacks on the command parser -----------------------------------------


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        (b"\xff\xfe\r\n", b"500 5.5.2 Command is not valid UTF-8\r\n"),
        (b"NOOP \xc3\x28\r\n", b"500 5.5.2 Command is not valid UTF-8\r\n"),
        (b"\r\n", b"500 5.5.1 Command unrecognized\r\n"),
        (b"\x00\r\n", b"500 5.5.1 Command unrecognized\r\n"),
        (b"NOOP\rMAIL FROM:<evil@bad.example>\r\n", b"500 5.5.1 Command unrecognized\r\n"),
        ("maıl FROM:<evil@bad.example>\r\n".encode(), b"500 5.5.1 Command unrecognized\r\n"),
        ("rſet\r\n".encode(), b"500 5.5.1 Command unrecognized\r\n"),
        (b"NOOP\n", b"250 2.0.0 OK\r\n"),  # bare LF ends a command line (Postfix does too)
        (b"EHLO a\rb\r\n", None),
        (
            b"VRFY \r\n250 fake\r\n",
            b"501 5.5.4 Syntax: VRFY <address>\r\n500 5.5.1 Command unrecognized\r\n",
        ),
        ("MAIL FROM:<c@remote.test> SIZE=\u0663\r\n".encode(), b"501 5.5.4 Bad SIZE value\r\n"),
    ],
)
def test_hostile_command_line(line: bytes, reply: bytes | None) -> None:
    t = Transcript().handshake()
    said = t.feed(line)
    if reply is not None:
        assert said == reply
    # Whatever came in, each reply line is one well-formed line of ours.
    for out in said.split(b"\r\n")[:-1]:
        assert b"\r" not in out and b"\n" not in out and out[:3].isdigit()
    assert not t.closed


@pytest.mark.parametrize(
    "name", ["a\rb", "evil\r250 fake", "x\x0b\x0cy", "\u2028name", "\x00", "名前.example"]
)
def test_client_text_never_injects_a_reply_line(name: str) -> None:
    # RFC 5321 §4.1.1.1: none of these is a domain; the refusal echoes nothing.
    t = Transcript()
    t.output()
    said = t.feed(f"EHLO {name}\r\n".encode())
    assert said == b"501 5.5.2 EHLO takes one domain name or address literal\r\n"


@pytest.mark.parametrize(
    "line", [b"GET / HTTP/1.1\r\n", b"POST /x HTTP/1.0\r\n", b"CONNECT mx:25 HTTP/1.1\r\n"]
)
def test_http_request_is_a_cross_protocol_attack_and_ends_the_session(line: bytes) -> None:
    t = Transcript()
    t.output()
    said = t.feed(line + b"Host: mx.example.test\r\n\r\n")
    assert said == b"221 2.7.0 This is an SMTP server, closing connection\r\n"
    assert t.events[-1] == Closing("forbidden command") and t.closed


def test_pipelined_data_body_behind_a_rejected_recipient_is_not_a_message() -> None:
    t = Transcript().handshake()
    said = t.feed(b"MAIL FROM:<c@remote.test>\r\nRCPT TO:<nobody@example.test>\r\nDATA\r\n")
    assert said.endswith(b"554 5.5.1 No valid recipients\r\n")
    assert not t.server.in_data and t.of_type(Message) == []


def test_an_overlong_line_that_hits_the_error_limit_closes_cleanly() -> None:
    t = Transcript(limits=SMTPLimits(command_line=100, errors_per_session=2)).handshake()
    said = t.feed(b"BOGUS\r\n" + b"A" * 150 + b"\r\nNOOP\r\n")
    assert said == (
        b"500 5.5.1 Command unrecognized\r\n500 5.5.2 Line too long\r\n"
        b"421 4.7.0 Too many errors, closing connection\r\n"
    )
    assert t.closed and t.server.buffered == 0


@pytest.mark.parametrize("piece", [1, 7, 99, 100, 101, 4096])
def test_overlong_line_in_pieces_of_any_size_is_answered_once(piece: int) -> None:
    t = Transcript(limits=SMTPLimits(command_line=100)).handshake()
    line = b"B" * 1000 + b"\r\nNOOP\r\n"
    said = b"".join(t.feed(line[i : i + piece]) for i in range(0, len(line), piece))
    assert said == b"500 5.5.2 Line too long\r\n250 2.0.0 OK\r\n"
    assert t.server.buffered == 0


def test_a_line_exactly_at_the_limit_is_a_command() -> None:
    t = Transcript(limits=SMTPLimits(command_line=100)).handshake()
    assert t.feed(b"NOOP " + b"x" * 94 + b"\r\n") == b"250 2.0.0 OK\r\n"
