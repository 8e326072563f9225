"""What every persistence writer shares: the request, the marker, file changes and their diff.

A writer only *plans*: it reads the files under the root and returns the
:class:`Change` list that would make them hold (or no longer hold) the
address. :func:`commit` then writes each change atomically (a temporary file,
fsync, rename, fsync of the directory: ``durable.write_file_atomically``), or
nothing on a dry run; either way the caller gets the unified diff.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path

from mailstead.durable import fsync_dir, make_dirs, write_file_atomically
from mailstead.netconfig.live import NetconfigError, check_label, parse_cidr

__all__ = [
    "MARKER",
    "Change",
    "Interface",
    "PersistError",
    "PersistResult",
    "Request",
    "commit",
    "is_ours",
    "read_text",
]

Interface = ipaddress.IPv4Interface | ipaddress.IPv6Interface

#: The first line of every file Mailstead writes, and of every block it adds
#: to a file it did not write. Nothing without it is ever changed or removed.
MARKER = "# Managed by mailstead"

#: A file Mailstead owns starts with this: the marker, then what to do instead of editing it.
HEADER = f"{MARKER}: `mailstead net add/del --persist` rewrites this file; do not edit by hand."


class PersistError(NetconfigError):
    """Persisting cannot be done as asked; ``str()`` is the one-line reason."""


@dataclass(frozen=True, slots=True)
class Request:
    """One address to persist or remove, checked."""

    iface: str
    address: Interface
    label: str | None

    @classmethod
    def make(cls, iface: str, cidr: str, label: str | None) -> Request:
        # The interface name becomes part of file names (ifcfg-eth0:1,
        # mailstead-eth0): net/core/dev.c dev_valid_name() keeps it safe.
        if (
            not iface
            or len(iface.encode()) > 15
            or iface in (".", "..")
            or any(c in "/:" or c.isspace() or not c.isprintable() for c in iface)
        ):
            raise PersistError(f"{iface!r} is not a valid interface name")
        address = parse_cidr(cidr)
        if label is not None:
            if address.version == 6:
                # linux/if_addr.h: IFA_LABEL exists for IPv4 only.
                raise PersistError(f"label {label!r}: IPv6 addresses carry no label")
            check_label(iface, label)
        return cls(iface, address, label)

    @property
    def cidr(self) -> str:
        """The address in the canonical ``ADDRESS/PREFIX`` form every writer uses."""
        return str(self.address)


@dataclass(frozen=True, slots=True)
class Change:
    """One file as it is and as it would be; ``None`` for a file that does not exist."""

    path: Path
    before: str | None
    after: str | None
    mode: int = 0o644


@dataclass(slots=True)
class PersistResult:
    """What persisting or removing did (or, on a dry run, would do)."""

    manager: str
    reason: str
    files: list[tuple[Path, str | None, str | None]] = field(default_factory=list)
    diff: str = ""
    notes: list[str] = field(default_factory=list)  # what the format could not keep

    @property
    def changed(self) -> bool:
        return bool(self.files)


def read_text(path: Path) -> str | None:
    """The file's text, or ``None`` when there is none."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


def is_ours(text: str | None) -> bool:
    """Whether a file's text starts with Mailstead's marker."""
    return text is not None and text.startswith(MARKER)


def _diff(root: Path, change: Change) -> str:
    shown = "/" + change.path.relative_to(root).as_posix()
    lines = difflib.unified_diff(
        (change.before or "").splitlines(keepends=True),
        (change.after or "").splitlines(keepends=True),
        fromfile=shown if change.before is not None else "/dev/null",
        tofile=shown if change.after is not None else "/dev/null",
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def commit(
    result: PersistResult, root: Path, changes: list[Change], *, dry_run: bool
) -> PersistResult:
    """Record ``changes`` in ``result`` and, unless ``dry_run``, make them durably."""
    changes = [c for c in changes if c.before != c.after]
    result.files = [(c.path, c.before, c.after) for c in changes]
    result.diff = "".join(_diff(root, c) for c in changes)
    if dry_run:
        return result
    for change in changes:
        if change.after is None:
            os.unlink(change.path)
            fsync_dir(change.path.parent)
            continue
        make_dirs(change.path.parent, mode=0o755)
        write_file_atomically(change.path, change.after.encode(), change.mode)
        # The temporary file was made with ``mode`` less the umask.
        os.chmod(change.path, change.mode)
    return result
