"""The dnspython resolver against a real authoritative DNS server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import random
import socket
import time
from collections.abc import Awaitable, Iterator
from typing import TypeVar

import pytest

from mailstead.dns import (
    DNSResolver,
    MXRecord,
    NoAnswer,
    NXDomain,
    Resolver,
    TemporaryDNSError,
)
from mailstead.mta.routing import Destination, PermanentRoutingError, TemporaryRoutingError, route
from mailstead.testing.dns import DNSServer, FakeResolver, Zones

T = TypeVar("T")

ZONES: Zones = {
    "other.test": {"MX": [(20, "mx2.other.test"), (10, "mx1.other.test")]},
    "mx1.other.test": {"A": ["127.0.0.2"]},
    "mx2.other.test": {"A": ["127.0.0.3"], "AAAA": ["::1"]},
    "v6only.test": {"AAAA": ["2001:DB8::1"]},
    "nomail.test": {"MX": [(0, ".")]},
    "cname.test": {"CNAME": ["mx1.other.test"]},
    "xn--bcher-kva.test": {"MX": [(10, "mx1.other.test")]},
    "txt.test": {"TXT": ["v=spf1 -all", "x" * 300]},
    "fat.test": {"A": [f"10.0.{i // 250}.{i % 250 + 1}" for i in range(120)]},
    "broken.test": {"MX": [(10, "mx1.other.test")]},
    "slow.test": {"MX": [(10, "mx1.other.test")]},
    "refused.test": {"A": ["127.0.0.9"]},
    "halfbroken.test": {"A": ["127.0.0.4"], "AAAA": ["::1"]},
}


@pytest.fixture(scope="module")
def server() -> Iterator[DNSServer]:
    dns_server = DNSServer(
        ZONES,
        servfail={"broken.test", ("halfbroken.test", "AAAA")},
        refuse={"refused.test"},
        drop={"slow.test"},
    )
    with dns_server:
        yield dns_server
    assert dns_server.errors == []


@pytest.fixture
def resolver(server: DNSServer) -> DNSResolver:
    return DNSResolver([server.address], timeout=0.5)


def run(awaitable: Awaitable[T]) -> T:
    async def main() -> T:
        return await awaitable

    return asyncio.run(main())


def test_both_implementations_satisfy_the_resolver_protocol(resolver: DNSResolver) -> None:
    implementations: list[Resolver] = [resolver, FakeResolver(ZONES)]
    assert len(implementations) == 2


def test_the_server_listens_on_loopback_with_a_kernel_chosen_port(server: DNSServer) -> None:
    host, port = server.address
    assert host == "127.0.0.1" and port not in (0, 53)


def test_mx_records_come_back_as_sent(resolver: DNSResolver) -> None:
    records = run(resolver.mx("other.test"))
    assert sorted(records) == [MXRecord(10, "mx1.other.test"), MXRecord(20, "mx2.other.test")]


def test_a_null_mx_has_the_root_as_exchange(resolver: DNSResolver) -> None:
    (record,) = run(resolver.mx("nomail.test"))
    assert record == MXRecord(0, ".") and record.is_null


def test_addresses_are_a_then_aaaa(resolver: DNSResolver) -> None:
    assert run(resolver.addresses("mx1.other.test")) == ["127.0.0.2"]
    assert run(resolver.addresses("mx2.other.test")) == ["127.0.0.3", "::1"]
    assert run(resolver.addresses("v6only.test")) == ["2001:db8::1"]


def test_a_cname_is_followed(resolver: DNSResolver) -> None:
    assert run(resolver.addresses("cname.test")) == ["127.0.0.2"]


def test_an_idn_is_asked_for_in_a_label_form(resolver: DNSResolver, server: DNSServer) -> None:
    assert run(resolver.mx("Bücher.TEST.")) == [MXRecord(10, "mx1.other.test")]
    assert ("udp", "xn--bcher-kva.test", "MX") in server.queries


def test_txt_strings_are_joined(resolver: DNSResolver) -> None:
    assert sorted(run(resolver.txt("txt.test"))) == [b"v=spf1 -all", b"x" * 300]


def test_a_response_too_big_for_udp_is_retried_over_tcp(
    resolver: DNSResolver, server: DNSServer
) -> None:
    found = run(resolver.addresses("fat.test"))
    assert len(found) == 120
    assert ("tcp", "fat.test", "A") in server.queries


def test_nxdomain(resolver: DNSResolver) -> None:
    with pytest.raises(NXDomain):
        run(resolver.mx("nowhere.test"))
    with pytest.raises(NXDomain):
        run(resolver.addresses("nowhere.test"))


def test_no_records_of_the_type(resolver: DNSResolver) -> None:
    with pytest.raises(NoAnswer):
        run(resolver.mx("mx1.other.test"))
    with pytest.raises(NoAnswer):
        run(resolver.addresses("other.test"))


def test_no_search_list_single_label_names_stay_single_label(
    resolver: DNSResolver, server: DNSServer
) -> None:
    with pytest.raises(NXDomain):
        run(resolver.mx("other"))
    assert ("udp", "other", "MX") in server.queries


@pytest.mark.parametrize("name", ["broken.test", "refused.test"])
def test_servfail_and_refused_are_temporary(resolver: DNSResolver, name: str) -> None:
    with pytest.raises(TemporaryDNSError):
        run(resolver.mx(name))


def test_one_family_failing_leaves_the_other(resolver: DNSResolver) -> None:
    assert run(resolver.addresses("halfbroken.test")) == ["127.0.0.4"]


def test_a_server_that_never_answers_times_out_as_temporary(server: DNSServer) -> None:
    quick = DNSResolver([server.address], timeout=0.3)
    started = time.monotonic()
    with pytest.raises(TemporaryDNSError):
        run(quick.mx("slow.test"))
    assert time.monotonic() - started < 2.0


def test_an_unreachable_server_is_temporary() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens there any more.
    with pytest.raises(TemporaryDNSError):
        run(DNSResolver([("127.0.0.1", port)], timeout=0.3).mx("other.test"))


def test_the_server_ignores_garbage_and_keeps_answering(
    resolver: DNSResolver, server: DNSServer
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as junk:
        junk.sendto(b"\x00\x01not dns", server.address)
    assert run(resolver.addresses("mx1.other.test")) == ["127.0.0.2"]


def test_bad_timeout_is_an_api_error() -> None:
    with pytest.raises(ValueError):
        DNSResolver([("127.0.0.1", 53)], timeout=0)


# --------------------------------------------------------------------------- route() end to end


def test_route_through_real_dns(resolver: DNSResolver) -> None:
    r = run(route("other.test", resolver, rng=random.Random(0)))
    assert r.destinations == (
        Destination("mx1.other.test", 10, ("127.0.0.2",)),
        Destination("mx2.other.test", 20, ("127.0.0.3", "::1")),
    )


def test_route_through_real_dns_detects_ourselves(resolver: DNSResolver) -> None:
    r = run(route("other.test", resolver, local_addresses=["127.0.0.3"]))
    assert [d.host for d in r.destinations] == ["mx1.other.test"]


def test_route_through_real_dns_failures(resolver: DNSResolver) -> None:
    with pytest.raises(PermanentRoutingError) as null:
        run(route("nomail.test", resolver))
    assert null.value.enhanced == "5.1.10"
    with pytest.raises(PermanentRoutingError) as nx:
        run(route("nowhere.test", resolver))
    assert nx.value.enhanced == "5.1.2"
    with pytest.raises(TemporaryRoutingError) as servfail:
        run(route("broken.test", resolver))
    assert servfail.value.enhanced == "4.4.3"
