"""dkimpy's parsing done faster gives dkimpy's own answers, byte for byte.

Each replacement of mailauth/dkimpy_speedups.py against the dkimpy
function it replaces, on generated input (hostile shapes included: bare
LF, bare CR, folds, tabs, runs of spaces, a fold before the first field),
then whole verifications with and without the replacements; and the
parsed-record caches (DKIM keys, SPF, DMARC) keyed by the record's text,
so a record changed in the DNS is read anew.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import cast

import dkim
import pytest
from dkim import canonicalization
from hypothesis import given, settings
from hypothesis import strategies as st

from mailstead.limits import AuthCheckLimits
from mailstead.mailauth import dkimpy_speedups, dmarc, spf
from mailstead.mailauth.dkim_verify import DKIMResult, verify_all
from mailstead.mailauth.dkimpy_speedups import (
    BTAG,
    evaluate_pk,
    parse_tag_value,
    relaxed_body,
    relaxed_headers,
    rfc822_parse,
)
from mailstead.mailauth.lookups import AuthDNS, Budget
from mailstead.mailauth.spf import Answer, Query, check_host, run
from tests.mailauth.authzones import dkim_txt, message, private_key

# Pieces of header sections and bodies, in the shapes that take the
# different paths of dkimpy's code.
LINE_ENDS = st.sampled_from([b"\r\n", b"\r\n", b"\r\n", b"\n", b"\r", b"\r\r\n"])
TEXT = st.binary(max_size=12).map(lambda b: b.replace(b"\n", b"").replace(b"\r", b"")) | (
    st.sampled_from([b"a b", b"a  b", b"a\tb", b" \t ", b"x", b"=;", b"From x", b""])
)
FIELD_NAMES = st.sampled_from([b"From", b"To", b"Subject", b"X-A", b"bad name", b"", b"From "])
LINE = st.one_of(
    st.tuples(FIELD_NAMES, st.sampled_from([b":", b": ", b":\t"]), TEXT).map(b"".join),
    st.tuples(st.sampled_from([b" ", b"\t", b"  "]), TEXT).map(b"".join),  # a fold
    TEXT,
)
MESSAGES = st.lists(st.tuples(LINE, LINE_ENDS).map(b"".join), max_size=12).map(b"".join)
# SMTP's CRLF only (a bare CR may be left): the fast path's own input.
CRLF_MESSAGES = st.lists(
    st.tuples(LINE, st.sampled_from([b"\r\n", b"\r\n", b"\r\n", b"\r"])).map(b"".join),
    max_size=12,
).map(b"".join)


def outcome(function: Callable[[], object]) -> object:
    """The result, or the exception's type and text: both must match."""
    try:
        return function()
    except Exception as exc:
        return (type(exc), str(exc))


@settings(max_examples=1000, deadline=None)
@given(MESSAGES | CRLF_MESSAGES)
def test_rfc822_parse_is_dkimpys(content: bytes) -> None:
    ours = outcome(lambda: rfc822_parse(content))
    assert ours == outcome(lambda: dkimpy_speedups._ORIGINAL_PARSE(content))


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"\r\n",
        b"\r\n\r\nbody",
        b"A: b",
        b"A: b\r\n",
        b"A: b\r\n\r\n",
        b"A: b\r\n\r\n\r\n",
        b"A: b\r\n c\r\n\r\nbody\r\nmore\r\n",
        b" fold first\r\n\r\n",
        b"From alice Thu Nov  5\r\nA: b\r\n\r\nx",
        b"A: b\r\nno colon\r\n\r\n",
        b"A: b\nC: d\r\n\r\nbare LF",
        b"A: b\r\n\r\nbody with a bare\nLF",
        b"A: b\rc\r\n\r\nbare CR",
    ],
)
def test_rfc822_parse_edges_are_dkimpys(content: bytes) -> None:
    ours = outcome(lambda: rfc822_parse(content))
    assert ours == outcome(lambda: dkimpy_speedups._ORIGINAL_PARSE(content))


B64 = st.sampled_from([b"A", b"z", b"0", b"+", b"/", b"="])
WSP = st.sampled_from([b" ", b"\t", b"\r\n ", b"\r\n\t", b"\n ", b"\r\n", b"\n", b"  "])
SIGNATURE = st.lists(
    st.one_of(B64, WSP, st.sampled_from([b";", b"b", b"h", b"=", b"bh=", b" b=", b";b ="])),
    max_size=60,
).map(b"".join)


