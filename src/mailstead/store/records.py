"""What both mailbox formats share about their message records: UID lists and flag sets."""

from __future__ import annotations

from collections.abc import Sequence


def with_changes(uids: list[int], added: list[int], removed: set[int]) -> list[int]:
    """A new ascending UID list: ``uids`` less ``removed``, plus ``added``.

    Never changes ``uids`` in place: a selected view shares the mailbox's list
    until one of them changes (a copy of 100,000 UIDs per SELECT cost more
    than the rest of SELECT together).
    """
    kept = [uid for uid in uids if uid not in removed] if removed else uids
    if not added:
        return kept
    added = sorted(added)
    if not kept or added[0] > kept[-1]:
        return kept + added
    return sorted(set(kept).union(added))


def flags_after(current: Sequence[str], flags: Sequence[str], mode: str) -> set[str] | None:
    """The flags after STORE adds (``+``), removes (``-``) or sets (``=``) ``flags``;
    None when they would not change."""
    if mode == "+":
        new = set(current) | set(flags)
    elif mode == "-":
        new = set(current) - set(flags)
    else:
        new = set(flags)
    return None if new == set(current) else new


_flag_tuples: dict[str, tuple[str, ...]] = {}


def flag_tuple(flags: str) -> tuple[str, ...]:
    """The interned sorted tuple for a space-separated flag string."""
    found = _flag_tuples.get(flags)
    if found is None:
        found = tuple(sorted(set(flags.split()))) if flags else ()
        if len(_flag_tuples) < 10_000:
            _flag_tuples[flags] = found
    return found
