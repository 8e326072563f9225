"""The per-message summary SORT and THREAD read (proto/imap/summary.py)."""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from mailstead.proto.imap import summary
from mailstead.proto.imap.summary import Summary, summarise


def _both_ways(value: bytes, monkeypatch: pytest.MonkeyPatch) -> tuple[object, object]:
    fields = {b"from": [value]}
    fast = summary._first_address(fields, b"from")
    with monkeypatch.context() as patched:
        patched.setattr(summary, "_SIMPLE_ADDRESS", re.compile(rb"(?!)"))
        slow = summary._first_address(fields, b"from")
    return fast, slow


@settings(max_examples=400, deadline=None)
@given(
    st.binary(max_size=40)
    | st.text(alphabet=' "<>,:;()@.aB=?Q_\\[]\t', max_size=30).map(str.encode)
)
@example(b"\x0b\x00@\x00")  # VT is white space to the regex module, text to RFC 5322
@example(b"a@b\x0c")
def test_the_quick_address_path_agrees_with_the_parser(value: bytes) -> None:
    with pytest.MonkeyPatch.context() as monkeypatch:
        fast, slow = _both_ways(value, monkeypatch)
    assert fast == slow


def test_summary_of_a_message_and_its_round_trip() -> None:
    message = (
        b"From: =?UTF-8?Q?=C3=84rger?= <Aerger@Example.test>\r\nTo: b@x.test\r\n"
        b"Subject: Re: [list] Hello (fwd)\r\nDate: Mon, 1 Jan 2024 12:00:00 +0100\r\n"
        b"Message-ID: <m3@x.test>\r\nReferences: <m1@x.test> (comment) <m2@x.test>\r\n"
        b"\r\nbody\r\n"
    )
    got = summarise(message, 0.0)
    assert got.sent == 1704106800.0  # 11:00 UTC
    assert (got.subject, got.reply) == ("hello", True)
    assert (got.from_, got.display_from, got.to, got.display_to) == (
        "aerger",
        "a\u0308rger",
        "b",
        "b@x.test",
    )
    assert (got.message_id, got.parents) == ("m3@x.test", ("m1@x.test", "m2@x.test"))
    assert Summary.decode(got.encode()) == got
    # In-Reply-To stands in for References (RFC 5256 §3 step 1A); no Date: the internal date.
    other = summarise(b"In-Reply-To: <a@x> <b@x>\r\nDate: nonsense\r\n\r\n", 77.0)
    assert (other.parents, other.sent, other.message_id) == (("a@x",), 77.0, "")
    assert Summary.decode(b"0\x1eold format") is None
