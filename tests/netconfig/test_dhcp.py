"""``obtain_lease``: dhclient in one namespace, dnsmasq serving DHCP in the other, over a veth pair.

The ``resolv`` and ``server`` fixtures (conftest) keep everything off the host.
"""

from __future__ import annotations

import ipaddress
import time
from pathlib import Path

import pytest

from mailstead.netconfig import live
from mailstead.netconfig.dhcp import DHCPError, Lease, obtain_lease, planned_changes
from tests.netconfig.conftest import DNS, RANGE, SERVER, Pair
from tests.tools import require


def _routes(pair: Pair) -> str:
    return pair.run("-4", "route", "show", "table", "main")


def test_lease_is_obtained_applied_and_released(pair: Pair, resolv: Path, server: Path) -> None:
    require("dhclient")
    plan = planned_changes(pair.iface, client="dhclient", netns=pair.ns)
    assert any(line.startswith("files: none") for line in plan)
    assert any("default route" in line and "left alone" in line for line in plan)

    lease = obtain_lease(pair.iface, client="dhclient", netns=pair.ns, timeout=20)

    low, high = (ipaddress.ip_address(a) for a in RANGE)
    assert low <= ipaddress.ip_address(lease.address) <= high
    assert (lease.prefix, lease.router, lease.dns) == (24, SERVER, DNS)
    assert lease.lease_time == 600
    assert (lease.server, lease.client, lease.iface) == (SERVER, "dhclient", pair.iface)
    assert lease.to_json() == {
        "iface": pair.iface,
        "address": lease.address,
        "prefix": 24,
        "router": SERVER,
        "dns": list(DNS),
        "lease_time": 600,
        "server": SERVER,
        "client": "dhclient",
    }
    # On the interface, with the lease time as its lifetime (RFC 2131 §4.4.5).
    [info] = [a for a in pair.addrs() if a["local"] == lease.address]
    assert info["prefixlen"] == 24
    assert 590 <= int(str(info["valid_life_time"])) <= 600
    assert f"default via {SERVER} dev {pair.iface}" in _routes(pair)
    # The server holds it for this client.
    assert lease.address in server.read_text()
    assert resolv.read_text().startswith("# the test namespace's own")

    released = obtain_lease(pair.iface, release=True, client="dhclient", netns=pair.ns, timeout=20)
    assert released.address == lease.address
    assert lease.address not in {a["local"] for a in pair.addrs()}
    deadline = time.monotonic() + 5
    while lease.address in server.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert lease.address not in server.read_text()  # DHCPRELEASE reached dnsmasq


def test_existing_default_route_is_left_alone(pair: Pair, resolv: Path, server: Path) -> None:
    require("dhclient")
    pair.run("addr", "add", "10.88.0.2/24", "dev", pair.iface)
    pair.run("route", "add", "default", "via", "10.88.0.1")
    lease = obtain_lease(pair.iface, client="dhclient", netns=pair.ns, timeout=20)
    routes = _routes(pair)
    assert "default via 10.88.0.1" in routes
    assert f"default via {SERVER}" not in routes
    assert isinstance(lease, Lease)


def test_no_server_is_one_line(pair: Pair, resolv: Path) -> None:
    require("dhclient")
    with pytest.raises(DHCPError, match=r"^no DHCP lease on v0 within 3 s") as caught:
        obtain_lease(pair.iface, client="dhclient", netns=pair.ns, timeout=3)
    assert "\n" not in str(caught.value)
    assert pair.cidrs() == set()


def test_missing_interface(pair: Pair) -> None:
    with pytest.raises(live.InterfaceNotFoundError, match="no interface named 'nope0'"):
        planned_changes("nope0", netns=pair.ns)
