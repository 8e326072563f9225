"""RFC 5256 §2.1 base subject extraction, rule by rule, and fuzzed."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailstead.proto.imap.base_subject import MAX_SUBJECT, base_subject, casemap

CASES = [
    # (subject, base subject, is a reply or forward)
    ("Hello", "Hello", False),
    ("", "", False),
    # (1) folding and runs of white space become one space
    ("Hello\r\n\t world", "Hello world", False),
    ("a  \t b", "a b", False),
    # (2) trailers: "(fwd)" and white space at the end, repeatedly
    ("Hello (fwd)", "Hello", True),
    ("Hello (FWD) (fwd)  ", "Hello", True),
    ("Hello(fwd)", "Hello", True),
    ("(fwd)", "", True),
    # (3) leaders: white space, Re/Fw/Fwd with an optional blob, before ":"
    ("Re: Hello", "Hello", True),
    ("RE: re: Re:Hello", "Hello", True),
    ("Fw: Hello", "Hello", True),
    ("FWD: Hello", "Hello", True),
    ("Re [2]: Hello", "Hello", True),
    ("Re[3]:Hello", "Hello", True),
    ("re :Hello", "Hello", True),
    ("[list] Re: Hello", "Hello", True),
    ("[a][b] Re: Hello", "Hello", True),
    ("Rex: Hello", "Rex: Hello", False),  # not "re" followed by ":"
    ("Ref: Hello", "Ref: Hello", False),
    ("Fwdx: Hello", "Fwdx: Hello", False),
    ("Re Hello", "Re Hello", False),
    # (4) a blob goes only if a subject is left after it
    ("[list] Hello", "Hello", False),
    ("[list]", "[list]", False),
    ("[a] [b]", "[b]", False),
    ("[a][b][c] Hello", "Hello", False),
    ("[unclosed Hello", "[unclosed Hello", False),
    # (5) leaders and blobs in any mix until none is left
    ("[list] Re: [other] Fwd: Hello", "Hello", True),
    ("Re: [list] Hello", "Hello", True),
    # (6) a [fwd: ...] wrapper is unwrapped, then everything again
    ("[Fwd: Hello]", "Hello", True),
    ("[fwd: Re: Hello (fwd)]", "Hello", True),
    ("Re: [Fwd: [list] Re: Hello] (fwd)", "Hello", True),
    ("[fwd: [fwd: Hello]]", "Hello", True),
    ("[fwd: Hello", "[fwd: Hello", False),  # no closing bracket: a blob-less base
    # RFC 2047 words are decoded first (step 1; RFC 5256 §7)
    ("=?UTF-8?Q?Re:_gr=C3=BC=C3=9Fe?=", "grüße", True),
    ("=?ISO-8859-1?Q?Fwd:_=E4pfel?= (fwd)", "äpfel", True),
    ("=?UTF-8?B?W2xpc3RdIEhlbGxv?=", "Hello", False),  # "[list] Hello" in base64
]


@pytest.mark.parametrize(("subject", "base", "reply"), CASES)
def test_rfc5256_base_subject(subject: str, base: str, reply: bool) -> None:
    got = base_subject(subject.encode())
    assert (got.text, got.reply) == (base, reply)


def test_casemap_compares_as_i_unicode_casemap() -> None:
    assert casemap("HELLO") == casemap("hello")
    assert casemap("Ärger") == casemap("ärger") == casemap("A\u0308rger")
    assert casemap("Straße") == casemap("STRASSE")


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("Rr eEfFwWdD:[](x)\t")), max_size=200))
def test_fuzz_terminates_and_is_idempotent(subject: str) -> None:
    base = base_subject(subject)
    assert base.text == base.text.strip(" ")
    assert base_subject(base.text).text == base.text


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_any_octets(raw: bytes) -> None:
    base_subject(raw)


@pytest.mark.parametrize("unit", ["[]", "Re:", "(fwd)", "[fwd:", " ", "[a]Re:"])
def test_hostile_repetition_is_linear(unit: str) -> None:
    subject = unit * (MAX_SUBJECT // len(unit) * 4)
    started = time.perf_counter()
    base_subject(subject)
    assert time.perf_counter() - started < 1.0
