"""Canonical forms: when two spellings of an address name one mailbox."""

from __future__ import annotations

import pytest

from mailstead.addresses import (
    AddressError,
    canonical_address,
    canonical_local_part,
    is_safe_local_part,
    normalize_domain,
    split_address,
)


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("example.test", "example.test"),
        ("Example.TEST", "example.test"),
        ("example.test.", "example.test"),  # the root label is implied
        ("Bücher.example", "xn--bcher-kva.example"),  # RFC 5890 A-label
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("BÜCHER.example", "xn--bcher-kva.example"),
        ("[127.0.0.1]", "[127.0.0.1]"),  # RFC 5321 §4.1.3 address literal
    ],
)
def test_domains_compare_in_lower_case_ascii_form(given: str, canonical: str) -> None:
    assert normalize_domain(given) == canonical


@pytest.mark.parametrize(
    "bad",
    [
        "",
        ".",
        "a..b",
        "-a.test",
        "a_b.test",
        "a b.test",
        "a/b.test",
        "x" * 64 + ".test",
        "a\0.test",
    ],
)
def test_malformed_domains_are_refused(bad: str) -> None:
    with pytest.raises(AddressError):
        normalize_domain(bad)


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("alice", "alice"),
        ("Alice", "alice"),
        ('"alice"', "alice"),  # quoting that changes nothing
        ('"Al\\ice"', "alice"),  # RFC 5321 quoted-pair
        ("A\u0308rger", "\u00e4rger"),  # NFD becomes NFC (RFC 6531 §3.2), then case-folded
    ],
)
def test_local_parts_compare_unquoted_nfc_casefolded(given: str, canonical: str) -> None:
    assert canonical_local_part(given) == canonical


def test_split_address_splits_at_the_last_at_sign() -> None:
    assert split_address('"a@b"@example.test') == ('"a@b"', "example.test")


@pytest.mark.parametrize("bad", ["alice", "alice@", "@example.test"])
def test_canonical_address_needs_both_halves(bad: str) -> None:
    with pytest.raises(AddressError):
        canonical_address(bad)


def test_one_mailbox_many_spellings() -> None:
    spellings = ["alice@Bücher.example", '"Alice"@xn--bcher-kva.example', "ALICE@BÜCHER.EXAMPLE."]
    assert {canonical_address(s) for s in spellings} == {"alice@xn--bcher-kva.example"}


@pytest.mark.parametrize("local", ["alice", "a.b", "a+tag", "jörg", "a..b"])
def test_safe_local_parts(local: str) -> None:
    assert is_safe_local_part(local)


@pytest.mark.parametrize(
    "local",
    [
        "",
        ".",
        "..",
        "../../x",
        "alice/../bob",
        "a\\b",
        ".hidden",
        "a\0b",
        "a\nb",
        "a\x7fb",
        "x" * 65,
    ],
)
def test_unsafe_local_parts(local: str) -> None:
    assert not is_safe_local_part(local)
