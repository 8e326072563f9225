"""DHCP on an interface systemd-networkd or NetworkManager manages: asked of the manager.

A second client beside theirs would fight over the address, so ``net dhcp``
has the manager run its own DHCP client and reports the lease it got:

* systemd-networkd: a Mailstead drop-in with ``[Network] DHCP=ipv4`` beside
  the interface's ``.network`` file (unless DHCPv4 is on already), then
  ``networkctl reload`` and ``networkctl reconfigure IFACE``; the lease is
  read from networkd's lease file, else from ``networkctl status``.
  ``--release`` removes the drop-in and reconfigures.
* NetworkManager: the connection active on the device gets
  ``ipv4.method auto`` and ``nmcli connection up``; the lease is read from
  ``nmcli -t -f DHCP4,IP4 device show IFACE``. ``--release`` takes the
  connection down.

``root`` is the tree whose ``/run`` and ``/etc`` the managers use (``/``).
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

from mailstead.netconfig import live
from mailstead.netconfig.dhcp.lease import (
    DHCPError,
    Lease,
    ipv4,
    lease_from_options,
    prefix_of,
    which,
)
from mailstead.netconfig.persist import networkd
from mailstead.netconfig.persist.model import PersistError, PersistResult, commit

__all__ = ["detect", "networkd_lease", "networkd_plan", "nm_lease", "nm_plan"]

# "   Address: 10.0.0.5 (DHCP4 via 10.0.0.1)"; an IPv6 continuation line has no "Key: ".
_STATUS_FIELD = re.compile(r"\s*([A-Z][^:]*): (.*)")
_NM_UNAVAILABLE = 20  # NMDeviceState: 10 unmanaged, 20 unavailable; above, NM holds it


def _run(tool: str, *args: str, timeout: float = 30) -> str:
    path = which(tool)
    if path is None:
        raise DHCPError(f"{tool} is missing, and the interface's manager is asked with it")
    try:
        done = subprocess.run(
            [path, *args], capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise DHCPError(f"{tool} {' '.join(args)}: no answer within {timeout:g} s") from None
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip().splitlines()
        raise DHCPError(f"{tool} {' '.join(args)}: {said[-1] if said else done.returncode}")
    return done.stdout


def detect(iface: str, index: int, root: Path) -> tuple[str, str] | None:
    """``("networkd" | "nm", why)`` when one of them manages ``iface``, else ``None``."""
    # sd-network's state file of each link networkd knows.
    state = root / "run/systemd/netif/links" / str(index)
    try:
        text = state.read_text()
    except OSError:
        text = ""
    for line in text.splitlines():
        if line in ("ADMIN_STATE=configured", "ADMIN_STATE=configuring"):
            why = f"systemd-networkd manages {iface} (/run/systemd/netif/links/{index})"
            return "networkd", why
    if not (root / "run/NetworkManager").is_dir() or which("nmcli") is None:
        return None
    try:
        shown = _run("nmcli", "-t", "-g", "GENERAL.STATE", "device", "show", iface, timeout=10)
    except DHCPError:
        return None  # a device NetworkManager does not know
    code = shown.strip().split(" ", 1)[0]
    if code.isdigit() and int(code) > _NM_UNAVAILABLE:
        return "nm", f"NetworkManager manages {iface} (device state {shown.strip()})"
    return None


# systemd-networkd ------------------------------------------------------------


def _networkd_state(iface: str, root: Path) -> tuple[list[str], str]:
    """The drop-in plan lines, and the networkctl verb that starts DHCP."""
    try:
        network, value = networkd.dhcp_setting(root, iface)
    except PersistError as exc:
        raise DHCPError(str(exc)) from None
    shown = f"/{network.relative_to(root)}"
    if value in ("yes", "ipv4"):
        return [f"files: none ({shown} has DHCP={value} already)"], "renew"
    drop_in = f"/etc/systemd/network/{network.name}.d/{networkd.DHCP_DROP_IN}"
    return [
        f"files: writes {drop_in} ([Network] DHCP=ipv4), which stays: DHCP comes back "
        f"after a reboot until `mailstead net dhcp {iface} --release` removes it"
    ], "reconfigure"


def networkd_plan(iface: str, root: Path, *, release: bool) -> list[str]:
    """What asking systemd-networkd will change, one line each."""
    if release:
        return [
            f"files: removes mailstead's {networkd.DHCP_DROP_IN} drop-in for {iface}",
            f"runs networkctl reload and networkctl reconfigure {iface}",
            "address and routes: systemd-networkd drops the leased address and its routes",
        ]
    files, verb = _networkd_state(iface, root)
    runs = f"networkctl {verb} {iface}"
    if verb == "reconfigure":
        runs = f"networkctl reload and {runs}"
    return [
        *files,
        f"runs {runs}",
        "address, routes and DNS: as systemd-networkd's DHCP client sets them "
        "(its [DHCPv4] UseRoutes=, UseDNS= settings; DNS goes to systemd-resolved)",
    ]


def _lease_file(iface: str, text: str) -> Lease:
    """networkd's lease file: ``KEY=VALUE`` lines of sd-dhcp-lease, read leniently."""
    seen = dict(line.partition("=")[::2] for line in text.splitlines() if "=" in line)
    try:
        routers = seen.get("ROUTER", "").split()
        return Lease(
            iface=iface,
            address=ipv4(seen["ADDRESS"]),
            prefix=prefix_of(seen.get("NETMASK", "255.255.255.255")),
            router=routers[0] if routers else None,
            dns=tuple(seen.get("DNS", "").split()),
            lease_time=int(seen.get("LIFETIME", "0")),
            client="systemd-networkd",
            server=seen.get("SERVER_ADDRESS") or None,
        )
    except (KeyError, OSError, ValueError):
        raise DHCPError(f"systemd-networkd's lease of {iface} is unreadable: {seen}") from None


