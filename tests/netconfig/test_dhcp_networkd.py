"""``net dhcp`` asking a real systemd-networkd, run inside the test's own namespaces.

systemd-networkd and a private D-Bus system bus run in the client's network
namespace and in a mount (and UTS) namespace of their own, where ``/run``
and ``/etc/systemd/network`` are directories of a temporary tree (the
``root`` Mailstead is given) and ``/sys`` is read-only, which tells networkd
there is no udev to wait for (a container, to it). The bus has no service
directories, so nothing is activated on it (no hostnamed, no resolved).
``networkctl`` is the real one, entered into those namespaces by a two-line
wrapper first on PATH. dnsmasq on the other end of the veth pair serves DHCP.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import pwd
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mailstead.netconfig.dhcp import obtain_lease, planned_changes
from tests.netconfig.conftest import DNS, RANGE, SERVER, Pair
from tests.tools import require

_DAEMONS = ("/lib/systemd/systemd-networkd", "/usr/lib/systemd/systemd-networkd")

# A bus that lets anyone own and call anything, and activates nothing.
_BUS = """\
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=/run/dbus/system_bus_socket</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
"""

_START = """\
set -e
mount --bind "$1/run" /run
mount --bind "$1/etc/systemd/network" /etc/systemd/network
mount -o remount,ro /sys
dbus-daemon --config-file="$1/bus.conf" --fork --nopidfile
exec "$2"
"""

NETWORK = """\
[Match]
Name=v0

[Network]
LinkLocalAddressing=no
IPv6AcceptRA=no

[DHCPv4]
UseHostname=no
UseNTP=no
"""


def _wait(what: str, done: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.fixture
def networkd(
    pair: Pair, resolv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """A running systemd-networkd for ``v0``; the tree that is its /run and /etc."""
    networkctl = require("networkctl")
    require("dbus-daemon")
    nsenter = require("nsenter")
    daemon = next((d for d in _DAEMONS if os.path.exists(d)), None)
    assert daemon is not None, "systemd-networkd is missing: apt-get install systemd"
    root = tmp_path / "root"
    netif = root / "run/systemd/netif"
    for folder in (root / "run/dbus", netif, root / "etc/systemd/network"):
        folder.mkdir(parents=True)
    os.chown(netif, *_ids("systemd-network"))
    (root / "bus.conf").write_text(_BUS)
    (root / "etc/systemd/network/10-v0.network").write_text(NETWORK)
    log = (tmp_path / "networkd.log").open("wb")
    proc = subprocess.Popen(
        [
            *(pair.ip, "netns", "exec", pair.ns),
            *("unshare", "--mount", "--uts", "--propagation", "private"),
            *("sh", "-c", _START, "start", str(root), daemon),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait("systemd-networkd to configure v0", lambda: _configured(netif / "links"))
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        wrapper = bin_dir / "networkctl"
        wrapper.write_text(
            f'#!/bin/sh\nexec {nsenter} --target {proc.pid} --mount --net {networkctl} "$@"\n'
        )
        wrapper.chmod(0o755)
        monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
        yield root
    finally:
        # Only what this fixture started: every process in the test's namespace.
        for pid in subprocess.run(
            [pair.ip, "netns", "pids", pair.ns], capture_output=True, text=True, check=False
        ).stdout.split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGTERM)
        proc.wait(timeout=10)
        log.close()


def _ids(user: str) -> tuple[int, int]:
    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid


def _configured(links: Path) -> bool:
    return any("ADMIN_STATE=configured" in p.read_text() for p in links.glob("*") if p.name != "1")


def test_networkd_runs_dhcp_for_us_and_drops_it(pair: Pair, server: Path, networkd: Path) -> None:
    root = networkd
    plan = planned_changes("v0", netns=pair.ns, root=root)
    assert plan[0].startswith("asks systemd-networkd: systemd-networkd manages v0")
    assert plan[2] == "runs networkctl reload and networkctl reconfigure v0"

    lease = obtain_lease("v0", netns=pair.ns, root=root, timeout=20)

    low, high = (ipaddress.ip_address(a) for a in RANGE)
    assert low <= ipaddress.ip_address(lease.address) <= high
    assert (lease.prefix, lease.router, lease.dns, lease.lease_time) == (24, SERVER, DNS, 600)
    assert (lease.server, lease.client) == (SERVER, "systemd-networkd")
    assert f"{lease.address}/24" in pair.cidrs()  # networkd put it there
    assert lease.address in server.read_text()
    drop_in = root / "etc/systemd/network/10-v0.network.d/mailstead-dhcp.conf"
    assert drop_in.read_text().endswith("[Network]\nDHCP=ipv4\n")

    released = obtain_lease("v0", release=True, netns=pair.ns, root=root, timeout=20)

    assert released == lease
    assert not drop_in.exists()
    _wait("networkd to drop the address", lambda: f"{lease.address}/24" not in pair.cidrs())
    leases = root / "run/systemd/netif/leases"
    _wait("networkd to forget the lease", lambda: not any(leases.iterdir()))
