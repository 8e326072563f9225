"""Which network manager really configures an interface, read from its files.

Asked in this order, the first that names the interface wins:

1. netplan: a YAML file defines it. netplan renders to networkd or
   NetworkManager files under ``/run`` at every boot, so those are its
   output, not the place to write.
2. ifupdown: an ``iface`` stanza in ``/etc/network/interfaces`` or a file it
   sources. Debian's NetworkManager leaves such interfaces alone (its
   ifupdown plugin's ``managed=false``), and networkd is rarely enabled
   beside it.
3. ifcfg: ``/etc/sysconfig/network-scripts/ifcfg-IFACE`` (initscripts, or
   NetworkManager's ifcfg-rh plugin, both read the alias files).
4. NetworkManager: a keyfile bound to it by ``interface-name``.
5. systemd-networkd: a ``.network`` file whose ``[Match] Name=`` fits it.

On the running system (``root`` is ``/``) a NetworkManager or networkd
candidate whose daemon is not running (no ``/run/NetworkManager``, no
``/run/systemd/netif``) yields to any other candidate, and is said to be
stopped when it is the only one. In an image tree nothing runs, so only the
files count.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from mailstead.netconfig.persist import ifcfg, ifupdown, netplan, networkd, nm
from mailstead.netconfig.persist.model import PersistError, read_text

__all__ = ["MANAGERS", "detect_manager"]

#: The ``--persist`` names, in the order auto-detection asks them.
MANAGERS = ("netplan", "ifupdown", "ifcfg", "nm", "networkd")

# The directory a running daemon keeps its state in.
_RUNTIME = {"nm": "/run/NetworkManager", "networkd": "/run/systemd/netif"}


def _netplan(root: Path, iface: str) -> str | None:
    found = netplan.definition(root, iface)
    if found is None:
        return None
    kind, netplan_id, path = found
    return f"netplan: /{path.relative_to(root)} names {iface} ({kind}: {netplan_id})"


def _ifupdown(root: Path, iface: str) -> str | None:
    for path, text in ifupdown.sourced_files(root):
        for line in text.splitlines():
            words = line.split()
            if len(words) >= 2 and words[0] == "iface" and words[1] == iface:
                return f"ifupdown: /{path.relative_to(root)} has 'iface {iface}'"
    return None


def _ifcfg(root: Path, iface: str) -> str | None:
    directory = root / ifcfg.DIRECTORY
    main = directory / f"ifcfg-{iface}"
    if main.is_file():
        return f"ifcfg: /{main.relative_to(root)}"
    if directory.is_dir():
        for path in sorted(directory.glob("ifcfg-*")):
            text = read_text(path) if ":" not in path.name and path.is_file() else None
            if text is not None and ifcfg.read_variables(text).get("DEVICE") == iface:
                return f"ifcfg: /{path.relative_to(root)} has DEVICE={iface}"
    return None


def _nm(root: Path, iface: str) -> str | None:
    if not nm.owners(root, iface):
        return None
    return f"NetworkManager: a keyfile in /{nm.DIRECTORY}/ has interface-name={iface}"


def _networkd(root: Path, iface: str) -> str | None:
    path = networkd.network_file(root, iface)
    if path is None:
        return None
    return f"systemd-networkd: /{path.relative_to(root)} matches Name={iface}"


_PROBES: dict[str, Callable[[Path, str], str | None]] = {
    "netplan": _netplan,
    "ifupdown": _ifupdown,
    "ifcfg": _ifcfg,
    "nm": _nm,
    "networkd": _networkd,
}


def detect_manager(iface: str, root: Path = Path("/")) -> tuple[str, str]:
    """The manager (a ``--persist`` name) that configures ``iface``, and why."""
    found = [(name, why) for name in MANAGERS if (why := _PROBES[name](root, iface))]
    live = root.resolve() == Path("/")
    stopped = {name for name in _RUNTIME if live and not os.path.isdir(_RUNTIME[name])}
    running = [(name, why) for name, why in found if name not in stopped]
    if running:
        return running[0]
    if found:
        name, why = found[0]
        return name, f"{why} (but {_RUNTIME[name]} is missing: the daemon is not running)"
    where = "" if live else f" under {root}"
    raise PersistError(
        f"no network manager configures {iface}{where}: no netplan file, ifupdown "
        "stanza, ifcfg file, NetworkManager keyfile or .network file names it; "
        "choose one with --persist"
    )