def _status_fields(text: str) -> dict[str, list[str]]:
    """``networkctl status`` as ``{label: [values]}``; indented lines continue a value."""
    fields: dict[str, list[str]] = {}
    last = ""
    for line in text.splitlines():
        match = _STATUS_FIELD.fullmatch(line)
        if match:
            last = match[1]
            fields.setdefault(last, []).append(match[2].strip())
        elif last and line.startswith(" ") and line.strip():
            fields[last].append(line.strip())
    return fields


def _status_lease(iface: str, netns: str | None) -> Lease | None:
    """The DHCPv4 address ``networkctl status`` shows, completed over netlink."""
    fields = _status_fields(_run("networkctl", "status", "--no-pager", iface))
    for value in fields.get("Address", []):
        words = value.replace("(", " ").replace(")", " ").split()
        if "DHCP4" not in words:
            continue
        via = words[words.index("via") + 1] if "via" in words else None
        found = [a for a in live.addresses(netns=netns) if a.address == words[0]]
        if not found:
            return None
        gateways = [g for g in fields.get("Gateway", []) if "." in g]
        return Lease(
            iface=iface,
            address=words[0],
            prefix=found[0].prefix,
            router=gateways[0].split()[0] if gateways else None,
            dns=tuple(d for d in fields.get("DNS", []) if "." in d and ":" not in d),
            lease_time=found[0].valid_lifetime or 0,
            client="systemd-networkd",
            server=via,
        )
    return None


def networkd_lease(
    iface: str, index: int, root: Path, *, release: bool, timeout: float, netns: str | None
) -> Lease:
    """Have systemd-networkd obtain (or, with ``release``, drop) the lease of ``iface``."""
    leases = root / "run/systemd/netif/leases" / str(index)

    def stamp() -> int | None:
        try:
            return leases.stat().st_mtime_ns
        except FileNotFoundError:
            return None

    old = stamp()
    if release:
        if old is None:
            raise DHCPError(f"systemd-networkd holds no DHCP lease for {iface}")
        held = _lease_file(iface, leases.read_text())
        changes = networkd.dhcp_drop_in(root, iface, enable=False)
        if not changes:
            raise DHCPError(
                f"DHCP on {iface} is set in its .network file, not by mailstead: "
                "turn it off there (DHCP=no), then networkctl reload"
            )
        commit(PersistResult("networkd", "net dhcp --release"), root, changes, dry_run=False)
        _run("networkctl", "reload")
        _run("networkctl", "reconfigure", iface)
        return held
    _, verb = _networkd_state(iface, root)
    if verb == "reconfigure":
        changes = networkd.dhcp_drop_in(root, iface, enable=True)
        commit(PersistResult("networkd", "net dhcp"), root, changes, dry_run=False)
        _run("networkctl", "reload")
    _run("networkctl", verb, iface)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = stamp()
        if now is not None and now != old:
            return _lease_file(iface, leases.read_text())
        time.sleep(0.1)
    # No fresh lease file: what networkd shows, if it has a DHCPv4 address.
    lease = _status_lease(iface, netns)
    if lease is None:
        raise DHCPError(
            f"no DHCP lease on {iface} within {timeout:g} s from systemd-networkd "
            f"(networkctl status {iface} says more)"
        )
    return lease


