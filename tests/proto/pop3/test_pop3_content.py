"""Stored message bytes to POP3 multi-line content (RFC 1939 §3)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mailstead.proto.pop3.content import crlf_size, head, stuffed
from mailstead.proto.smtp.dotstuff import DATA_END, unstuff


def _wire(message: bytes, piece: int = 7) -> bytes:
    return b"".join(stuffed(message, piece))


def test_lf_and_crlf_and_final_line_end() -> None:
    assert _wire(b"a\nb\n") == b"a\r\nb\r\n.\r\n"
    assert _wire(b"a\r\nb") == b"a\r\nb\r\n.\r\n"
    assert _wire(b"") == b".\r\n"
    assert _wire(b".\n..\nx.\n.", piece=2) == b"..\r\n...\r\nx.\r\n..\r\n.\r\n"


def test_head() -> None:
    msg = b"A: 1\nB: 2\n\nl1\nl2\nl3\n"
    assert head(msg, 0) == b"A: 1\nB: 2\n\n"
    assert head(msg, 2) == b"A: 1\nB: 2\n\nl1\nl2\n"
    assert head(msg, 9) == msg
    assert head(b"A: 1\r\n\r\nl1\r\nl2\r\n", 1) == b"A: 1\r\n\r\nl1\r\n"
    assert head(b"A: 1\nB: 2", 3) == b"A: 1\nB: 2"


@given(st.binary().filter(lambda b: b"\r" not in b), st.integers(1, 40))
def test_wire_form_round_trips_and_matches_crlf_size(message: bytes, piece: int) -> None:
    wire = _wire(message, piece)
    assert wire.endswith(b".\r\n")
    body = wire[:-3]
    # The first terminator a client sees is the last one: no line ends it early.
    assert (b"\r\n" + wire).find(DATA_END) == len(wire) - 3
    expected = message.replace(b"\n", b"\r\n")
    if message and not message.endswith(b"\n"):
        expected += b"\r\n"
    assert unstuff(body) == expected
    assert len(expected) == crlf_size(message)  # the size LIST and STAT report
