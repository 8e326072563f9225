"""The two helpers every writer of peer text uses: header fields and log lines."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mailstead.message import trace
from mailstead.peertext import CONTROL_CHARS, has_control, header_text, log_text

# Every control character, and the characters around the edges of the ranges.
CONTROLS = [chr(c) for c in (0x00, 0x09, 0x0A, 0x0D, 0x1B, 0x1F, 0x7F, 0x80, 0x85, 0x9F)] + [
    "\u2028",
    "\u2029",
]


@pytest.mark.parametrize("c", CONTROLS)
def test_each_control_character_is_caught(c: str) -> None:
    assert c in CONTROL_CHARS and has_control(f"a{c}b")
    assert header_text(f"a{c}b") == "a b"
    assert log_text(f"a{c}b") == "a" + repr(c)[1:-1] + "b" and log_text(f"a{c}b").isprintable()


@pytest.mark.parametrize("text", ["alice@example.test", "jörg@bücher.example", " ", "~", "\xa0"])
def test_printable_text_is_no_control(text: str) -> None:
    assert not has_control(text) and header_text(text) == text


@pytest.mark.parametrize(
    ("text", "logged"),
    [
        ("t.test\rX-Inj: 1", "t.test\\rX-Inj: 1"),
        ("a\r\n\x00b", "a\\r\\n\\x00b"),
        ("back\\slash", "back\\\\slash"),  # doubled, so "\r" above cannot be forged
        ("jörg", "jörg"),
        ("\u202eevil", "\\u202eevil"),  # a bidi override: not printable
        ("\x1b[2J", "\\x1b[2J"),  # a terminal escape
    ],
)
def test_log_text_escapes_as_repr_does(text: str, logged: str) -> None:
    assert log_text(text) == logged


def test_runs_of_controls_become_one_space_in_a_header() -> None:
    assert header_text("a\r\n\t\x00b") == "a b"


def test_trace_fields_are_one_line_each_whatever_they_are_given() -> None:
    stamp = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert trace.return_path("a\r\nX-Inj: 1@b") == b"Return-Path: <a X-Inj: 1@b>\n"
    assert trace.delivered_to("a@b\nX-Inj: 1") == b"Delivered-To: a@b X-Inj: 1\n"
    assert trace.received(
        helo="t.test\rX-Inj: 1 (x)",
        ip="192.0.2.1",
        by="mx.example.test",
        protocol="ESMTP",
        queue_id="Q1",
        recipient="bob@example.test\r\nX-Inj: 2",
        stamp=stamp,
    ) == (
        b"Received: from t.test X-Inj: 1 x ([192.0.2.1])\n"
        b"\tby mx.example.test (Mailstead) with ESMTP id Q1\n"
        b"\tfor <bob@example.test X-Inj: 2>;\n"
        b"\tTue, 02 Jan 2024 03:04:05 +0000\n"
    )
