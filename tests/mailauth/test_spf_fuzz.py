"""Hypothesis fuzz of the SPF record parser, the macro expander and a whole evaluation.

Records and macro strings come from DNS answers anybody can publish: every
input either parses or is a clean ``ValueError`` (a permerror), and the work
and the output stay bounded — a record at the length limit parses in well
under a millisecond per character, an expansion never exceeds its limit.
"""

from __future__ import annotations

import contextlib
import ipaddress
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from mailstead.mailauth.spf import MAX_RECORD, Answer, Query, check_host, parse_record, run
from mailstead.mailauth.spf_macro import (
    MAX_EXPLANATION,
    MacroContext,
    MacroError,
    expand,
    expand_domain,
    parse_macro_string,
)

TERMS = st.sampled_from(
    [
        "a",
        "mx",
        "ptr",
        "all",
        "-all",
        "~all",
        "?all",
        "+a:%{d}",
        "ip4:192.0.2.0/24",
        "ip6:2001:db8::/32",
        "include:%{o}",
        "exists:%{ir}.%{v}._spf.%{d}",
        "redirect=%{d2}",
        "exp=%{l}.x",
        "a/24//64",
        "mx:%{h}/30",
        "%{",
        "%%",
        "%{Z}",
        "=",
        ":",
        "/",
        "//",
        "x=y",
        "a:" + "b." * 60 + "com",
        "%{s9999r+-.}",
    ]
)
CONTEXT = MacroContext(
    sender="first.last-name+tag@sub.example.com",
    domain="sub.example.com",
    ip=ipaddress.ip_address("2001:db8::1"),
    helo="helo.example.com",
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(TERMS, st.text(max_size=30)), max_size=40))
def test_records_parse_or_fail_cleanly(terms: list[str]) -> None:
    text = "v=spf1 " + " ".join(terms)
    with contextlib.suppress(ValueError):
        parse_record(text)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("%{}slodiphvcrtSLO0123456789r.-+,/_=ab"), max_size=200))
def test_macro_strings_expand_within_bounds(text: str) -> None:
    try:
        parsed = parse_macro_string(text, explanation=True)
    except MacroError:
        return
    assert len(expand(parsed, CONTEXT)) <= MAX_EXPLANATION
    with contextlib.suppress(MacroError):
        assert len(expand_domain(parsed, CONTEXT)) <= 253


def test_parsing_is_linear_at_the_length_limit() -> None:
    term = "a:%{ir}.%{l1r-}.x.com "
    fits = "v=spf1 " + term * ((MAX_RECORD - 7) // len(term))
    started = time.perf_counter()
    parse_record(fits)
    assert time.perf_counter() - started < 0.5
    worst = fits + term
    try:
        parse_record(worst + "a")
    except ValueError as exc:
        assert "too long" in str(exc)


def test_macro_expansion_of_a_huge_sender_is_cut() -> None:
    context = MacroContext("x" * 10_000 + "@e.com", "e.com", ipaddress.ip_address("192.0.2.1"), "h")
    parsed = parse_macro_string("%{l}%{l}%{l}.e.com")
    assert len(expand_domain(parsed, context)) <= 253
    assert (
        len(expand(parse_macro_string("%{s}" * 50, explanation=True), context)) == MAX_EXPLANATION
    )


@settings(max_examples=150, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["e.com", "a.e.com", "b.e.com", "c.e.com", "1.2.0.192.in-addr.arpa"]),
        st.lists(st.one_of(TERMS, st.just("v=spf1")), max_size=8).map(" ".join),
        max_size=5,
    )
)
def test_evaluation_asks_a_bounded_number_of_questions(zone: dict[str, str]) -> None:
    asked: list[Query] = []

    def lookup(query: Query) -> Answer:
        asked.append(query)
        text = zone.get(query.name)
        if text is None:
            return Answer(nxdomain=True)
        if query.rdtype == "TXT":
            return Answer(("v=spf1 " + text,))
        if query.rdtype in ("MX", "PTR"):
            return Answer(tuple(n for n in zone if "." in n)[:3])
        return Answer(("192.0.2.1",) if query.rdtype == "A" else ("2001:db8::1",))

    result = run(check_host("192.0.2.1", "e.com", "u@e.com", "h.e.com"), lookup)
    assert result.result in {
        "none",
        "neutral",
        "pass",
        "fail",
        "softfail",
        "temperror",
        "permerror",
    }
    # 10 terms, each with at most 10 names behind it, plus the record lookups.
    assert len(asked) <= 1 + 10 * 12
