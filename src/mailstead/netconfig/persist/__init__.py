"""Making an interface address survive a reboot, in the files the host's network manager reads.

One writer per manager (``ifupdown``, ``ifcfg``, ``nm``, ``netplan``,
``networkd``), each a module that plans the file changes; ``auto`` asks
:func:`detect_manager`. Every file Mailstead writes, and every block it adds
to a file it did not write (NetworkManager keyfiles), starts with
:data:`MARKER`; nothing without it is changed or removed. Writes are atomic
and durable, a dry run writes nothing, and both return the unified diff.
Persisting what is already persisted changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from mailstead.netconfig.persist import ifcfg, ifupdown, netplan, networkd, nm
from mailstead.netconfig.persist.detect import MANAGERS, detect_manager
from mailstead.netconfig.persist.model import (
    MARKER,
    Change,
    PersistError,
    PersistResult,
    Request,
    commit,
)

__all__ = [
    "MANAGERS",
    "MARKER",
    "PersistError",
    "PersistResult",
    "detect_manager",
    "persist_address",
    "remove_address",
]

_WRITERS: dict[str, Callable[..., list[Change]]] = {
    "ifupdown": ifupdown.plan,
    "ifcfg": ifcfg.plan,
    "nm": nm.plan,
    "netplan": netplan.plan,
    "networkd": networkd.plan,
}


def _run(
    iface: str,
    cidr: str,
    label: str | None,
    manager: str,
    root: Path,
    *,
    add: bool,
    dry_run: bool,
) -> PersistResult:
    request = Request.make(iface, cidr, label)
    if manager == "auto":
        manager, reason = detect_manager(iface, root)
    elif manager in _WRITERS:
        reason = f"{manager}: chosen with --persist {manager}"
    else:
        raise PersistError(
            f"unknown network manager {manager!r}: use auto or {', '.join(MANAGERS)}"
        )
    result = PersistResult(manager, reason)
    changes = _WRITERS[manager](root, request, add=add)
    if add and label is not None and manager == "nm":
        result.notes.append(f"NetworkManager keyfiles keep no address label; {label} is dropped")
    if add and label is None and manager == "ifcfg" and changes:
        alias = changes[-1].path.name.removeprefix("ifcfg-")
        result.notes.append(f"ifcfg alias files name the address: it comes back as {alias}")
    return commit(result, root, changes, dry_run=dry_run)


def persist_address(
    iface: str,
    cidr: str,
    *,
    label: str | None = None,
    manager: str = "auto",
    root: Path = Path("/"),
    dry_run: bool = False,
) -> PersistResult:
    """Write ``cidr`` (and its IPv4 ``label``) for ``iface`` into ``manager``'s files."""
    return _run(iface, cidr, label, manager, root, add=True, dry_run=dry_run)


def remove_address(
    iface: str,
    cidr: str,
    *,
    label: str | None = None,
    manager: str = "auto",
    root: Path = Path("/"),
    dry_run: bool = False,
) -> PersistResult:
    """Take out what :func:`persist_address` wrote for ``cidr``; a file left empty is removed."""
    return _run(iface, cidr, label, manager, root, add=False, dry_run=dry_run)
