"""The checks' DNS client against a test server on 127.0.0.1: answers, cache, budget."""

from __future__ import annotations

import time

from mailstead.mailauth.lookups import AuthDNS, Budget
from mailstead.mailauth.spf import Answer, Query
from mailstead.testing.dns import DNSServer

ZONES = {
    "example.test": {"TXT": ["v=spf1 -all"], "MX": [(10, "mx.example.test")], "A": ["192.0.2.1"]},
    "mx.example.test": {"A": ["192.0.2.25"]},
    "1.2.0.192.in-addr.arpa": {"PTR": ["example.test"]},
}


def test_answers_by_type_and_the_kinds_of_no() -> None:
    with DNSServer(ZONES, servfail={"broken.test"}) as address:
        dns = AuthDNS([address])
        budget = Budget.of(5)
        assert dns.lookup(Query("example.test", "TXT"), budget) == Answer(("v=spf1 -all",))
        assert dns.lookup(Query("example.test", "MX"), budget) == Answer(("mx.example.test",))
        assert dns.lookup(Query("1.2.0.192.in-addr.arpa", "PTR"), budget).records == (
            "example.test",
        )
        assert dns.lookup(Query("example.test", "AAAA"), budget) == Answer()  # NODATA
        assert dns.lookup(Query("nowhere.test", "A"), budget) == Answer(nxdomain=True)
        assert dns.lookup(Query("broken.test", "TXT"), budget) == Answer(temporary=True)
        assert dns.lookup(Query("bad..name", "TXT"), budget) == Answer(nxdomain=True)


def test_answers_are_cached() -> None:
    with DNSServer(ZONES) as address:
        dns = AuthDNS([address])
        budget = Budget.of(5)
        first = dns.lookup(Query("example.test", "TXT"), budget)
    # The server is gone: the cached answer still comes back.
    assert dns.lookup(Query("EXAMPLE.test.", "TXT"), Budget.of(1)) == first


def test_a_spent_budget_answers_temporary_without_asking() -> None:
    with DNSServer(ZONES, drop={"slow.test"}) as address:
        dns = AuthDNS([address])
        budget = Budget.of(0.5)
        started = time.monotonic()
        assert dns.lookup(Query("slow.test", "TXT"), budget) == Answer(temporary=True)
        assert dns.lookup(Query("example.test", "TXT"), budget) == Answer(temporary=True)
        assert time.monotonic() - started < 1.5