@settings(max_examples=1000, deadline=None)
@given(SIGNATURE)
def test_btag_is_dkimpys(value: bytes) -> None:
    assert BTAG.sub(b"\\1", value) == dkimpy_speedups._ORIGINAL_BTAG.sub(b"\\1", value)


def test_btag_empties_a_folded_b_value() -> None:
    value = b" v=1; a=rsa-sha256; d=x.test;\r\n b=AbC+/9=\r\n zz==;\r\n bh=Q1=\r\n"
    assert BTAG.sub(b"\\1", value) == b" v=1; a=rsa-sha256; d=x.test;\r\n b=;\r\n bh=Q1=\r\n"


TAG_LISTS = st.lists(
    st.sampled_from([b"v", b"a", b"b", b"1x", b"_", b"=", b";", b" ", b"\r\n ", b"rsa", b"\xff"]),
    max_size=30,
).map(b"".join)


@settings(max_examples=1000, deadline=None)
@given(TAG_LISTS)
def test_parse_tag_value_is_dkimpys(tag_list: bytes) -> None:
    ours = outcome(lambda: parse_tag_value(tag_list))
    assert ours == outcome(lambda: dkimpy_speedups._ORIGINAL_TAG_VALUE(tag_list))


HEADER_VALUES = st.lists(st.one_of(TEXT, WSP, LINE_ENDS), max_size=8).map(b"".join)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(FIELD_NAMES, HEADER_VALUES), max_size=6))
def test_relaxed_headers_are_dkimpys(headers: list[tuple[bytes, bytes]]) -> None:
    original = dkimpy_speedups._ORIGINAL_RELAXED_HEADERS
    assert relaxed_headers(headers) == original(headers)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.one_of(TEXT, WSP, LINE_ENDS), max_size=20).map(b"".join))
def test_relaxed_body_is_dkimpys(body: bytes) -> None:
    assert relaxed_body(body) == dkimpy_speedups._ORIGINAL_RELAXED_BODY(body)


def test_dkimpy_uses_them() -> None:
    assert dkim.rfc822_parse is rfc822_parse
    assert dkim.RE_BTAG is BTAG
    assert dkim.evaluate_pk is evaluate_pk
    assert dkim.parse_tag_value is parse_tag_value
    assert canonicalization.Relaxed.canonicalize_headers is relaxed_headers
    assert canonicalization.Relaxed.canonicalize_body is relaxed_body


# --- whole verifications: the same results with dkimpy's own code -----------

KEY_RECORD = dkim_txt(private_key())


class Zone:
    """TXT records by name, changeable by the test (AuthDNS's ``txt``)."""

    def __init__(self, records: dict[str, str]) -> None:
        self.records = records

    def txt(self, name: str, budget: Budget) -> Answer:
        text = self.records.get(name.rstrip("."))
        return Answer((text,)) if text is not None else Answer(nxdomain=True)


def verify(content: bytes, zone: Zone) -> list[DKIMResult]:
    return verify_all(content, cast(AuthDNS, zone), Budget.of(5))