# NetworkManager ----------------------------------------------------------------


def _split(line: str) -> list[str]:
    """One ``nmcli -t`` line's fields: ``:`` separates them, ``\\`` escapes (nmcli(1))."""
    fields = [""]
    escaped = False
    for char in line:
        if escaped:
            fields[-1] += char
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ":":
            fields.append("")
        else:
            fields[-1] += char
    return fields


def _active(iface: str) -> tuple[str, str]:
    """(UUID, name) of the connection active on ``iface``."""
    shown = _run("nmcli", "-t", "-f", "UUID,DEVICE,NAME", "connection", "show", "--active")
    for line in shown.splitlines():
        fields = _split(line)
        if len(fields) == 3 and fields[1] == iface:
            return fields[0], fields[2]
    raise DHCPError(
        f"no NetworkManager connection is active on {iface}: nmcli device connect {iface}"
    )


def _method(uuid: str) -> str:
    return _run("nmcli", "-t", "-g", "ipv4.method", "connection", "show", uuid).strip()


def nm_plan(iface: str, *, release: bool) -> list[str]:
    """What asking NetworkManager will change, one line each."""
    uuid, name = _active(iface)
    if release:
        return [
            f"runs nmcli connection down {uuid} (connection {name!r} on {iface})",
            "address and routes: every address and route of that connection goes with it",
        ]
    method = _method(uuid)
    files = (
        "files: none written by mailstead (ipv4.method is auto already)"
        if method == "auto"
        else f"files: NetworkManager writes ipv4.method auto (was {method}) into the "
        f"profile of {name!r}, which keeps it after a reboot"
    )
    return [
        files,
        f"runs nmcli connection up {uuid} (connection {name!r} on {iface})",
        "address, routes and DNS: as NetworkManager sets them (its dns= setting "
        "decides whether /etc/resolv.conf is rewritten)",
    ]


def _nm_shown(iface: str) -> Lease:
    options: dict[str, str] = {}
    prefixes: dict[str, int] = {}
    shown = _run("nmcli", "-t", "-f", "DHCP4,IP4", "device", "show", iface)
    for field, *rest in map(_split, shown.splitlines()):
        value = ":".join(rest)
        if field.startswith("DHCP4.OPTION"):
            name, _, option = value.partition(" = ")
            options[name.strip()] = option.strip()
        elif field.startswith("IP4.ADDRESS") and "/" in value:
            on, _, length = value.partition("/")
            prefixes[on] = int(length)
    problem = f"NetworkManager shows no DHCPv4 lease on {iface}"
    return lease_from_options(iface, options, "NetworkManager", problem, prefixes=prefixes)


def nm_lease(iface: str, *, release: bool, timeout: float) -> Lease:
    """Have NetworkManager obtain (or, with ``release``, drop) the lease of ``iface``."""
    uuid, _ = _active(iface)
    wait = str(max(1, int(timeout)))
    if release:
        held = _nm_shown(iface)
        _run("nmcli", "--wait", wait, "connection", "down", uuid, timeout=timeout + 10)
        return held
    if _method(uuid) != "auto":
        _run("nmcli", "connection", "modify", uuid, "ipv4.method", "auto")
    _run("nmcli", "--wait", wait, "connection", "up", uuid, timeout=timeout + 10)
    return _nm_shown(iface)
