"""SPF evaluation (RFC 7208) as far as `check dns` takes it, one term per case."""

from __future__ import annotations

import asyncio

import pytest

from mailstead.checks.spf import Outcome, evaluate, spf_records
from mailstead.testing.dns import FakeResolver, Zones

ZONES: Zones = {
    "mx.example.test": {"A": ["192.0.2.10"], "AAAA": ["2001:db8::10"]},
    "example.test": {"MX": [(10, "mx.example.test")]},
    "redirected.test": {"TXT": ["v=spf1 ip4:192.0.2.0/24 -all"]},
}


def spf(record: str, address: str, zones: Zones | None = None) -> Outcome:
    data = {**ZONES, **(zones or {}), "domain.test": {"TXT": [record]}}
    return asyncio.run(evaluate(FakeResolver(data), "domain.test", address))


@pytest.mark.parametrize(
    ("record", "address", "result"),
    [
        ("v=spf1 ip4:192.0.2.0/24 -all", "192.0.2.9", "pass"),
        ("v=spf1 ip4:192.0.2.0/24 -all", "198.51.100.1", "fail"),
        ("v=spf1 ip4:192.0.2.0/24", "198.51.100.1", "neutral"),  # RFC 7208 §4.7
        ("v=spf1 ip6:2001:db8::/32 ~all", "2001:db8::1", "pass"),
        ("v=spf1 ip6:2001:db8::/32 ~all", "192.0.2.1", "softfail"),
        ("v=spf1 a:mx.example.test -all", "192.0.2.10", "pass"),
        ("v=spf1 a:mx.example.test/24 -all", "192.0.2.99", "pass"),
        ("v=spf1 a:mx.example.test//64 -all", "2001:db8::ffff", "pass"),
        ("v=spf1 a:mx.example.test -all", "192.0.2.11", "fail"),
        ("v=spf1 mx:example.test -all", "2001:db8::10", "pass"),
        ("v=spf1 ?mx:example.test -all", "192.0.2.10", "neutral"),
        ("v=spf1 redirect=redirected.test", "192.0.2.200", "pass"),
        ("v=spf1 -ip4:192.0.2.200 redirect=redirected.test", "192.0.2.200", "fail"),
        ("v=spf1 exp=explain.test ip4:192.0.2.1 -all", "192.0.2.1", "pass"),
        ("v=spf1 unknown-modifier=x ip4:192.0.2.1 -all", "192.0.2.1", "pass"),
    ],
)
def test_results(record: str, address: str, result: str) -> None:
    assert spf(record, address).result == result


@pytest.mark.parametrize(
    ("record", "result", "detail"),
    [
        ("v=spf1 foo:bar -all", "permerror", "unknown mechanism 'foo:bar' (RFC 7208 §5)"),
        ("v=spf1 ip4:300.1.1.1 -all", "permerror", "ip4:300.1.1.1: not an address"),
        (
            "v=spf1 include:nowhere.test -all",
            "permerror",
            "include:nowhere.test has no usable SPF record",
        ),
        ("v=spf1 redirect=nowhere.test", "permerror", "redirect=nowhere.test has no SPF record"),
        (
            "v=spf1 a:n1.test a:n2.test a:n3.test -all",
            "permerror",
            "more than 2 lookups found nothing (RFC 7208 §4.6.4)",
        ),
        ("v=spf1 a/40 -all", "permerror", "bad CIDR length in '/40'"),
        ("v=spf1 ptr -all", "unknown", "ptr (not evaluated)"),
        ("v=spf1 a:%{d}.test -all", "unknown", "a:%{d}.test (macros are not evaluated)"),
    ],
)
def test_errors_and_what_is_not_evaluated(record: str, result: str, detail: str) -> None:
    outcome = spf(record, "192.0.2.1")
    assert (outcome.result, outcome.detail) == (result, detail)


def test_a_match_before_an_unevaluated_term_counts() -> None:
    assert spf("v=spf1 ip4:192.0.2.1 ptr -all", "192.0.2.1").result == "pass"


def test_lookups_are_counted() -> None:
    outcome = spf("v=spf1 a:mx.example.test mx:example.test -all", "2001:db8::10")
    assert (outcome.result, outcome.lookups) == ("pass", 1)
    outcome = spf("v=spf1 a:mx.example.test mx:example.test -all", "192.0.2.77")
    assert (outcome.result, outcome.lookups) == ("fail", 2)


def test_a_temporary_failure() -> None:
    data = {**ZONES, "domain.test": {"TXT": ["v=spf1 include:down.test -all"]}}
    outcome = asyncio.run(
        evaluate(FakeResolver(data, fail={"down.test"}), "domain.test", "192.0.2.1")
    )
    assert outcome.result == "temperror"


def test_no_record_is_none() -> None:
    assert asyncio.run(evaluate(FakeResolver(ZONES), "example.test", "192.0.2.1")).result == "none"


def test_which_records_are_spf() -> None:
    # RFC 7208 §4.5: "v=spf1" then a space or the end; case does not matter.
    found = spf_records([b"v=spf1 -all", b"V=SPF1", b"v=spf10 -all", b"spf1", b"x v=spf1"])
    assert found == ["v=spf1 -all", "V=SPF1"]
