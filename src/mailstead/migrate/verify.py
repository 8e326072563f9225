"""Checking a copy: counts and SHA-256 checksums, each side read on its own.

Each side describes every unit it holds in one line (:func:`mailbox_line`,
:func:`rows_line`): for a mailbox its message count, UIDVALIDITY, UIDNEXT,
HIGHESTMODSEQ and a SHA-256 over the messages in UID order (each one's UID,
flags, internal date and bytes); for the directory, the queue and the
webhooks their row counts and a SHA-256 over the rows. The copy is good
when every line of the source is found, equal, on the target.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from mailstead.store.pg_import import ImportedMessage, MailboxCounters

__all__ = ["Check", "Digest", "Report", "compare", "mailbox_line", "rows_line"]


class Digest:
    """Owns the running SHA-256 of one mailbox's messages, fed in UID order."""

    def __init__(self) -> None:
        self._sha = hashlib.sha256()
        self.count = 0
        self.octets = 0

    def add(self, msg: ImportedMessage) -> None:
        flags = " ".join(sorted(set(msg.flags.split())))
        self._sha.update(f"{msg.uid} {flags} {int(msg.internaldate)} {len(msg.data)}\n".encode())
        self._sha.update(hashlib.sha256(msg.data).digest())
        self.count += 1
        self.octets += msg.size

    def hexdigest(self) -> str:
        return self._sha.hexdigest()


def mailbox_line(counters: MailboxCounters, messages: Iterable[ImportedMessage]) -> str:
    """One mailbox described: its counters, message count and checksum."""
    digest = Digest()
    for msg in messages:
        digest.add(msg)
    return (
        f"{digest.count} messages, UIDVALIDITY {counters.uidvalidity},"
        f" UIDNEXT {counters.uidnext}, HIGHESTMODSEQ {counters.highestmodseq},"
        f" sha256 {digest.hexdigest()[:16]}"
    )


def _value(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return hashlib.sha256(bytes(value)).hexdigest()
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float):
        return repr(value)
    return str(value)


def rows_line(counts: Mapping[str, int], rows: Iterable[Sequence[object]]) -> str:
    """A table group described: its row counts and a checksum over the (sorted) rows."""
    sha = hashlib.sha256()
    for row in rows:
        sha.update(("\t".join(_value(v) for v in row) + "\n").encode())
    shown = ", ".join(f"{n} {what}" for what, n in counts.items())
    return f"{shown}, sha256 {sha.hexdigest()[:16]}"


@dataclass(frozen=True, slots=True)
class Check:
    """One unit compared: what the source and the target hold."""

    unit: str
    source: str
    target: str | None

    @property
    def ok(self) -> bool:
        return self.source == self.target


@dataclass(frozen=True, slots=True)
class Report:
    """Every unit compared, and the units copied by this run."""

    checks: tuple[Check, ...]
    copied: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def lines(self) -> list[str]:
        """The report an operator reads: one line per unit, the mismatches spelled out."""
        out = []
        for c in self.checks:
            if c.ok:
                out.append(f"ok        {c.unit}: {c.source}")
            else:
                out.append(f"MISMATCH  {c.unit}: source {c.source}; target {c.target or 'missing'}")
        return out


def compare(
    source: Mapping[str, str], target: Mapping[str, str], copied: Sequence[str] = ()
) -> Report:
    """Every unit of ``source`` checked against ``target`` (which may hold more)."""
    return Report(
        tuple(Check(unit, line, target.get(unit)) for unit, line in source.items()), tuple(copied)
    )
