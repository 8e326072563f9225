"""SPF check_host() against the RFC 7208 test suite cases (tests/mailauth/spf_suite.py)."""

from __future__ import annotations

import pytest

from mailstead.mailauth.spf import Answer, Query, SPFResult, check_host, run
from tests.mailauth.spf_suite import CASES, Zone


def zone_lookup(zone: Zone):  # type: ignore[no-untyped-def]
    """A lookup function answering from ``zone`` (NXDOMAIN for names not in it)."""
    folded = {name.lower().rstrip("."): records for name, records in zone.items()}

    def lookup(query: Query) -> Answer:
        records = folded.get(query.name.lower().rstrip("."))
        if records is None:
            return Answer(nxdomain=True)
        if any(kind == "TIMEOUT" for kind, _ in records):
            return Answer(temporary=True)
        return Answer(tuple(value for kind, value in records if kind == query.rdtype))

    return lookup


def spf(mailfrom: str, helo: str, host: str, zone: Zone) -> SPFResult:
    sender = mailfrom or f"postmaster@{helo}"
    domain = sender.rpartition("@")[2]
    return run(check_host(host, domain, sender, helo, receiver="mx.test"), zone_lookup(zone))


@pytest.mark.parametrize(
    ("scenario", "spec", "mailfrom", "helo", "host", "zone", "expected"),
    CASES,
    ids=[case[0] for case in CASES],
)
def test_rfc7208_suite(
    scenario: str,
    spec: str,
    mailfrom: str,
    helo: str,
    host: str,
    zone: Zone,
    expected: tuple[str, ...],
) -> None:
    result = spf(mailfrom, helo, host, zone)
    assert result.result in expected, f"{scenario} (RFC 7208 §{spec}): {result}"


ZONE: Zone = {
    "example.test": [("TXT", "v=spf1 ip4:192.0.2.0/24 -all exp=why.example.test")],
    "why.example.test": [("TXT", "%{i} may not send for %{d}; ask %{l}")],
    "macro.test": [("TXT", "v=spf1 -all exp=why.macro.test")],
    "why.macro.test": [("TXT", "%{S} %{O} %{r} %{c} %{v} %{h} %{t}")],
}


def test_explanation_of_a_fail_expands_macros() -> None:
    result = spf("alice@example.test", "mx.other.test", "198.51.100.7", ZONE)
    assert (result.result, result.explanation) == (
        "fail",
        "198.51.100.7 may not send for example.test; ask alice",
    )


def test_explanation_only_letters_are_escaped_in_uppercase() -> None:
    result = run(
        check_host(
            "::1", "macro.test", "a b@macro.test", "helo.test", receiver="mx.test", timestamp=7
        ),
        zone_lookup(ZONE),
    )
    assert result.explanation == "a%20b%40macro.test macro.test mx.test ::1 ip6 helo.test 7"


def test_pass_counts_no_lookup_for_ip_mechanisms() -> None:
    result = spf("alice@example.test", "mx.other.test", "192.0.2.9", ZONE)
    assert (result.result, result.lookups, result.domain) == ("pass", 0, "example.test")
