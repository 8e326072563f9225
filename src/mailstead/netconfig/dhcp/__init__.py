"""A DHCPv4 lease obtained by the system's own client: ``mailstead net dhcp IFACE``.

Mailstead never speaks DHCP itself. Which client does:

* systemd-networkd or NetworkManager, when one of them manages the
  interface (:mod:`.managers`): a second client beside theirs would fight
  over the address, so they are asked to run theirs;
* otherwise ISC ``dhclient`` (:mod:`.dhclient`), or ``dhcpcd``
  (:mod:`.dhcpcd`) where dhclient is not installed or ``client="dhcpcd"``
  asks for it. Both run with their files in a temporary directory and a
  script that only reports, and Mailstead applies the lease itself, over
  netlink:

  - the address, with the lease time as its valid and preferred lifetime,
    so the kernel drops it when the lease runs out (RFC 2131 §4.4.5: the
    client stops using an address whose lease expired; nothing renews it
    but running ``net dhcp`` again, as with ``dhclient -1``);
  - a default route via the router, only when the namespace has none (an
    existing default route is never replaced);
  - the DNS servers are reported, never written to ``/etc/resolv.conf``.

:func:`planned_changes` says the same before anything runs.
"""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

from pyroute2 import IPRoute  # type: ignore[import-untyped]
from pyroute2.netlink.exceptions import NetlinkError  # type: ignore[import-untyped]

from mailstead.netconfig import live
from mailstead.netconfig.dhcp import dhclient, dhcpcd, managers
from mailstead.netconfig.dhcp.lease import DHCPError, Lease, which, work_parent

__all__ = ["CLIENTS", "DHCPError", "Lease", "obtain_lease", "planned_changes"]

#: The ``--client`` choices: ``auto`` is the interface's manager, else dhclient, else dhcpcd.
CLIENTS = ("auto", "dhclient", "dhcpcd")
_MAIN_TABLE = 254  # linux/rtnetlink.h RT_TABLE_MAIN
_PACKAGES = {"dhclient": "isc-dhcp-client", "dhcpcd": "dhcpcd-base"}
_HOST = Path("/")


def _choose(iface: str, client: str, netns: str | None, root: Path) -> tuple[str, str, int]:
    """(what runs DHCP: a manager name or a client's path, why, interface index)."""
    found = [link for link in live.links(netns=netns) if link.name == iface]
    if not found:
        raise live.InterfaceNotFoundError(f"no interface named {iface!r}")
    index = found[0].index
    if client not in CLIENTS:
        raise DHCPError(f"unknown DHCP client {client!r}: use {', '.join(CLIENTS)}")
    # The managers run in the host's namespace; for another, only a root tree holds their state.
    managed = managers.detect(iface, index, root) if netns is None or root != _HOST else None
    if managed is not None:
        name, why = managed
        if client != "auto":
            raise DHCPError(f"{why}: its own DHCP client runs it, so {client} would fight it")
        return name, why, index
    names = ("dhclient", "dhcpcd") if client == "auto" else (client,)
    for name in names:
        path = which(name)
        if path is not None:
            why = "the first DHCP client installed" if client == "auto" else "chosen with --client"
            return path, why, index
    wanted = " or ".join(f"{_PACKAGES[n]} ({n})" for n in names)
    raise DHCPError(f"no DHCP client: install {wanted}")


def planned_changes(
    iface: str,
    *,
    release: bool = False,
    client: str = "auto",
    netns: str | None = None,
    root: Path = _HOST,
) -> list[str]:
    """What obtaining (or releasing) a lease on ``iface`` will change, one line each."""
    chosen, why, _ = _choose(iface, client, netns, root)
    if chosen == "networkd":
        return [
            f"asks systemd-networkd: {why}",
            *managers.networkd_plan(iface, root, release=release),
        ]
    if chosen == "nm":
        return [f"asks NetworkManager: {why}", *managers.nm_plan(iface, release=release)]
    where = f" in network namespace {netns}" if netns else ""
    how = dhcpcd.PLAN if Path(chosen).name == "dhcpcd" else dhclient.PLAN
    lines = [
        f"runs {chosen}{where} ({why}) {how}",
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
    iface: str,
    *,
    release: bool = False,
    client: str = "auto",
    timeout: float = 30.0,
    netns: str | None = None,
    root: Path = _HOST,
) -> Lease:
    """Obtain a DHCPv4 lease on ``iface`` and apply it; with ``release``, give it back.

    Releasing asks the server for the lease it holds for this interface
    (the same address, by hardware address) and releases it at once
    (RFC 2131 §4.4.6), then removes the address from ``iface``.
    """
    chosen, _, index = _choose(iface, client, netns, root)
    if chosen == "networkd":
        return managers.networkd_lease(
            iface, index, root, release=release, timeout=timeout, netns=netns
        )
    if chosen == "nm":
        return managers.nm_lease(iface, release=release, timeout=timeout)
    with tempfile.TemporaryDirectory(prefix="mailstead-dhcp-", dir=work_parent()) as tmp:
        work = Path(tmp)
        os.chmod(work, 0o700)
        if Path(chosen).name == "dhcpcd":
            if release:

                def on_interface(lease: Lease) -> None:
                    live.add_address(iface, lease.cidr, netns=netns)

                lease = dhcpcd.release(chosen, iface, work, timeout, netns, on_interface)
                live.delete_address(iface, lease.cidr, netns=netns)
                return lease
            lease = dhcpcd.obtain(chosen, iface, work, timeout, netns)
        else:
            lease = dhclient.obtain(chosen, iface, work, timeout, netns)
            if release:
                dhclient.release(chosen, iface, work, netns)
                live.delete_address(iface, lease.cidr, netns=netns)
                return lease
    _apply(lease, netns)
    return lease
