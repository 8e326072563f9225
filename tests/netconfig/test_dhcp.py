"""``obtain_lease``: dhclient in one namespace, dnsmasq serving DHCP in the other, over a veth pair.

Nothing reaches the host: dnsmasq answers DHCP only (``--port=0``, no
resolv.conf, no hosts file) with its lease file under ``tmp_path``, and
``/etc/netns/NS/resolv.conf`` is in place before anything runs in the
client's namespace, so even a client that wrote resolv.conf would write
that file, not the host's.
"""

from __future__ import annotations

import contextlib
import ipaddress
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailstead.netconfig import live
from mailstead.netconfig.dhcp import DHCPError, Lease, obtain_lease, planned_changes
from tests.netconfig.conftest import Pair
from tests.tools import require

SERVER = "10.77.0.1"
RANGE = ("10.77.0.50", "10.77.0.54")
DNS = ("10.77.0.53", "10.77.0.54")


@pytest.fixture
def resolv(pair: Pair) -> Iterator[Path]:
    """``/etc/netns/NS/resolv.conf`` for the client's namespace, removed after the test."""
    netns_dir = Path("/etc/netns")
    made_root = not netns_dir.exists()
    folder = netns_dir / pair.ns
    folder.mkdir(parents=True)
    path = folder / "resolv.conf"
    path.write_text("# the test namespace's own; the host's file is never touched\n")
    try:
        yield path
    finally:
        path.unlink()
        folder.rmdir()
        if made_root:
            with contextlib.suppress(OSError):  # another test's folder is in it
                netns_dir.rmdir()


@pytest.fixture
def server(pair: Pair, tmp_path: Path) -> Iterator[Path]:
    """dnsmasq on ``v1`` in the peer namespace; the path of its lease file."""
    dnsmasq = require("dnsmasq")
    pair.run("addr", "add", f"{SERVER}/24", "dev", pair.peer, ns=pair.peer_ns)
    leases = tmp_path / "dnsmasq.leases"
    proc = subprocess.Popen(
        [
            pair.ip, "netns", "exec", pair.peer_ns, dnsmasq,
            "--keep-in-foreground", "--conf-file=/dev/null", "--user=root", "--pid-file=",
            "--no-resolv", "--no-hosts", "--port=0",
            f"--interface={pair.peer}", "--bind-interfaces",
            f"--dhcp-range={RANGE[0]},{RANGE[1]},255.255.255.0,10m",
            f"--dhcp-option=option:router,{SERVER}",
            f"--dhcp-option=option:dns-server,{DNS[0]},{DNS[1]}",
            f"--dhcp-leasefile={leases}", "--dhcp-authoritative",
            f"--log-facility={tmp_path / 'dnsmasq.log'}", "--log-dhcp",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    time.sleep(0.3)
    assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
    try:
        yield leases
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _routes(pair: Pair) -> str:
    return pair.run("-4", "route", "show", "table", "main")


def test_lease_is_obtained_applied_and_released(pair: Pair, resolv: Path, server: Path) -> None:
    require("dhclient")
    plan = planned_changes(pair.iface, netns=pair.ns)
    assert any(line.startswith("files: none") for line in plan)
    assert any("default route" in line and "left alone" in line for line in plan)

    lease = obtain_lease(pair.iface, netns=pair.ns, timeout=20)

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

    released = obtain_lease(pair.iface, release=True, netns=pair.ns, timeout=20)
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
    lease = obtain_lease(pair.iface, netns=pair.ns, timeout=20)
    routes = _routes(pair)
    assert "default via 10.88.0.1" in routes
    assert f"default via {SERVER}" not in routes
    assert isinstance(lease, Lease)


def test_no_server_is_one_line(pair: Pair, resolv: Path) -> None:
    require("dhclient")
    with pytest.raises(DHCPError, match=r"^no DHCP lease on v0 within 3 s") as caught:
        obtain_lease(pair.iface, netns=pair.ns, timeout=3)
    assert "\n" not in str(caught.value)
    assert pair.cidrs() == set()


def test_missing_interface(pair: Pair) -> None:
    with pytest.raises(live.InterfaceNotFoundError, match="no interface named 'nope0'"):
        planned_changes("nope0", netns=pair.ns)
