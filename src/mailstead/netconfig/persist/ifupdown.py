"""Debian ifupdown: one stanza file per interface in ``/etc/network/interfaces.d/``.

interfaces(5) allows several ``iface`` stanzas for one interface and applies
them all when the interface comes up ("It can also be used to configure
multiple addresses of the same type on a single interface"), so an extra
address never touches the admin's stanza:

* IPv4 with a label: the classic alias stanza ``auto eth0:1`` / ``iface
  eth0:1 inet static``; ifupdown's static method runs ``ip addr add … dev
  eth0:1 label eth0:1``, which is the only way it sets a label.
* IPv4 without one: a second ``iface eth0 inet static`` stanza.
* IPv6: ``iface eth0 inet6 manual`` with ``up``/``down`` ``ip -6 addr``
  commands. A second ``inet6 static`` stanza would also switch SLAAC off
  (it sets ``autoconf=0`` unless told otherwise) and wait for DAD; the
  manual method changes nothing but the address.

The file is read only if ``/etc/network/interfaces`` sources it (Debian's
default file has ``source /etc/network/interfaces.d/*``); that is checked.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from pathlib import Path

from mailstead.netconfig.persist.model import (
    HEADER,
    Change,
    PersistError,
    Request,
    is_ours,
    read_text,
)

__all__ = ["MAIN", "plan", "read_entries", "sourced_files"]

MAIN = Path("etc/network/interfaces")
DIRECTORY = Path("etc/network/interfaces.d")

Entry = tuple[str, str | None]  # (cidr, label)

_STANZAS = frozenset({"iface", "auto", "mapping", "source", "source-directory", "rename"})


def file_for(root: Path, iface: str) -> Path:
    # source-directory reads only names matching ^[a-zA-Z0-9_-]+$ (interfaces(5)).
    return root / DIRECTORY / ("mailstead-" + re.sub(r"[^A-Za-z0-9_-]", "_", iface))


def _logical_lines(text: str) -> list[str]:
    """Lines with comments dropped and backslash continuations joined (interfaces(5))."""
    out: list[str] = []
    pending = ""
    for raw in text.splitlines():
        if not pending and raw.lstrip().startswith("#"):
            continue
        if raw.endswith("\\"):
            pending += raw[:-1]
            continue
        out.append(pending + raw)
        pending = ""
    if pending:
        out.append(pending)
    return out


def sourced_files(root: Path) -> list[tuple[Path, str]]:
    """``/etc/network/interfaces`` and every file it sources, in order, with their text."""
    seen: list[tuple[Path, str]] = []

    def visit(path: Path) -> None:
        text = read_text(path)
        if text is None or any(p == path for p, _ in seen) or len(seen) > 256:
            return
        seen.append((path, text))
        base = "/" + path.parent.relative_to(root).as_posix()
        for line in _logical_lines(text):
            words = line.split()
            if len(words) != 2 or words[0] not in ("source", "source-directory"):
                continue
            pattern = words[1] if words[1].startswith("/") else f"{base}/{words[1]}"
            for match in sorted(root.glob(pattern.lstrip("/"))):
                if words[0] == "source" and match.is_file():
                    visit(match)
                elif words[0] == "source-directory" and match.is_dir():
                    for inner in sorted(match.iterdir()):
                        if re.fullmatch(r"[A-Za-z0-9_-]+", inner.name) and inner.is_file():
                            visit(inner)

    visit(root / MAIN)
    return seen


def _is_sourced(root: Path, target: Path) -> bool:
    wanted = "/" + target.relative_to(root).as_posix()
    for path, text in sourced_files(root):
        base = "/" + path.parent.relative_to(root).as_posix()
        for line in _logical_lines(text):
            words = line.split()
            if len(words) != 2:
                continue
            pattern = words[1] if words[1].startswith("/") else f"{base}/{words[1]}"
            if words[0] == "source" and fnmatch.fnmatchcase(wanted, pattern):
                return True
            if words[0] == "source-directory" and fnmatch.fnmatchcase(
                wanted.rsplit("/", 1)[0], pattern.rstrip("/")
            ):
                return True
    return False


def read_entries(text: str) -> list[Entry]:
    """The addresses a Mailstead stanza file holds, in order."""
    entries: list[Entry] = []
    name = ""  # the logical interface of the stanza being read; "" outside one
    for line in _logical_lines(text):
        words = line.split()
        if not words:
            continue
        if words[0] in _STANZAS or words[0].startswith("allow-"):
            name = words[1] if words[0] == "iface" and len(words) >= 4 else ""
        elif name and words[0] == "address" and len(words) == 2:
            entries.append((str(ipaddress.ip_interface(words[1])), name if ":" in name else None))
        elif name and words[:5] == ["up", "ip", "-6", "addr", "add"] and len(words) >= 6:
            entries.append((str(ipaddress.ip_interface(words[5])), None))
    return entries


def _render(iface: str, entries: list[Entry]) -> str:
    blocks = [HEADER]
    for cidr, label in entries:
        address = ipaddress.ip_interface(cidr)
        if address.version == 6:
            blocks.append(
                f"iface {iface} inet6 manual\n"
                f"    up ip -6 addr add {cidr} dev {iface}\n"
                f"    down ip -6 addr del {cidr} dev {iface}"
            )
        elif label is not None:
            blocks.append(f"auto {label}\niface {label} inet static\n    address {cidr}")
        else:
            blocks.append(f"iface {iface} inet static\n    address {cidr}")
    return "\n\n".join(blocks) + "\n"


def _read_own(root: Path, path: Path, text: str | None) -> list[Entry]:
    try:
        return read_entries(text) if text is not None else []
    except ValueError as exc:
        raise PersistError(f"/{path.relative_to(root)}: cannot read it back ({exc})") from None


def plan(root: Path, request: Request, *, add: bool) -> list[Change]:
    """The change to the interface's stanza file that adds or removes the address."""
    path = file_for(root, request.iface)
    before = read_text(path)
    if before is not None and not is_ours(before):
        raise PersistError(f"/{path.relative_to(root)} was not written by mailstead; left alone")
    if request.label is not None and not request.label.startswith(request.iface + ":"):
        # "iface eth0x inet static" would configure another interface.
        raise PersistError(
            f"ifupdown alias labels look like {request.iface}:1, not {request.label}"
        )
    entries = _read_own(root, path, before)
    kept = [e for e in entries if e[0] != request.cidr]
    if not add:
        return [Change(path, before, _render(request.iface, kept) if kept else None)]
    if (request.cidr, request.label) in entries:
        return []
    if request.label is not None and any(label == request.label for _, label in kept):
        raise PersistError(
            f"label {request.label} already holds another address in /{path.relative_to(root)}"
        )
    if not _is_sourced(root, path):
        raise PersistError(
            f"/{MAIN} does not read /{DIRECTORY}/ (add 'source /{DIRECTORY}/*' to it)"
        )
    return [Change(path, before, _render(request.iface, [*kept, (request.cidr, request.label)]))]
