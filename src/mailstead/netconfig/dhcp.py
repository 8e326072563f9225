"""A DHCPv4 lease obtained by the system's own client: ``mailstead net dhcp IFACE``.

ISC ``dhclient`` (Debian's isc-dhcp-client) speaks the protocol; Mailstead
never does. It runs with its lease file, pid file and configuration in a
temporary directory, and with a script that only reports what it was told
(in place of ``dhclient-script``, which rewrites ``/etc/resolv.conf``, the
routes and hostname). Mailstead then applies the lease itself, over netlink:

* the address, with the lease time as its valid and preferred lifetime, so
  the kernel drops it when the lease runs out (RFC 2131 §4.4.5: the client
  stops using an address whose lease expired; nothing renews it but running
  ``net dhcp`` again, as with ``dhclient -1``);
* a default route via the router, only when the namespace has none (an
  existing default route is never replaced);
* the DNS servers are reported, never written to ``/etc/resolv.conf``.

:func:`planned_changes` says the same before anything runs. An interface
that systemd-networkd or NetworkManager manage is refused with the command
that asks them: a second client beside theirs would fight over the address.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from pyroute2 import IPRoute  # type: ignore[import-untyped]
from pyroute2.netlink.exceptions import NetlinkError  # type: ignore[import-untyped]

from mailstead.netconfig import live

__all__ = ["DHCPError", "Lease", "obtain_lease", "planned_changes"]

_SBIN = "/usr/local/sbin:/usr/sbin:/sbin"
_MAIN_TABLE = 254  # linux/rtnetlink.h RT_TABLE_MAIN
# The last script call of a lease that is in force (dhclient-script(8)).
_BOUND = ("BOUND", "RENEW", "REBIND", "REBOOT")

# Only reports: one JSON line per call, of the variables dhclient passes.
_REPORT_SCRIPT = """\
#!{python} -I
import json, os
keep = ("reason", "interface")
seen = {{k: v for k, v in os.environ.items() if k in keep or k.startswith("new_")}}
with open({report!r}, "a", encoding="utf-8") as f:
    f.write(json.dumps(seen) + "\\n")
