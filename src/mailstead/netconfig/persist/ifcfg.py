"""RHEL/CentOS ifcfg: one alias file ``ifcfg-IFACE:N`` per IPv4 address.

``ifup-aliases`` (initscripts) brings every ``ifcfg-eth0:*`` up with its
parent (``ONPARENT=yes``), and NetworkManager's ifcfg-rh plugin reads the
same files into the parent's connection, so the alias file is the one
format both RHEL 7 and RHEL 8/9 honour. The file name is the label: an
address without one gets the lowest free ``eth0:N``.

IPv6 is refused: initscripts takes extra IPv6 addresses only from
``IPV6ADDR_SECONDARIES`` in ``ifcfg-eth0`` itself, a file the admin wrote,
and alias files carry IPv4 only. Mailstead never edits a file without its
marker, so such an address belongs in that variable by hand, or in a
NetworkManager keyfile (``--persist nm``).
"""

from __future__ import annotations

import glob
import ipaddress
import shlex
from pathlib import Path

from mailstead.netconfig.persist.model import (
    HEADER,
    Change,
    PersistError,
    Request,
    is_ours,
    read_text,
)

__all__ = ["DIRECTORY", "plan", "read_variables"]

DIRECTORY = Path("etc/sysconfig/network-scripts")


def read_variables(text: str) -> dict[str, str]:
    """The ``NAME=value`` assignments of an ifcfg file (shell words, no expansion)."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, _, value = line.partition("=")
        try:
            words = shlex.split(value, comments=True)
        except ValueError:  # an unbalanced quote: keep the raw text
            words = [value.strip()]
        values[name.strip()] = words[0] if words else ""
    return values


def _render(label: str, address: ipaddress.IPv4Interface) -> str:
    return (
        f"{HEADER}\n"
        f"DEVICE={label}\n"
        "ONPARENT=yes\n"
        f"IPADDR={address.ip}\n"
        f"PREFIX={address.network.prefixlen}\n"
    )


def _aliases(root: Path, iface: str) -> dict[str, tuple[Path, str]]:
    """Every existing alias file of ``iface``, by label, with its text."""
    found: dict[str, tuple[Path, str]] = {}
    directory = root / DIRECTORY
    if directory.is_dir():
        for path in sorted(directory.glob(f"ifcfg-{glob.escape(iface)}:*")):
            text = read_text(path)
            if text is not None:
                found[path.name.removeprefix("ifcfg-")] = (path, text)
    return found


def _holds(text: str, cidr: str) -> bool:
    values = read_variables(text)
    try:
        return str(ipaddress.ip_interface(f"{values['IPADDR']}/{values['PREFIX']}")) == cidr
    except (KeyError, ValueError):
        return False


def plan(root: Path, request: Request, *, add: bool) -> list[Change]:
    """The alias file to write, or the one of ours to remove."""
    if request.address.version == 6:
        raise PersistError(
            "ifcfg keeps extra IPv6 addresses in IPV6ADDR_SECONDARIES of "
            f"ifcfg-{request.iface}, a file mailstead did not write: add "
            f"{request.cidr} there by hand, or use --persist nm"
        )
    if request.label is not None and not request.label.startswith(request.iface + ":"):
        raise PersistError(f"ifcfg alias labels look like {request.iface}:1, not {request.label}")
    aliases = _aliases(root, request.iface)
    ours = {label: pt for label, pt in aliases.items() if is_ours(pt[1])}
    holding = [label for label, (_, text) in ours.items() if _holds(text, request.cidr)]
    if not add:
        return [Change(ours[label][0], ours[label][1], None) for label in holding]
    if holding and (request.label is None or request.label in holding):
        return []
    label = request.label
    if label is None:
        n = 0
        while f"{request.iface}:{n}" in aliases:
            n += 1
        label = f"{request.iface}:{n}"
    path = root / DIRECTORY / f"ifcfg-{label}"
    before = read_text(path)
    if before is not None and not is_ours(before):
        raise PersistError(f"/{path.relative_to(root)} was not written by mailstead; left alone")
    if before is not None:
        raise PersistError(f"{label} already holds another address in /{path.relative_to(root)}")
    assert isinstance(request.address, ipaddress.IPv4Interface)
    # A new label for an address already persisted moves it there.
    moved = [Change(ours[old][0], ours[old][1], None) for old in holding]
    return [*moved, Change(path, None, _render(label, request.address))]
