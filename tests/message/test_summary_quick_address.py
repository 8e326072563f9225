"""The summary's quick path for one plain address reads exactly what parse_addresses reads.

``Ann Lee <ann@example.test>`` and ``ann@example.test`` skip the full
RFC 5322 tokenizer; every value the quick path accepts must come out as the
tokenizer would have it, and everything else must go to the tokenizer.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailstead.message.summary import _SIMPLE_ADDRESS, _parse_addresses
from mailstead.proto.imap.mimeheader import parse_addresses

# Atom characters and the ones around them that change the reading.
_CHARS = st.sampled_from(list(b"aZ09!#$%&'*+/^_`{|}~-=?.\"\\(),:; \t@<>"))
_PIECE = st.lists(_CHARS, max_size=5).map(bytes)
_GAP = st.sampled_from([b"", b" ", b"\t", b"  ", b" \t"])


@st.composite
def _address_like(draw: st.DrawFn) -> bytes:
    local = b".".join(draw(st.lists(_PIECE, min_size=1, max_size=3)))
    domain = b".".join(draw(st.lists(_PIECE, min_size=1, max_size=3)))
    if draw(st.booleans()):
        return draw(_GAP) + local + b"@" + domain + draw(_GAP)
    name = draw(_GAP).join(draw(st.lists(_PIECE, max_size=3)))
    return draw(_GAP) + name + draw(_GAP) + b"<" + local + b"@" + domain + b">" + draw(_GAP)


@settings(max_examples=2000, deadline=None)
@given(_address_like())
def test_the_quick_path_agrees_with_the_tokenizer(value: bytes) -> None:
    assert _parse_addresses(value) == parse_addresses(value)


@pytest.mark.parametrize(
    ("value", "quick"),
    [
        (b" Bench Sender <bench@client.test>", True),
        (b"ann@example.test", True),
        (b"<ann@example.test>", True),
        (b"Ann  Lee <ann@example.test>", False),  # two spaces: the tokenizer folds them
        (b"=?utf-8?q?Ann?= <ann@example.test>", False),  # an encoded word
        (b'"Lee, Ann" <ann@example.test>', False),
        (b"ann@example.test, bob@example.test", False),
        (b"ann@example.test (Ann)", False),
        (b"Ann.Lee <ann@example.test>", False),  # obs-phrase
        (b"ann@[192.0.2.1]", False),
    ],
)
def test_what_takes_the_quick_path(value: bytes, quick: bool) -> None:
    assert (_SIMPLE_ADDRESS.fullmatch(value) is not None) is quick
    assert _parse_addresses(value) == parse_addresses(value)
