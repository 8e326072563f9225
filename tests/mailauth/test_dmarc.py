"""DMARC (RFC 7489) without the network: records, discovery, alignment, pct."""

from __future__ import annotations

import pytest

from mailstead.mailauth.dmarc import (
    DMARCRecord,
    aligned,
    author_domain,
    evaluate,
    organizational_domain,
    parse_record,
)
from mailstead.mailauth.spf import Answer

RECORDS = {
    "_dmarc.example.com": "v=DMARC1; p=reject; sp=quarantine; adkim=s",
    "_dmarc.example.co.uk": "v=DMARC1; p=quarantine; pct=20",
    "_dmarc.strict.example": "v=DMARC1; p=reject; aspf=s",
}


def txt(name: str) -> Answer:
    if name == "_dmarc.broken.example":
        return Answer(temporary=True)
    record = RECORDS.get(name)
    return Answer((record,)) if record else Answer(nxdomain=True)


def dmarc(
    from_: str,
    *,
    spf: str = "fail",
    spf_domain: str = "",
    dkim: tuple[str, ...] = (),
    sample: float = 0.0,
) -> tuple[str, str, str]:
    result = evaluate(
        [from_],
        spf_result=spf,
        spf_domain=spf_domain,
        dkim_passes=dkim,
        txt=txt,
        sample=lambda: sample,
    )
    return result.result, result.policy, result.disposition


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("v=DMARC1; p=none", DMARCRecord("none", "none")),
        (
            "v=DMARC1;p=reject;sp=none;pct=50;adkim=s;aspf=s",
            DMARCRecord("reject", "none", 50, "s", "s"),
        ),
        ("v=DMARC1; p=bogus; rua=mailto:d@example.com", DMARCRecord("none", "none")),  # §6.6.3
        ("v=DMARC1; p=bogus", None),
        ("v=DMARC2; p=reject", None),
        ("p=reject; v=DMARC1", None),  # v= must come first (§6.4)
        ("v=DMARC1; p=reject; pct=500", DMARCRecord("reject", "reject", 100)),
    ],
)
def test_record(text: str, expected: DMARCRecord | None) -> None:
    assert parse_record(text) == expected


@pytest.mark.parametrize(
    ("name", "org"),
    [
        ("mail.example.com", "example.com"),
        ("a.b.example.co.uk", "example.co.uk"),
        ("co.uk", "co.uk"),
    ],
)
def test_organizational_domain_from_the_public_suffix_list(name: str, org: str) -> None:
    assert organizational_domain(name) == org


def test_relaxed_and_strict_alignment() -> None:
    assert aligned("bounce.example.com", "example.com", "r")
    assert not aligned("bounce.example.com", "example.com", "s")
    assert aligned("EXAMPLE.com.", "example.com", "s")
    assert not aligned("example.net", "example.com", "r")


@pytest.mark.parametrize(
    ("values", "domain"),
    [
        (["Alice <alice@Example.COM>"], "example.com"),
        (["alice@example.com", "bob@example.com"], None),  # two From fields
        (["alice@example.com, bob@example.com"], None),  # two addresses
        ([], None),
        (["undisclosed"], None),
        (["=?utf-8?q?A?= <a@example.com>"], "example.com"),
    ],
)
def test_author_domain(values: list[str], domain: str | None) -> None:
    assert author_domain(values) == domain


def test_aligned_dkim_passes() -> None:
    assert dmarc("a@example.com", dkim=("example.com",)) == ("pass", "reject", "none")


def test_strict_dkim_alignment_refuses_a_subdomain_signature() -> None:
    assert dmarc("a@example.com", dkim=("mail.example.com",)) == ("fail", "reject", "reject")


def test_relaxed_spf_alignment_passes_a_bounce_subdomain() -> None:
    assert dmarc("a@example.com", spf="pass", spf_domain="bounce.example.com")[0] == "pass"


def test_strict_spf_alignment() -> None:
    assert dmarc("a@strict.example", spf="pass", spf_domain="mx.strict.example")[0] == "fail"


def test_subdomain_uses_the_organisational_record_and_sp() -> None:
    assert dmarc("a@news.example.com") == ("fail", "quarantine", "quarantine")


def test_pct_samples_the_policy() -> None:
    # pct=20: inside the sample quarantine applies, outside the next milder one (§6.6.4).
    assert dmarc("a@example.co.uk", sample=0.1) == ("fail", "quarantine", "quarantine")
    assert dmarc("a@example.co.uk", sample=0.5) == ("fail", "quarantine", "none")


def test_no_record_is_none_and_a_dns_failure_temperror() -> None:
    assert dmarc("a@example.org")[0] == "none"
    assert dmarc("a@broken.example")[0] == "temperror"


def test_a_message_without_from_has_no_policy() -> None:
    result = evaluate([], spf_result="fail", spf_domain="example.com", dkim_passes=(), txt=txt)
    assert (result.result, result.detail) == ("none", "no From field")


def test_unaligned_pass_fails() -> None:
    assert (
        dmarc("a@example.com", spf="pass", spf_domain="example.net", dkim=("example.net",))[0]
        == "fail"
    )
