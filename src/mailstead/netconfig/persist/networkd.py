"""systemd-networkd: a drop-in ``mailstead.conf`` beside the ``.network`` file that applies.

networkd reads ``*.network`` from ``/etc``, ``/run`` and ``/usr/lib``
``systemd/network`` (a name in ``/etc`` shadows the same name in ``/run``,
which shadows ``/usr/lib``) in the lexical order of their names, and the
first whose ``[Match]`` fits a link configures it; ``FILE.network.d/*.conf``
drop-ins are read after it (systemd.network(5)). Mailstead writes
``/etc/systemd/network/FILE.network.d/mailstead.conf`` with one ``[Address]``
section per address (``Label=`` for an IPv4 label), so the admin's file is
never touched. Only ``Name=`` of ``[Match]`` can be judged from the files;
a file matching by other keys alone (``MACAddress=``, ``Type=``) is not
taken as covering the interface.
"""

from __future__ import annotations

import fnmatch
import ipaddress
from pathlib import Path

from mailstead.netconfig.persist.model import (
    HEADER,
    MARKER,
    Change,
    PersistError,
    Request,
    is_ours,
    read_text,
)

__all__ = [
    "DHCP_DROP_IN",
    "DROP_IN",
    "dhcp_drop_in",
    "dhcp_setting",
    "network_file",
    "plan",
    "read_sections",
]

DROP_IN = "mailstead.conf"
# Lowest priority first.
_DIRECTORIES = (
    "usr/lib/systemd/network",
    "lib/systemd/network",
    "run/systemd/network",
    "etc/systemd/network",
)

Entry = tuple[str, str | None]  # (cidr, label)


def read_sections(text: str) -> list[tuple[str, dict[str, list[str]]]]:
    """The sections of a unit-style file in order; a section may repeat (systemd.syntax(7))."""
    sections: list[tuple[str, dict[str, list[str]]]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            sections.append((line[1:-1], {}))
        elif "=" in line and sections:
            key, _, value = line.partition("=")
            sections[-1][1].setdefault(key.strip(), []).append(value.strip())
    return sections


def _name_matches(patterns: list[str], iface: str) -> bool:
    # systemd.network(5) [Match] Name=: globs separated by spaces; a leading
    # "!" inverts the list; an empty assignment resets it.
    words: list[str] = []
    for value in patterns:
        words = value.split() if value else []
    if not words:
        return False
    invert = words[0].startswith("!")
    if invert:
        words[0] = words[0][1:]
    return any(fnmatch.fnmatchcase(iface, w) for w in words) != invert


def network_file(root: Path, iface: str) -> Path | None:
    """The ``.network`` file networkd would apply to ``iface``, judged by ``Name=``."""
    by_name: dict[str, Path] = {}
    for directory in _DIRECTORIES:
        for path in (root / directory).glob("*.network"):
            by_name[path.name] = path
    for name in sorted(by_name):
        text = read_text(by_name[name]) or ""
        names = [
            value
            for section, keys in read_sections(text)
            if section == "Match"
            for value in keys.get("Name", [])
        ]
        if _name_matches(names, iface):
            return by_name[name]
    return None


def read_entries(text: str) -> list[Entry]:
    """The addresses of a Mailstead drop-in, in order."""
    entries: list[Entry] = []
    for section, keys in read_sections(text):
        if section == "Address" and keys.get("Address"):
            label = keys.get("Label", [None])[-1]
            entries.append((str(ipaddress.ip_interface(keys["Address"][-1])), label))
    return entries


def _render(entries: list[Entry]) -> str:
    blocks = [HEADER]
    for cidr, label in entries:
        blocks.append(f"[Address]\nAddress={cidr}" + (f"\nLabel={label}" if label else ""))
    return "\n\n".join(blocks) + "\n"


def plan(root: Path, request: Request, *, add: bool) -> list[Change]:
    """The drop-in of the interface's ``.network`` file with the address added or removed."""
    network = network_file(root, request.iface)
    if network is None:
        raise PersistError(
            f"no .network file in /etc/systemd/network (or /run, /usr/lib) matches "
            f"Name={request.iface}; write one first"
        )
    path = root / "etc/systemd/network" / f"{network.name}.d" / DROP_IN
    before = read_text(path)
    if before is not None and not is_ours(before):
        raise PersistError(f"/{path.relative_to(root)} was not written by mailstead; left alone")
    try:
        entries = read_entries(before) if before is not None else []
    except ValueError as exc:
        raise PersistError(f"/{path.relative_to(root)}: cannot read it back ({exc})") from None
    kept = [e for e in entries if e[0] != request.cidr]
    if not add:
        return [Change(path, before, _render(kept) if kept else None)]
    if (request.cidr, request.label) in entries:
        return []
    return [Change(path, before, _render([*kept, (request.cidr, request.label)]))]


#: The drop-in ``mailstead net dhcp`` writes to turn on networkd's DHCPv4 client.
DHCP_DROP_IN = "mailstead-dhcp.conf"
_YES = ("yes", "true", "on", "1")


def dhcp_setting(root: Path, iface: str) -> tuple[Path, str]:
    """The ``.network`` file of ``iface`` and its ``[Network] DHCP=`` (``no`` when unset).

    Mailstead's own DHCP drop-in does not count: this is what the admin set.
    """
    network = network_file(root, iface)
    if network is None:
        raise PersistError(
            f"no .network file in /etc/systemd/network (or /run, /usr/lib) matches "
            f"Name={iface}, so systemd-networkd would not run DHCP on it"
        )
    texts = [read_text(network) or ""]
    drop_ins = root / "etc/systemd/network" / f"{network.name}.d"
    texts += [
        read_text(p) or ""
        for p in sorted(drop_ins.glob("*.conf"))
        if p.name not in (DROP_IN, DHCP_DROP_IN)
    ]
    value = "no"
    for text in texts:
        for section, keys in read_sections(text):
            if section == "Network" and keys.get("DHCP"):
                value = keys["DHCP"][-1].lower() or "no"  # the last assignment wins
    return network, "yes" if value in _YES else value


def dhcp_drop_in(root: Path, iface: str, *, enable: bool) -> list[Change]:
    """Mailstead's drop-in turning DHCPv4 on (keeping DHCPv6 if set), or its removal."""
    network, value = dhcp_setting(root, iface)
    path = root / "etc/systemd/network" / f"{network.name}.d" / DHCP_DROP_IN
    before = read_text(path)
    if before is not None and not is_ours(before):
        raise PersistError(f"/{path.relative_to(root)} was not written by mailstead; left alone")
    if not enable:
        return [] if before is None else [Change(path, before, None)]
    # systemd.network(5) [Network] DHCP=: yes, no, ipv4 or ipv6.
    wanted = "yes" if value == "ipv6" else "ipv4"
    header = f"{MARKER}: `mailstead net dhcp {iface} --release` removes this file."
    after = f"{header}\n\n[Network]\nDHCP={wanted}\n"
    return [] if before == after else [Change(path, before, after)]
