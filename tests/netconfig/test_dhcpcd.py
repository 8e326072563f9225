"""``mailstead net dhcp --client dhcpcd``: dhcpcd in one namespace, dnsmasq in the other.

Run through the CLI with the hidden ``--netns``, as an operator would; the
``resolv`` and ``server`` fixtures (conftest) keep everything off the host,
and the test checks that dhcpcd's own directories on the host are untouched.
"""

from __future__ import annotations

import ipaddress
import json
import os
import time
from pathlib import Path

import pytest

from mailstead.netconfig.dhcp import DHCPError, obtain_lease
from mailstead.netconfig.dhcp.dhcpcd import parse_dump
from tests.cli.runner import run
from tests.netconfig.conftest import DNS, RANGE, SERVER, Pair
from tests.tools import require

_HOST_DIRS = (Path("/var/lib/dhcpcd"), Path("/run/dhcpcd"))


def _host_state() -> dict[Path, list[str] | None]:
    return {d: sorted(os.listdir(d)) if d.is_dir() else None for d in _HOST_DIRS}


def test_cli_lease_with_dhcpcd_and_release(
    pair: Pair, resolv: Path, server: Path, tmp_path: Path
) -> None:
    require("dhcpcd")
    host = _host_state()
    config = tmp_path / "absent.toml"  # net dhcp reads no configuration

    got = run(config, "net", "--netns", pair.ns, "dhcp", "v0", "--client", "dhcpcd", "--json")

    assert got.exit_code == 0, got.output
    plan = [line for line in got.stderr.splitlines() if line.startswith("plan: ")]
    assert "private mount namespace" in plan[0] and "dhcpcd-run-hooks is not run" in plan[0]
    assert any(line.startswith("plan: files: none") for line in plan)
    assert any("default route" in line and "left alone" in line for line in plan)
    lease = json.loads(got.stdout)
    low, high = (ipaddress.ip_address(a) for a in RANGE)
    assert low <= ipaddress.ip_address(lease["address"]) <= high
    assert lease == {
        "iface": "v0",
        "address": lease["address"],
        "prefix": 24,
        "router": SERVER,
        "dns": list(DNS),
        "lease_time": 600,
        "server": SERVER,
        "client": "dhcpcd",
    }
    # Applied by Mailstead over netlink, with the lease time as its lifetime (RFC 2131 §4.4.5).
    [info] = [a for a in pair.addrs() if a["local"] == lease["address"]]
    assert info["prefixlen"] == 24
    assert 590 <= int(str(info["valid_life_time"])) <= 600
    assert f"default via {SERVER} dev v0" in pair.run("-4", "route", "show", "table", "main")
    assert lease["address"] in server.read_text()
    assert resolv.read_text().startswith("# the test namespace's own")
    assert _host_state() == host

    released = run(
        config, "net", "--netns", pair.ns, "dhcp", "v0", "--client", "dhcpcd", "--release"
    )

    assert released.exit_code == 0, released.output
    assert released.stdout.splitlines()[-5:] == [
        f"released {lease['address']}/24 on v0 from {SERVER}",
        f"router: {SERVER}",
        f"dns: {' '.join(DNS)}",
        "lease time: 600s",
        "client: dhcpcd",
    ]
    assert "plan: asks the server for the lease of v0 and releases it" in released.stdout
    assert lease["address"] not in {a["local"] for a in pair.addrs()}
    deadline = time.monotonic() + 5
    while lease["address"] in server.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert lease["address"] not in server.read_text()  # DHCPRELEASE reached dnsmasq
    assert _host_state() == host


def test_no_server_is_one_line(pair: Pair, resolv: Path) -> None:
    require("dhcpcd")
    with pytest.raises(DHCPError, match=r"^no DHCP lease on v0 within 2 s \(dhcpcd: ") as caught:
        obtain_lease(pair.iface, client="dhcpcd", netns=pair.ns, timeout=2)
    assert "\n" not in str(caught.value)
    assert pair.cidrs() == set()


def test_asked_for_client_that_is_missing(
    pair: Pair, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("mailstead.netconfig.dhcp.which", lambda name: None)
    failed = run(
        tmp_path / "absent.toml", "net", "--netns", pair.ns, "dhcp", "v0", "--client", "dhcpcd"
    )
    assert (failed.exit_code, failed.output) == (
        1,
        "mailstead: no DHCP client: install dhcpcd-base (dhcpcd)\n",
    )


def test_dump_is_read_as_dhcpcd_run_hooks_names_it() -> None:
    # dhcpcd 9.4.1 -4 -U < v0.lease, as a terminal shows it.
    shown = (
        "ip_address=10.77.0.54\r\nsubnet_cidr=24\r\nnetwork_number=10.77.0.0\r\n"
        "subnet_mask=255.255.255.0\r\nrouters=10.77.0.1\r\n"
        "domain_name_servers=10.77.0.53 10.77.0.54\r\nbroadcast_address=10.77.0.255\r\n"
        "dhcp_lease_time=600\r\ndhcp_message_type=5\r\ndhcp_server_identifier=10.77.0.1\r\n"
        "dhcp_renewal_time=300\r\ndhcp_rebinding_time=525\r\n"
    )
    lease = parse_dump("v0", shown)
    assert (lease.cidr, lease.router, lease.dns, lease.lease_time, lease.server) == (
        "10.77.0.54/24",
        "10.77.0.1",
        ("10.77.0.53", "10.77.0.54"),
        600,
        "10.77.0.1",
    )
    with pytest.raises(DHCPError, match="dhcpcd -U showed no usable lease for v0"):
        parse_dump("v0", "routers=10.77.0.1\n")
