"""ISC ``dhclient`` (Debian's isc-dhcp-client), run once with everything of its own kept aside.

Its lease file, pid file and configuration are in the temporary directory
``work``, and the reporting script replaces ``dhclient-script`` (which
rewrites ``/etc/resolv.conf``, the routes and the hostname): the lease is
read from the variables dhclient passes it (dhclient-script(8)).
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

from mailstead.netconfig.dhcp.lease import (
    DHCPError,
    Lease,
    bound,
    in_netns,
    lease_from_options,
    write_report_script,
)

__all__ = ["PLAN", "obtain", "release"]

#: How dhclient is run, for the plan ``net dhcp`` prints first.
PLAN = (
    "with its lease file, pid file and configuration in a temporary directory, "
    "removed afterwards, and a script that only reports (dhclient-script is not run)"
)

_CONF = """\
timeout {timeout};
request subnet-mask, broadcast-address, routers, domain-name-servers, dhcp-lease-time;
"""


def _files(work: Path) -> list[str]:
    return [
        *("-cf", str(work / "dhclient.conf")),
        *("-lf", str(work / "dhclient.leases")),
        *("-pf", str(work / "dhclient.pid")),
        *("-sf", str(work / "report")),
    ]


def _lease(iface: str, seen: dict[str, str]) -> Lease:
    # dhclient-script names the new lease's options new_<option>.
    options = {k.removeprefix("new_"): v for k, v in seen.items() if k.startswith("new_")}
    problem = "dhclient reported a lease without a usable address"
    return lease_from_options(iface, options, "dhclient", problem)


def obtain(client: str, iface: str, work: Path, timeout: float, netns: str | None) -> Lease:
    """Run ``dhclient -1`` until it reports a lease; it never configures anything itself."""
    _, report = write_report_script(work)
    (work / "dhclient.conf").write_text(_CONF.format(timeout=max(1, int(timeout))))
    argv = [client, "-d", "-1", "-4", *_files(work), iface]
    log = (work / "dhclient.log").open("wb")
    with log:
        proc = subprocess.Popen(in_netns(netns, argv), stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        try:
            while (seen := bound(report)) is None:
                if proc.poll() is not None or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
        finally:
            # SIGKILL: it exits holding the lease; a SIGTERM may release it.
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            proc.wait()
    if seen is None:
        said = (work / "dhclient.log").read_text(errors="replace").strip().splitlines()
        last = said[-1] if said else "no output"
        raise DHCPError(f"no DHCP lease on {iface} within {timeout:g} s (dhclient: {last})")
    return _lease(iface, seen)


def release(client: str, iface: str, work: Path, netns: str | None) -> None:
    """``dhclient -r`` with the lease :func:`obtain` left in ``work`` (RFC 2131 §4.4.6)."""
    argv = [client, "-r", "-4", *_files(work), iface]
    done = subprocess.run(in_netns(netns, argv), capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip().splitlines()
        raise DHCPError(f"dhclient -r failed: {said[-1] if said else done.returncode}")