"""

_CONF = """\
timeout {timeout};
request subnet-mask, broadcast-address, routers, domain-name-servers, dhcp-lease-time;
"""


class DHCPError(live.NetconfigError):
    """No lease: no client, no answer, or an interface another manager runs."""


@dataclass(frozen=True, slots=True)
class Lease:
    """What the DHCP server granted (RFC 2131 §3.1, the options of RFC 2132)."""

    iface: str
    address: str
    prefix: int
    #: The first router offered (option 3), or ``None``.
    router: str | None
    #: DNS servers offered (option 6), in the server's order.
    dns: tuple[str, ...]
    #: Seconds the address may be used (option 51).
    lease_time: int
    #: The program that spoke DHCP, e.g. ``"dhclient"``.
    client: str
    #: The server that granted it (option 54).
    server: str | None = None

    @property
    def cidr(self) -> str:
        return f"{self.address}/{self.prefix}"

    def to_json(self) -> dict[str, object]:
        return {
            "iface": self.iface,
            "address": self.address,
            "prefix": self.prefix,
            "router": self.router,
            "dns": list(self.dns),
            "lease_time": self.lease_time,
            "server": self.server,
            "client": self.client,
        }


def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path=_SBIN)


def _manager(iface: str, netns: str | None) -> str | None:
    """Why another manager runs ``iface`` (with the command to ask it), or None."""
    if netns is not None:
        return None  # networkd and NetworkManager manage the host's namespace only
    index = socket.if_nametoindex(iface)
    # systemd-networkd's state for each link it knows (sd-network's own files).
    state = Path(f"/run/systemd/netif/links/{index}")
    try:
        text = state.read_text()
    except OSError:
        text = ""
    if "ADMIN_STATE=configured" in text or "ADMIN_STATE=configuring" in text:
        return (
            f"{iface} is managed by systemd-networkd, whose DHCP client runs it; "
            f"ask it instead: networkctl renew {iface}; networkctl status {iface}"
        )
    nmcli = _which("nmcli")
    if nmcli is not None:
        try:
            done = subprocess.run(
                [nmcli, "-t", "-g", "GENERAL.STATE", "device", "show", iface],
                capture_output=True,
                text=True,
                timeout=10,
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        # NMDeviceState: 10 unmanaged, 20 unavailable; above, NetworkManager holds it.
        code = done.stdout.strip().split(" ", 1)[0]
        if done.returncode == 0 and code.isdigit() and int(code) > 20:
            return (
                f"{iface} is managed by NetworkManager, whose DHCP client runs it; "
                f"ask it instead: nmcli device reapply {iface}; "
                f"nmcli -f IP4,DHCP4 device show {iface}"
            )
    return None


def _client(iface: str, netns: str | None) -> str:
    """The dhclient to run for ``iface``, after checking nothing else runs it."""
    if iface not in {link.name for link in live.links(netns=netns)}:
        raise live.InterfaceNotFoundError(f"no interface named {iface!r}")
    why = _manager(iface, netns)
    if why is not None:
        raise DHCPError(why)
    path = _which("dhclient")
    if path is None:
        raise DHCPError("no DHCP client: install isc-dhcp-client (dhclient)")
    return path


def planned_changes(iface: str, *, release: bool = False, netns: str | None = None) -> list[str]:
    """What obtaining (or releasing) a lease on ``iface`` will change, one line each."""
    client = _client(iface, netns)
    where = f" in network namespace {netns}" if netns else ""
    lines = [
        f"runs {client}{where} with its lease file, pid file and configuration in a "
        "temporary directory, removed afterwards, and a script that only reports "
        "(dhclient-script is not run)",
        "files: none (/etc/resolv.conf, /etc/hosts and the hostname are left alone; "
        "the DNS servers offered are only reported)",
    ]
    if release:
        lines += [
            f"asks the server for the lease of {iface} and releases it at once (DHCPRELEASE)",
            f"address: removes the leased address from {iface} if it is there",
            "routes: none",
        ]
    else:
        lines += [
            f"address: adds the leased address to {iface}, valid for the lease time",
            "routes: adds a default route via the leased router only if there is no "
            "default route; an existing one is left alone",
        ]
    return lines


def _command(client: str, netns: str | None, *args: str) -> list[str]:
    if netns is None:
        return [client, *args]
    ip = _which("ip")
    if ip is None:
        raise DHCPError("ip (iproute2) is needed to run dhclient in a network namespace")
    return [ip, "netns", "exec", netns, client, *args]


def _records(report: Path) -> list[dict[str, str]]:
    try:
        text = report.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    # A line without its newline is still being written.
    return [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]


def _bound(records: list[dict[str, str]]) -> dict[str, str] | None:
    return next((r for r in reversed(records) if r.get("reason") in _BOUND), None)


def _prefix(mask: str) -> int:
    bits = int.from_bytes(socket.inet_aton(mask), "big")
    prefix = bin(bits).count("1")
    if bits != (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF:
        raise DHCPError(f"the server sent a subnet mask that is not one: {mask!r}")
    return prefix


def _lease(iface: str, seen: dict[str, str]) -> Lease:
    try:
        address = str(socket.inet_ntoa(socket.inet_aton(seen["new_ip_address"])))
        prefix = _prefix(seen.get("new_subnet_mask", "255.255.255.255"))
        lease_time = int(seen.get("new_dhcp_lease_time", "0"))
    except (KeyError, OSError, ValueError):
        raise DHCPError(f"dhclient reported a lease without a usable address: {seen}") from None
    routers = seen.get("new_routers", "").split()
    return Lease(
        iface=iface,
        address=address,
        prefix=prefix,
        router=routers[0] if routers else None,
        dns=tuple(seen.get("new_domain_name_servers", "").split()),
        lease_time=lease_time,
        client="dhclient",
        server=seen.get("new_dhcp_server_identifier") or None,
    )


def _run_dhclient(client: str, iface: str, work: Path, timeout: float, netns: str | None) -> Lease:
    report = work / "report.jsonl"
    script = work / "report"
    script.write_text(_REPORT_SCRIPT.format(python=sys.executable, report=str(report)))
    script.chmod(0o700)
    (work / "dhclient.conf").write_text(_CONF.format(timeout=max(1, int(timeout))))
    args = [
        *("-d", "-1", "-4"),
        *("-cf", str(work / "dhclient.conf")),
        *("-lf", str(work / "dhclient.leases")),
        *("-pf", str(work / "dhclient.pid")),
        *("-sf", str(script)),
        iface,
    ]
    log = (work / "dhclient.log").open("wb")
    with log:
        proc = subprocess.Popen(
            _command(client, netns, *args), stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        try:
            while (seen := _bound(_records(report))) is None:
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


def _release(client: str, iface: str, work: Path, netns: str | None) -> None:
    args = [
        *("-r", "-4"),
        *("-cf", str(work / "dhclient.conf")),
        *("-lf", str(work / "dhclient.leases")),
        *("-pf", str(work / "dhclient.pid")),
        *("-sf", str(work / "report")),
        iface,
    ]
    done = subprocess.run(
        _command(client, netns, *args), capture_output=True, text=True, timeout=30
    )
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip().splitlines()
        raise DHCPError(f"dhclient -r failed: {said[-1] if said else done.returncode}")


def _apply(lease: Lease, netns: str | None) -> None:
    live.add_address(lease.iface, lease.cidr, netns=netns)
    try:
        with IPRoute(netns=netns, flags=0) if netns else IPRoute() as ipr:
            index = ipr.link_lookup(ifname=lease.iface)[0]
            # RFC 2131 §4.4.5: the address goes when the lease does.
            ipr.addr(
                "replace",
                index=index,
                address=lease.address,
                prefixlen=lease.prefix,
                family=socket.AF_INET,
                valid_lft=lease.lease_time,
                preferred_lft=lease.lease_time,
            )
            if lease.router is not None and not ipr.get_routes(
                family=socket.AF_INET, dst_len=0, table=_MAIN_TABLE
            ):
                ipr.route("add", dst="0.0.0.0/0", gateway=lease.router, oif=index)
    except NetlinkError as exc:
        raise DHCPError(f"applying the lease of {lease.cidr} to {lease.iface}: {exc}") from None


def obtain_lease(
    iface: str, *, release: bool = False, timeout: float = 30.0, netns: str | None = None
) -> Lease:
    """Obtain a DHCPv4 lease on ``iface`` and apply it; with ``release``, give it back.

    Releasing asks the server for the lease it holds for this interface
    (the same address, by hardware address) and releases it at once
    (RFC 2131 §4.4.6), then removes the address from ``iface``.
    """
    client = _client(iface, netns)
    with tempfile.TemporaryDirectory(prefix="mailstead-dhcp-") as tmp:
        work = Path(tmp)
        os.chmod(work, 0o700)
        lease = _run_dhclient(client, iface, work, timeout, netns)
        if release:
            _release(client, iface, work, netns)
            live.delete_address(iface, lease.cidr, netns=netns)
            return lease
    _apply(lease, netns)
    return lease
