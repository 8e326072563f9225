"""MX routing over a fake resolver: the RFC 5321 §5.1 / RFC 7505 rules, one case each."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Collection

import pytest

from mailstead.mta.routing import (
    MAX_MX_HOSTS,
    Destination,
    PermanentRoutingError,
    Route,
    RoutingError,
    TemporaryRoutingError,
    route,
)
from mailstead.testing.dns import FakeResolver, NameOrQuestion, Zones

ZONES: Zones = {
    # Two MX levels, the first with three hosts of equal preference.
    "other.test": {
        "MX": [
            (20, "backup.other.test"),
            (10, "mx-a.other.test"),
            (10, "mx-b.other.test"),
            (10, "mx-c.other.test"),
        ],
    },
    "mx-a.other.test": {"A": ["192.0.2.1"]},
    "mx-b.other.test": {"A": ["192.0.2.2"], "AAAA": ["2001:db8::2"]},
    "mx-c.other.test": {"AAAA": ["2001:db8::3"]},
    "backup.other.test": {"A": ["192.0.2.20"]},
    # No MX: the implicit MX is the domain's own A/AAAA.
    "plain.test": {"A": ["192.0.2.30"], "AAAA": ["2001:db8::30"]},
    # No MX, no address: exists (has a TXT) but cannot take mail.
    "nohost.test": {"TXT": ["v=spf1 -all"]},
    # RFC 7505 null MX.
    "nomail.test": {"MX": [(0, ".")], "A": ["192.0.2.40"]},
    # A null MX beside a real one (breaks RFC 7505 §3): the real one is used.
    "mixed-null.test": {"MX": [(0, "."), (10, "mx.mixed-null.test")]},
    "mx.mixed-null.test": {"A": ["192.0.2.41"]},
    # MX hosts that do not resolve.
    "ghost.test": {"MX": [(10, "gone.ghost.test"), (20, "empty.ghost.test")]},
    "empty.ghost.test": {"TXT": ["no address here"]},
    "half.test": {"MX": [(10, "gone.half.test"), (20, "ok.half.test")]},
    "ok.half.test": {"A": ["192.0.2.50"]},
    "flaky.test": {"MX": [(10, "down.flaky.test"), (20, "gone.flaky.test")]},
    "down.flaky.test": {"A": ["192.0.2.60"]},
    # We are mail.self.test (192.0.2.99), a backup MX for these.
    "mail.self.test": {"A": ["192.0.2.99"]},
    "weback.test": {
        "MX": [
            (10, "primary.weback.test"),
            (20, "mail.self.test"),
            (30, "third.weback.test"),
            (20, "twin.weback.test"),
        ],
    },
    "primary.weback.test": {"A": ["192.0.2.70"]},
    "twin.weback.test": {"A": ["192.0.2.71"]},
    "third.weback.test": {"A": ["192.0.2.72"]},
    "weprimary.test": {"MX": [(10, "mail.self.test"), (20, "backup.weprimary.test")]},
    "backup.weprimary.test": {"A": ["192.0.2.73"]},
    # Our address under another name.
    "alias-self.test": {"MX": [(5, "first.alias-self.test"), (10, "other-name.alias-self.test")]},
    "first.alias-self.test": {"A": ["192.0.2.74"]},
    "other-name.alias-self.test": {"A": ["192.0.2.75", "192.0.2.99"]},
    "only-alias-self.test": {"MX": [(10, "other-name.alias-self.test")]},
    "implicit-self.test": {"A": ["192.0.2.99"]},
    # IDN: bücher.test in A-label form.
    "xn--bcher-kva.test": {"MX": [(10, "mx.xn--bcher-kva.test")]},
    "mx.xn--bcher-kva.test": {"A": ["192.0.2.80"]},
    # Hostile: many MX hosts, a host with many addresses, junk exchanges.
    "many.test": {"MX": [(i, f"mx{i}.many.test") for i in range(50)]},
    **{f"mx{i}.many.test": {"A": [f"198.51.100.{i}"]} for i in range(50)},
    "fat.test": {"MX": [(10, "fat-mx.fat.test")]},
    "fat-mx.fat.test": {
        "A": [f"203.0.113.{i}" for i in range(1, 60)],
        "AAAA": [f"2001:db8::{i:x}" for i in range(1, 60)],
    },
    "ipmx.test": {"MX": [(10, "192.0.2.1")]},
    "dupmx.test": {"MX": [(20, "MX.dupmx.test"), (10, "mx.dupmx.test.")]},
    "mx.dupmx.test": {"A": ["192.0.2.90"]},
    # CNAME to a host: followed.
    "cname.test": {"MX": [(10, "alias.cname.test")]},
    "alias.cname.test": {"CNAME": ["real.cname.test"]},
    "real.cname.test": {"A": ["192.0.2.91"]},
}

OURS = {"local_hostnames": ["mail.self.test"], "local_addresses": ["192.0.2.99"]}


def resolve(
    domain: str,
    *,
    fail: Collection[NameOrQuestion] = (),
    seed: int = 0,
    resolver: FakeResolver | None = None,
    local_domains: Collection[str] = (),
    max_mx: int = MAX_MX_HOSTS,
) -> Route:
    res = resolver if resolver is not None else FakeResolver(ZONES, fail=fail)
    return asyncio.run(
        route(
            domain,
            res,
            rng=random.Random(seed),
            local_domains=local_domains,
            local_hostnames=OURS["local_hostnames"],
            local_addresses=OURS["local_addresses"],
            max_mx=max_mx,
        )
    )


def failure(domain: str, fail: Collection[NameOrQuestion] = ()) -> RoutingError:
    with pytest.raises(RoutingError) as info:
        resolve(domain, fail=fail)
    return info.value


def hosts(r: Route) -> list[tuple[int, str]]:
    return [(d.preference, d.host) for d in r.destinations]


# --------------------------------------------------------------------------- MX order


def test_mx_hosts_are_sorted_by_preference_with_their_addresses() -> None:
    r = resolve("other.test")
    assert r.domain == "other.test" and not r.local and not r.implicit_mx
    assert [p for p, _ in hosts(r)] == [10, 10, 10, 20]
    assert {h for _, h in hosts(r)[:3]} == {"mx-a.other.test", "mx-b.other.test", "mx-c.other.test"}
    assert r.destinations[3] == Destination("backup.other.test", 20, ("192.0.2.20",))
    by_host = {d.host: d.addresses for d in r.destinations}
    assert by_host["mx-b.other.test"] == ("192.0.2.2", "2001:db8::2")  # A, then AAAA
    assert by_host["mx-c.other.test"] == ("2001:db8::3",)  # IPv6 only


def test_equal_preferences_are_shuffled_and_every_order_occurs() -> None:
    # RFC 5321 §5.1: equal preferences MUST be randomised. 3 hosts: 6 orders.
    rng = random.Random(1234)
    resolver = FakeResolver(ZONES)
    orders: dict[tuple[str, ...], int] = {}

    async def many() -> None:
        for _ in range(600):
            r = await route("other.test", resolver, rng=rng)
            first = tuple(d.host for d in r.destinations[:3])
            orders[first] = orders.get(first, 0) + 1
            assert r.destinations[3].host == "backup.other.test"  # never shuffled in

    asyncio.run(many())
    assert len(orders) == 6
    assert min(orders.values()) > 60  # roughly uniform (expected 100 each)


def test_a_seeded_rng_gives_the_same_order() -> None:
    assert hosts(resolve("other.test", seed=7)) == hosts(resolve("other.test", seed=7))


def test_the_same_host_twice_is_kept_once_at_its_best_preference() -> None:
    assert hosts(resolve("dupmx.test")) == [(10, "mx.dupmx.test")]


def test_an_mx_host_behind_a_cname_is_followed() -> None:
    r = resolve("cname.test")
    assert r.destinations == (Destination("alias.cname.test", 10, ("192.0.2.91",)),)


# --------------------------------------------------------------------------- implicit MX, literals


def test_no_mx_means_the_domain_is_its_own_implicit_mx() -> None:
    r = resolve("plain.test")
    assert r.implicit_mx
    assert r.destinations == (Destination("plain.test", 0, ("192.0.2.30", "2001:db8::30")),)


def test_an_address_literal_routes_to_that_address_without_dns() -> None:
    resolver = FakeResolver(ZONES)
    r = resolve("[192.0.2.7]", resolver=resolver)
    assert r.destinations == (Destination("[192.0.2.7]", 0, ("192.0.2.7",)),)
    r6 = resolve("[IPv6:2001:DB8::7]", resolver=resolver)
    assert r6.destinations == (Destination("[IPv6:2001:db8::7]", 0, ("2001:db8::7",)),)
    assert resolver.queries == []


def test_a_local_domain_is_delivered_locally_without_dns() -> None:
    resolver = FakeResolver(ZONES)
    r = resolve("Example.TEST.", resolver=resolver, local_domains=["example.test"])
    assert r == Route("example.test", local=True)
    assert resolver.queries == []


def test_an_idn_domain_is_looked_up_in_a_label_form() -> None:
    resolver = FakeResolver(ZONES)
    r = resolve("Bücher.test", resolver=resolver)
    assert r.domain == "xn--bcher-kva.test"
    assert r.destinations == (Destination("mx.xn--bcher-kva.test", 10, ("192.0.2.80",)),)
    assert resolver.queries[0] == ("xn--bcher-kva.test", "MX")


# --------------------------------------------------------------------------- failures
# (domain, fail knob) -> (reply code, enhanced status code)

FAILURES = [
    ("nomail.test", (), 556, "5.1.10"),  # RFC 7505 null MX, despite the A record
    ("nxdomain.test", (), 550, "5.1.2"),  # NXDOMAIN
    ("nohost.test", (), 550, "5.1.2"),  # no MX, no A/AAAA
    ("ghost.test", (), 550, "5.4.4"),  # MX hosts: NXDOMAIN and NODATA
    ("ipmx.test", (), 550, "5.4.4"),  # MX naming an IP address (RFC 1035 §3.3.9)
    ("other.test", ["other.test"], 451, "4.4.3"),  # SERVFAIL/timeout on MX
    ("plain.test", [("plain.test", "A"), ("plain.test", "AAAA")], 451, "4.4.3"),  # on A/AAAA
    ("flaky.test", ["down.flaky.test"], 451, "4.4.3"),  # one host temp, the other gone
    ("weprimary.test", (), 550, "5.4.6"),  # we are the best MX
    ("only-alias-self.test", (), 550, "5.4.6"),  # the only MX has our address
    ("implicit-self.test", (), 550, "5.4.6"),  # implicit MX is our address
    ("mail.self.test", (), 550, "5.4.6"),  # implicit MX is our name
    ("[192.0.2.99]", (), 550, "5.4.6"),  # a literal of our own address
    ("bad_domain..test", (), 550, "5.1.2"),  # not a domain at all
    ("[300.1.1.1]", (), 550, "5.1.2"),  # not an address literal
]


@pytest.mark.parametrize(("domain", "fail", "code", "enhanced"), FAILURES)
def test_routing_failure(
    domain: str, fail: Collection[NameOrQuestion], code: int, enhanced: str
) -> None:
    error = failure(domain, fail=fail)
    assert (error.code, error.enhanced) == (code, enhanced)
    assert error.permanent == enhanced.startswith("5")
    assert isinstance(error, PermanentRoutingError if error.permanent else TemporaryRoutingError)
    assert str(error) == f"{code} {enhanced} {error.text}"


def test_failure_texts_name_the_domain_and_nothing_internal() -> None:
    assert failure("nomail.test").text == "Domain nomail.test does not accept mail"
    # Postfix's words for DNS failures, which admins know and search for.
    assert failure("nxdomain.test").text == (
        "Host or domain name not found. Name service error for name=nxdomain.test type=MX:"
        " Host not found"
    )
    assert failure("weprimary.test").text == "Mail for weprimary.test loops back to this server"
    assert failure("other.test", fail=["other.test"]).text == (
        "Host or domain name not found. Name service error for name=other.test type=MX:"
        " Host not found, try again"
    )


def test_a_null_mx_is_not_followed_by_an_address_lookup() -> None:
    resolver = FakeResolver(ZONES)
    with pytest.raises(PermanentRoutingError):
        resolve("nomail.test", resolver=resolver)
    assert resolver.queries == [("nomail.test", "MX")]


def test_a_null_mx_beside_real_mx_hosts_is_ignored() -> None:
    assert hosts(resolve("mixed-null.test")) == [(10, "mx.mixed-null.test")]


def test_mx_hosts_without_addresses_are_skipped() -> None:
    assert hosts(resolve("half.test")) == [(20, "ok.half.test")]


def test_a_temporary_failure_on_one_mx_host_leaves_the_others() -> None:
    r = resolve("other.test", fail=["mx-a.other.test"])
    assert {h for _, h in hosts(r)} == {"mx-b.other.test", "mx-c.other.test", "backup.other.test"}


def test_one_failed_address_family_keeps_the_other() -> None:
    r = resolve("plain.test", fail=[("plain.test", "AAAA")])
    assert r.destinations[0].addresses == ("192.0.2.30",)


# ----------------------------------------------------------------- ourselves in the MX list


def test_our_name_as_a_backup_mx_drops_us_and_every_mx_at_or_above_our_preference() -> None:
    # RFC 5321 §5.1: discard our entry and all with preference >= ours (20):
    # twin (20) and third (30) go too, only primary (10) is left.
    assert hosts(resolve("weback.test")) == [(10, "primary.weback.test")]


def test_our_address_under_another_name_counts_as_us() -> None:
    assert hosts(resolve("alias-self.test")) == [(5, "first.alias-self.test")]


def test_hosts_above_our_preference_are_not_even_looked_up() -> None:
    resolver = FakeResolver(ZONES)
    resolve("weback.test", resolver=resolver)
    looked_up = {name for name, _ in resolver.queries}
    assert looked_up == {"weback.test", "primary.weback.test"}


# --------------------------------------------------------------------------- bounded work


def test_at_most_max_mx_hosts_are_looked_up() -> None:
    resolver = FakeResolver(ZONES)
    r = resolve("many.test", resolver=resolver)
    assert hosts(r) == [(i, f"mx{i}.many.test") for i in range(MAX_MX_HOSTS)]
    assert len(resolver.queries) == 1 + 2 * MAX_MX_HOSTS  # MX, then A+AAAA per host
    assert len(resolve("many.test", max_mx=2).destinations) == 2


def test_at_most_ten_addresses_per_host_are_kept() -> None:
    (dest,) = resolve("fat.test").destinations
    assert dest.addresses == tuple(f"203.0.113.{i}" for i in range(1, 11))


def test_bad_limits_are_an_api_error() -> None:
    with pytest.raises(ValueError):
        resolve("other.test", max_mx=0)
