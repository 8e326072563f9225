"""Hostile and broken input: one line each, the server stays bounded."""

from __future__ import annotations

import pytest

from mailstead.limits import POP3Limits
from mailstead.proto.errors import LocalProtocolError
from tests.proto.pop3.transcript import GREETING, Transcript


def _fresh(limits: POP3Limits | None = None) -> Transcript:
    t = Transcript(limits=limits)
    assert t.output() == f"{GREETING}\r\n".encode()
    return t


def test_command_line_over_255_octets_is_refused() -> None:
    t = _fresh()
    # RFC 2449 §4: 255 octets including CRLF are allowed, 256 are not.
    assert t.feed(b"USER " + b"a" * 249 + b"\r\n") == b"-ERR Line too long\r\n"
    assert t.feed(b"USER " + b"a" * 248 + b"\r\n") == b"+OK Send PASS\r\n"


def test_auth_line_may_be_longer_than_255() -> None:
    t = _fresh()
    assert t.feed(b"AUTH PLAIN " + b"A" * 400 + b"\r\n") == b"-ERR Malformed PLAIN response\r\n"


def test_endless_line_is_dropped_as_it_arrives_and_what_follows_is_read() -> None:
    t = _fresh()
    assert t.feed(b"X" * 5000) == b"-ERR Line too long\r\n"
    assert t.server.buffered == 0
    assert t.feed(b"Y" * 5000) == b""
    assert t.server.buffered == 0
    assert t.feed(b"ZZZ\r\nQUIT\r\n") == b"+OK Mailstead POP3 signing off\r\n"


def test_error_flood_closes_the_connection() -> None:
    t = _fresh(POP3Limits(errors_per_session=3))
    said = t.feed(b"FOO\r\nBAR\r\nBAZ\r\nQUIT\r\n")
    assert said == (
        b"-ERR Unknown command\r\n-ERR Unknown command\r\n-ERR Unknown command\r\n"
        b"-ERR Too many errors, closing connection\r\n"
    )
    assert t.closed
    assert t.feed(b"QUIT\r\n") == b""


@pytest.mark.parametrize(
    "line, reply",
    [
        (b"\xff\xfe\r\n", b"-ERR Command is not valid UTF-8\r\n"),
        (b"\r\n", b"-ERR Unknown command\r\n"),
        (b"qu\xc4\xb1t\r\n", b"-ERR Unknown command\r\n"),  # dotless i is no QUIT
        (b"GET / HTTP/1.1\r\n", b"-ERR Unknown command\r\n"),
        (b"USER\r\n", b"-ERR Syntax: USER name\r\n"),
        (b"STLS now\r\n", b"-ERR STLS takes no arguments\r\n"),
        (b"AUTH PLAIN =\r\n", b"-ERR Malformed PLAIN response\r\n"),
        (b"USER al\x00ice\r\n", b"+OK Send PASS\r\n"),
    ],
)
def test_bad_lines(line: bytes, reply: bytes) -> None:
    assert _fresh().feed(line) == reply


def test_response_text_never_echoes_control_characters() -> None:
    t = _fresh()
    t.feed(b"USER alice\r\n")
    # The error text is fixed; nothing of the peer's input is echoed raw.
    assert t.feed(b"X\x1b[31m\r\n") == b"-ERR Unknown command\r\n"


def test_bare_lf_ends_a_command() -> None:
    assert _fresh().feed(b"CAPA\n").startswith(b"+OK Capability list follows\r\n")


def test_answers_out_of_turn_are_our_bug() -> None:
    t = _fresh()
    with pytest.raises(LocalProtocolError):
        t.server.retrieved(b"x")
    with pytest.raises(LocalProtocolError):
        t.server.auth_result("alice")
    with pytest.raises(LocalProtocolError):
        t.server.maildrop_opened([])


def test_autologout_closes_silently_without_update() -> None:
    t = Transcript().login()
    t.server.close(None)
    assert t.server.data_to_send() == b"" and t.closed and not t.updates
