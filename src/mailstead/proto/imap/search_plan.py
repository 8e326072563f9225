"""What a full-text index may tell SEARCH before the exact matcher runs.

From a search program this derives a *prefilter*: substrings that every
matching message must hold, in its header fields (``FROM``, ``SUBJECT``,
``HEADER``…) or its text (``BODY``, ``TEXT``). A store with a full-text
index (:mod:`mailstead.store.search_index`) answers it with the UIDs that
may match; the search then runs the exact matcher of
:mod:`mailstead.proto.imap.search_match` on those alone. The prefilter only
narrows: a message it lets through is still checked, so IMAP's semantics
(a case-insensitive substring, RFC 9051 §6.4.4) stay those of the matcher.

A trigram index cannot look up fewer than three characters, and ``NOT``
says nothing about which messages to read, so keys of either kind give no
prefilter and the search scans as before.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from mailstead.proto.imap.search_match import And, HeaderKey, Or, SearchKey, TextKey

MIN_NEEDLE = 3
"""Characters a needle needs for a trigram look-up."""
MAX_LOOKUPS = 16
"""Look-ups one search may ask of the index; more keys than that scan."""

FIELDS = "fields"  # every header field's decoded value (and address text)
TEXT = "text"  # what BODY and TEXT compare with: header and body


@dataclass(frozen=True, slots=True)
class Contains:
    """Every matching message holds ``needle`` (casefolded) in ``column``."""

    column: str
    needle: str


@dataclass(frozen=True, slots=True)
class AllOf:
    """Every part holds."""

    parts: tuple[Prefilter, ...]


@dataclass(frozen=True, slots=True)
class AnyOf:
    """At least one part holds."""

    parts: tuple[Prefilter, ...]


Prefilter = Contains | AllOf | AnyOf


@runtime_checkable
class TextIndexed(Protocol):
    """A mailbox with a full-text index (the store's Maildir mailbox)."""

    def text_candidates(self, prefilter: Prefilter) -> Container[int] | None:
        """The UIDs that may satisfy ``prefilter``; None when the index cannot say."""
        ...


def prefilter(program: SearchKey) -> Prefilter | None:
    """What every message matching ``program`` must hold; None if nothing is known."""
    found = _derive(program)
    if found is None or _lookups(found) > MAX_LOOKUPS:
        return None
    return found


def _derive(key: SearchKey) -> Prefilter | None:
    if isinstance(key, TextKey):
        needle = key.needle.casefold()
        return Contains(TEXT, needle) if len(needle) >= MIN_NEEDLE else None
    if isinstance(key, HeaderKey):
        needle = key.needle.casefold()
        return Contains(FIELDS, needle) if len(needle) >= MIN_NEEDLE else None
    if isinstance(key, And):
        # Dropping a part of a conjunction only widens it: still a prefilter.
        parts = [p for p in map(_derive, key.keys) if p is not None]
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else AllOf(tuple(parts))
    if isinstance(key, Or):
        left, right = _derive(key.left), _derive(key.right)
        return None if left is None or right is None else AnyOf((left, right))
    return None  # flags, dates, sizes, sets, NOT: no text to look up


def _lookups(found: Prefilter) -> int:
    if isinstance(found, Contains):
        return 1
    return sum(_lookups(p) for p in found.parts)


def text_candidates(mailbox: object, program: SearchKey) -> Container[int] | None:
    """The UIDs of ``mailbox`` that may match ``program``; None: search them all."""
    if not isinstance(mailbox, TextIndexed):
        return None
    found = prefilter(program)
    if found is None:
        return None
    return mailbox.text_candidates(found)
