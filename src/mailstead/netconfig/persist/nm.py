"""NetworkManager keyfiles: an ``addressN=`` line in the connection that owns the interface.

NetworkManager activates one connection per device at a time, so a
Mailstead-owned second profile for ``eth0`` would never be up together with
the admin's: the address has to go into the owning profile (the keyfile in
``/etc/NetworkManager/system-connections/`` whose ``[connection]`` has
``interface-name=eth0``). Mailstead adds two lines to its ``[ipv4]`` or
``[ipv6]`` group, its marker comment and the address, and removes only
such pairs, so the admin's lines are never changed:

    # Managed by mailstead: the next line
    address2=192.0.2.25/24

The keyfile format (nm-settings-keyfile(5)) is GLib's key file: ``[group]``
headers, ``key=value`` lines, ``#`` comments on lines of their own, and
``addressN=ADDRESS/PREFIX[,GATEWAY]`` keys read in the order of N. The file
must stay mode 0600 and owned by root, or NetworkManager ignores it. Address
labels have no keyfile property, so a label is not kept. Static addresses
are allowed beside ``method=auto`` (DHCP) and ``manual``, not with the other
methods, which NetworkManager would then refuse to load.
"""

from __future__ import annotations

import configparser
import ipaddress
import re
from pathlib import Path

from mailstead.netconfig.persist.model import MARKER, Change, PersistError, Request, read_text

__all__ = ["BLOCK", "DIRECTORY", "owners", "parse", "plan"]

DIRECTORY = Path("etc/NetworkManager/system-connections")
BLOCK = f"{MARKER}: the next line"

# nm-keyfile-utils.c: names NetworkManager skips in the keyfile directory.
_IGNORED_SUFFIXES = (
    "~", ".bak", ".orig", ".rej", ".swp", ".tmp", ".rpmnew", ".rpmsave", ".rpmorig",
    ".dpkg-dist", ".dpkg-new", ".dpkg-old", ".dpkg-bak", ".dpkg-tmp", ".dpkg-remove",
)  # fmt: skip
_ADDRESS_KEY = re.compile(r"address(?:es)?(\d*)")
# Methods that take static addresses besides their own (nm-setting-ip4-config.c, -ip6-).
_METHODS = {"ipv4": ("auto", "manual"), "ipv6": ("auto", "dhcp", "manual")}


def parse(text: str) -> configparser.ConfigParser:
    """The key file as GLib reads it: ``=`` only, ``#`` comment lines, case kept."""
    parser = configparser.ConfigParser(
        delimiters=("=",),
        comment_prefixes=("#",),
        inline_comment_prefixes=None,
        interpolation=None,
        strict=True,
        empty_lines_in_values=False,
        default_section="\x00none",  # GLib has no DEFAULT group
    )
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(text)
    return parser


def owners(root: Path, iface: str) -> list[tuple[Path, str]]:
    """Every keyfile whose connection is bound to ``iface`` by ``interface-name``."""
    found: list[tuple[Path, str]] = []
    directory = root / DIRECTORY
    if not directory.is_dir():
        return found
    for path in sorted(directory.iterdir()):
        if path.name.startswith(".") or path.name.endswith(_IGNORED_SUFFIXES):
            continue
        text = read_text(path) if path.is_file() else None
        if text is None:
            continue
        try:
            name = parse(text).get("connection", "interface-name", fallback=None)
        except configparser.Error:
            continue
        if name == iface:
            found.append((path, text))
    return found


def _addresses(lines: list[str], start: int, end: int) -> dict[int, str]:
    """The ``addressN`` keys between ``start`` and ``end``, by N, with their address."""
    found: dict[int, str] = {}
    for line in lines[start:end]:
        key, sep, value = line.partition("=")
        match = _ADDRESS_KEY.fullmatch(key.strip())
        if sep and match:
            address = value.split(",")[0].strip()
            try:
                found[int(match.group(1) or 0)] = str(ipaddress.ip_interface(address))
            except ValueError:
                continue
    return found


def _group(lines: list[str], name: str) -> tuple[int, int] | None:
    """Where the ``[name]`` group's lines start and end (after its last non-blank line)."""
    start = next((i for i, line in enumerate(lines) if line.strip() == f"[{name}]"), None)
    if start is None:
        return None
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("[")), len(lines))
    while end > start + 1 and not lines[end - 1].strip():
        end -= 1
    return start + 1, end


def _remove(text: str, cidr: str) -> str:
    lines = text.splitlines(keepends=True)
    out: list[str] = []
    i = 0
    while i < len(lines):
        if lines[i].rstrip("\n") == BLOCK and i + 1 < len(lines):
            key, _, value = lines[i + 1].partition("=")
            if _ADDRESS_KEY.fullmatch(key.strip()) and _same(value, cidr):
                i += 2
                continue
        out.append(lines[i])
        i += 1
    return "".join(out)


def _same(value: str, cidr: str) -> bool:
    try:
        return str(ipaddress.ip_interface(value.split(",")[0].strip())) == cidr
    except ValueError:
        return False


def plan(root: Path, request: Request, *, add: bool) -> list[Change]:
    """The owning keyfile with the address added, or with Mailstead's lines for it removed."""
    found = owners(root, request.iface)
    if not add:
        changes = [Change(path, text, _remove(text, request.cidr), 0o600) for path, text in found]
        return [c for c in changes if c.after != c.before]
    if not found:
        raise PersistError(
            f"no keyfile in /{DIRECTORY}/ has interface-name={request.iface}; "
            f"bind a connection to it first (nmcli connection modify ID "
            f"connection.interface-name {request.iface})"
        )
    if len(found) > 1:
        names = ", ".join(path.name for path, _ in found)
        raise PersistError(
            f"several keyfiles name {request.iface} ({names}); choose by removing one"
        )
    path, text = found[0]
    group = f"ipv{request.address.version}"
    # A group without method= is normalised to "auto" by NetworkManager.
    method = parse(text).get(group, "method", fallback="auto")
    lines = text.splitlines(keepends=True)
    span = _group(lines, group)
    if span is None:
        raise PersistError(
            f"{path.name} has no [{group}] group; add one first "
            f"(nmcli connection modify ID {group}.method auto)"
        )
    if method not in _METHODS[group]:
        raise PersistError(
            f"{path.name}: [{group}] method={method} takes no static address "
            f"(it must be one of {', '.join(_METHODS[group])})"
        )
    existing = _addresses(lines, *span)
    if request.cidr in existing.values():
        return []
    number = max(existing, default=0) + 1
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    lines[span[1] : span[1]] = [f"{BLOCK}\n", f"address{number}={request.cidr}\n"]
    return [Change(path, text, "".join(lines), 0o600)]
