"""Modified UTF-7 (RFC 3501 §5.1.3): one spelling per name, both ways."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailstead.proto.imap.utf7 import decode_mutf7, encode_mutf7


@pytest.mark.parametrize(
    ("name", "wire"),
    [
        ("INBOX", "INBOX"),
        ("&", "&-"),
        ("Tom & Jerry", "Tom &- Jerry"),
        ("Entwürfe", "Entw&APw-rfe"),
        ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),  # RFC 3501 §5.1.3
        ("😀", "&2D3eAA-"),
        ("\t", "&AAk-"),
        ("", ""),
    ],
)
def test_known_spellings(name: str, wire: str) -> None:
    assert encode_mutf7(name) == wire
    assert decode_mutf7(wire) == name


@pytest.mark.parametrize(
    "wire",
    [
        "&AGE-",  # "a" must stand for itself
        "&ACY-",  # "&" must be "&-"
        "&",  # unterminated
        "&Jjo",  # unterminated
        "&AOk-&AOk-",  # two runs side by side: must be one
        "&AO-",  # base64 length that is no whole UTF-16 unit
        "&AOl-",  # non-zero padding bits
        "&AO=-",  # "=" padding is not used
        "&AO/p-",  # "/" is "," in modified BASE64
        "&2D0-",  # lone high surrogate
        "Entwürfe",  # 8-bit is never modified UTF-7
        "a\x7fb",
    ],
)
def test_invalid_spellings(wire: str) -> None:
    with pytest.raises(ValueError):
        decode_mutf7(wire)


def test_lone_surrogate_cannot_be_encoded() -> None:
    with pytest.raises(ValueError):
        encode_mutf7("\ud800")


@given(st.text(st.characters(exclude_categories=["Cs"])))
def test_roundtrip(name: str) -> None:
    wire = encode_mutf7(name)
    assert all(" " <= ch <= "~" for ch in wire)
    assert decode_mutf7(wire) == name


@given(st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E)))
def test_decoded_text_reencodes_to_the_same_spelling(wire: str) -> None:
    try:
        name = decode_mutf7(wire)
    except ValueError:
        return
    assert encode_mutf7(name) == wire