@contextlib.contextmanager
def dkimpys_own(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    with monkeypatch.context() as patch:
        patch.setattr(dkim, "rfc822_parse", dkimpy_speedups._ORIGINAL_PARSE)
        patch.setattr(dkim, "RE_BTAG", dkimpy_speedups._ORIGINAL_BTAG)
        patch.setattr(dkim, "evaluate_pk", dkimpy_speedups._ORIGINAL_EVALUATE_PK)
        patch.setattr(dkim, "parse_tag_value", dkimpy_speedups._ORIGINAL_TAG_VALUE)
        relaxed = canonicalization.Relaxed
        patch.setattr(relaxed, "canonicalize_headers", dkimpy_speedups._ORIGINAL_RELAXED_HEADERS)
        patch.setattr(relaxed, "canonicalize_body", dkimpy_speedups._ORIGINAL_RELAXED_BODY)
        yield


def signed(content: bytes, canonicalize: tuple[bytes, bytes]) -> bytes:
    signature = dkim.sign(
        content,
        b"sel",
        b"sender.test",
        private_key(),
        canonicalize=canonicalize,
        include_headers=[b"from", b"to", b"subject"],
    )
    return signature.replace(b"\n", b"\r\n").replace(b"\r\r\n", b"\r\n") + content


BODIES = [
    b"Hello Bob.\r\n",
    b"",
    b"\r\n\r\n\r\n",
    b"two  spaces,\ta tab, trailing blanks \t\r\nand empty lines at the end\r\n\r\n\r\n",
    b"x" * 4000 + b"\r\n",
]
FROMS = ["Alice <alice@sender.test>", "Alice\r\n  \t<alice@sender.test>"]
CANONICALIZATIONS = [
    (b"simple", b"simple"),
    (b"relaxed", b"relaxed"),
    (b"relaxed", b"simple"),
    (b"simple", b"relaxed"),
]


def cases() -> Iterator[bytes]:
    for body in BODIES:
        for from_ in FROMS:
            for canon in CANONICALIZATIONS:
                content = signed(message(from_=from_, body=body), canon)
                yield content
                yield content + b"changed\r\n"  # the body hash fails
                yield content.replace(b"Subject: greetings", b"Subject:  greetings ")
                yield content.replace(b"\r\n", b"\n")  # bare LF throughout


def test_verifications_are_dkimpys(monkeypatch: pytest.MonkeyPatch) -> None:
    zone = Zone({"sel._domainkey.sender.test": KEY_RECORD})
    contents = list(cases())
    ours = [verify(content, zone) for content in contents]
    with dkimpys_own(monkeypatch):
        theirs = [verify(content, zone) for content in contents]
    assert ours == theirs
    results = {result.result for found in ours for result in found}
    assert results == {"pass", "fail"}  # both kinds are covered


def test_a_changed_key_record_is_parsed_anew() -> None:
    content = signed(message(), (b"relaxed", b"simple"))
    zone = Zone({"sel._domainkey.sender.test": KEY_RECORD})
    assert [r.result for r in verify(content, zone)] == ["pass"]
    # The domain publishes another key under the same selector (rotated).
    zone.records["sel._domainkey.sender.test"] = dkim_txt(private_key(1))
    assert [r.result for r in verify(content, zone)] == ["fail"]
    zone.records["sel._domainkey.sender.test"] = "v=DKIM1; k=rsa; p=bm90IGEga2V5"
    found = verify(content, zone)
    assert [r.result for r in found] == ["fail"]
    assert found == verify(content, zone)  # a broken record fails each time alike


def test_parsed_records_are_bounded() -> None:
    limits = AuthCheckLimits()
    assert dkimpy_speedups._parsed_key.cache_info().maxsize == limits.dkim_keys
    assert spf._parsed_record.cache_info().maxsize == limits.spf_records
    assert dmarc._parsed_record.cache_info().maxsize == limits.dmarc_records
    assert dmarc._author_of.cache_info().maxsize == limits.from_values


def test_a_changed_spf_record_is_read_anew() -> None:
    records = {"sender.test": "v=spf1 ip4:192.0.2.1 -all"}

    def lookup(query: Query) -> Answer:
        return Answer((records[query.name],)) if query.name in records else Answer()

    def result() -> str:
        evaluation = check_host("192.0.2.1", "sender.test", "alice@sender.test", "mx.test")
        return run(evaluation, lookup).result

    assert result() == "pass"
    records["sender.test"] = "v=spf1 ip4:192.0.2.2 -all"
    assert result() == "fail"
    records["sender.test"] = "v=spf1 ip4:192.0.2.300 -all"
    assert (result(), result()) == ("permerror", "permerror")


def test_a_long_spf_record_is_not_kept_but_read_alike() -> None:
    limit = AuthCheckLimits().spf_record_chars
    terms = " ".join(f"ip4:10.0.{i // 250}.{i % 250}" for i in range(limit // 10))
    records = {"sender.test": f"v=spf1 {terms} ip4:192.0.2.1 -all"}
    assert len(records["sender.test"]) > limit

    def lookup(query: Query) -> Answer:
        return Answer((records[query.name],)) if query.name in records else Answer()

    kept = spf._parsed_record.cache_info().currsize
    for ip, expected in (("192.0.2.1", "pass"), ("192.0.2.2", "fail"), ("10.0.0.5", "pass")):
        evaluation = check_host(ip, "sender.test", "alice@sender.test", "mx.test")
        assert run(evaluation, lookup).result == expected
    assert spf._parsed_record.cache_info().currsize == kept


def test_a_changed_dmarc_record_is_read_anew() -> None:
    records = {"_dmarc.sender.test": "v=DMARC1; p=reject"}

    def txt(name: str) -> Answer:
        return Answer((records[name],)) if name in records else Answer()

    def disposition() -> str:
        return dmarc.evaluate(
            ["alice@sender.test"], spf_result="fail", spf_domain="x.test", dkim_passes=[], txt=txt
        ).disposition

    assert disposition() == "reject"
    records["_dmarc.sender.test"] = "v=DMARC1; p=quarantine"
    assert disposition() == "quarantine"
