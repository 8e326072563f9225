"""``mailstead net apply``: make the host carry every ``[[network.addresses]]``.

Adds what is missing (``live``), writes each entry to survive a reboot as
its ``persist`` says (``persist``), and reports what differs from the
declaration: an address on another interface, with another prefix or
label. It never removes an address: what is there and not declared is
listed and left alone, since Mailstead cannot know it added it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mailstead.config import Config, DeclaredAddress
from mailstead.netconfig import live
from mailstead.netconfig.persist import persist_address

__all__ = ["ApplyItem", "ApplyReport", "apply", "mail_addresses"]


def mail_addresses(config: Config) -> set[str]:
    """The local addresses outbound mail leaves from (``source_ip`` and per domain)."""
    return set(config.delivery.source_addresses)


@dataclass(frozen=True, slots=True)
class ApplyItem:
    """What happened to one declared address."""

    iface: str
    cidr: str
    #: ``present``, ``added``, ``would-add``, ``differs`` or ``error``.
    status: str
    message: str
    #: What persisting did (``manager: …``), or ``None`` when not asked to.
    persist: str | None = None
    #: The unified diff of the files persisting changed (or would change).
    diff: str = ""


@dataclass(slots=True)
class ApplyReport:
    """Every declared address's outcome, and the undeclared ones left alone."""

    dry_run: bool
    items: list[ApplyItem] = field(default_factory=list)
    #: ``iface cidr`` of global addresses on declared interfaces that are not declared.
    undeclared: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether the host now matches (or, on a dry run, could be made to)."""
        return all(item.status not in ("differs", "error") for item in self.items)

    def to_text(self) -> str:
        lines = []
        for item in self.items:
            lines.append(f"{item.status}: {item.iface} {item.cidr}: {item.message}")
            if item.persist is not None:
                lines.append(f"  persist: {item.persist}")
            lines += [f"  {line}" for line in item.diff.splitlines()]
        lines += [f"not declared, left alone: {entry}" for entry in self.undeclared]
        if not self.items:
            lines.append("nothing declared in [[network.addresses]]")
        return "\n".join(lines) + "\n"

    def to_json(self) -> dict[str, object]:
        return {
            "dry_run": self.dry_run,
            "ok": self.ok,
            "addresses": [
                {
                    "iface": item.iface,
                    "cidr": item.cidr,
                    "status": item.status,
                    "message": item.message,
                    "persist": item.persist,
                    "diff": item.diff,
                }
                for item in self.items
            ],
            "undeclared": self.undeclared,
        }


def _live(
    entry: DeclaredAddress,
    present: Sequence[live.InterfaceAddress],
    *,
    dry_run: bool,
    netns: str | None,
) -> tuple[str, str]:
    wanted = ipaddress.ip_interface(entry.cidr)
    for have in present:
        if have.ip != wanted.ip:
            continue
        if have.iface != entry.iface:
            return "differs", f"{wanted.ip} is on {have.iface}, not {entry.iface}"
        if have.prefix != wanted.network.prefixlen:
            return "differs", f"{entry.iface} has it as {have.cidr}"
        if entry.label is not None and have.label != entry.label:
            return "differs", f"{entry.iface} has it with label {have.label!r}"
        return "present", "already there"
    outcome = live.add_address(
        entry.iface, entry.cidr, label=entry.label, netns=netns, dry_run=dry_run
    )
    return ("would-add" if dry_run else "added"), outcome.message


def apply(
    declared: Sequence[DeclaredAddress],
    *,
    dry_run: bool = False,
    netns: str | None = None,
    root: Path = Path("/"),
) -> ApplyReport:
    """Add the missing ``declared`` addresses and persist them; see the module text.

    ``root`` is where persisted files go (``/``, or a tree for tests and
    image builders). One entry's failure is reported and the others go on.
    """
    report = ApplyReport(dry_run=dry_run)
    present = live.addresses(netns=netns)
    for entry in declared:
        try:
            status, message = _live(entry, present, dry_run=dry_run, netns=netns)
        except live.NetconfigError as exc:
            report.items.append(ApplyItem(entry.iface, entry.cidr, "error", str(exc)))
            continue
        persisted, diff = None, ""
        if entry.persist != "none" and status != "differs":
            try:
                result = persist_address(
                    entry.iface,
                    entry.cidr,
                    label=entry.label,
                    manager=entry.persist,
                    root=root,
                    dry_run=dry_run,
                )
            except live.NetconfigError as exc:
                status, message = "error", f"{message}; not persisted: {exc}"
            else:
                done = ("would write" if dry_run else "wrote") if result.changed else "unchanged"
                persisted, diff = f"{result.manager} ({done}; {result.reason})", result.diff
                persisted += "".join(f"; {note}" for note in result.notes)
        report.items.append(ApplyItem(entry.iface, entry.cidr, status, message, persisted, diff))
    declared_ips = {ipaddress.ip_interface(e.cidr).ip for e in declared}
    ifaces = {e.iface for e in declared}
    report.undeclared = [
        f"{have.iface} {have.cidr}"
        for have in present
        if have.iface in ifaces and have.scope == "global" and have.ip not in declared_ips
    ]
    return report
