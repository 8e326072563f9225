"""IMAP sequence sets: ``1:3,5,7:*`` and the saved-result marker ``$``.

RFC 9051 §9 ``sequence-set``: comma-separated numbers and ranges, where
``*`` stands for the largest number in use (the message count for sequence
numbers, the largest UID for UID sets) and ``n:m`` means the same as
``m:n``. RFC 5182 adds ``$``, "the result of the last SEARCH ... SAVE",
which stands alone and is resolved by the session, not here.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from mailstead.proto.errors import LocalProtocolError, RemoteProtocolError

MAX_NUMBER = 2**32 - 1
"""RFC 9051 §9 ``nz-number`` is a 32-bit unsigned value."""
MAX_RANGES = 10_000
"""The most comma-separated elements one set may have."""
MAX_TEXT = 100_000
"""The longest sequence-set text accepted, in characters."""

STAR = 0
"""How ``*`` is stored inside :attr:`SequenceSet.ranges` (0 is never a valid number)."""

# RFC 9051 §9: seq-number = nz-number / "*"; nz-number = digit-nz *DIGIT
_ELEMENT = re.compile(r"([1-9][0-9]*|\*)(?::([1-9][0-9]*|\*))?")


class SequenceSetError(RemoteProtocolError):
    """The client sent a sequence set that RFC 9051 §9 does not allow."""


def _number(text: str) -> int:
    if text == "*":
        return STAR
    if len(text) > 10 or int(text) > MAX_NUMBER:
        raise SequenceSetError("Number in sequence set out of range")
    return int(text)


@dataclass(frozen=True, slots=True)
class SequenceSet:
    """A parsed sequence set, kept as written until the largest number is known.

    ``ranges`` holds ``(first, last)`` pairs as sent (``*`` stored as
    :data:`STAR`, a single number as ``(n, n)``); ``is_saved`` is True for
    the RFC 5182 ``$`` marker, whose ranges are empty.
    """

    ranges: tuple[tuple[int, int], ...]
    is_saved: bool = False
    # (largest, starts, ends) of the last resolution, for contains().
    _cache: list[tuple[int, list[int], list[int]]] = field(
        default_factory=list, init=False, repr=False, compare=False, hash=False
    )

    @classmethod
    def parse(cls, text: str) -> SequenceSet:
        """Parse ``text``; raise :class:`SequenceSetError` when it is not a sequence set."""
        if len(text) > MAX_TEXT:
            raise SequenceSetError("Sequence set too long")
        if text == "$":  # RFC 5182 §2.1 seq-last-command, only on its own
            return cls((), is_saved=True)
        pieces = text.split(",")
        if len(pieces) > MAX_RANGES:
            raise SequenceSetError("Too many ranges in sequence set")
        ranges: list[tuple[int, int]] = []
        for piece in pieces:
            m = _ELEMENT.fullmatch(piece)
            if m is None:
                raise SequenceSetError("Invalid sequence set")
            first = _number(m[1])
            last = first if m[2] is None else _number(m[2])
            ranges.append((first, last))
        return cls(tuple(ranges))

    @classmethod
    def of(cls, numbers: Iterable[int]) -> SequenceSet:
        """The set of exactly ``numbers`` (each 1 .. 2^32-1), merged into ranges."""
        return cls(tuple(_merge((n, n) for n in numbers)))

    @property
    def uses_star(self) -> bool:
        """Whether ``*`` appears, so that the meaning depends on the largest number."""
        return any(STAR in r for r in self.ranges)

    def resolve(self, largest: int) -> list[tuple[int, int]]:
        """Sorted, merged, inclusive ranges within ``1..largest``.

        ``*`` is ``largest`` (RFC 9051 §9 ``seq-number``); ``n:m`` with n > m
        is ``m:n`` (§9 ``seq-range``); so ``3:*`` with ``largest`` 2 is ``2:3``
        and resolves to 2. With ``largest`` 0 (an empty mailbox) nothing is
        in the set.
        """
        if self.is_saved:
            raise LocalProtocolError("$ must be resolved against the saved search result")
        if largest <= 0:
            return []
        clipped: list[tuple[int, int]] = []
        for first, last in self.ranges:
            a = largest if first == STAR else first
            b = largest if last == STAR else last
            if a > b:
                a, b = b, a
            if a > largest:
                continue
            clipped.append((a, min(b, largest)))
        return _merge(clipped)

    def contains(self, number: int, largest: int) -> bool:
        """Whether ``number`` is in the set once ``*`` means ``largest``.

        Resolution is cached per ``largest``, so calling this once per
        message of a mailbox costs O(log ranges) each.
        """
        cache = self._cache
        if not cache or cache[0][0] != largest:
            resolved = self.resolve(largest)
            cache[:] = [(largest, [a for a, _ in resolved], [b for _, b in resolved])]
        _, starts, ends = cache[0]
        i = bisect_right(starts, number) - 1
        return i >= 0 and number <= ends[i]

    def index_ranges(self, numbers: Sequence[int]) -> list[range]:
        """Index ranges into ``numbers`` (sorted ascending, e.g. a mailbox's UIDs) in the set.

        ``*`` is ``numbers[-1]``, the largest UID in use. Each range of the
        set costs two bisections, so ``UID FETCH 5`` is O(log n).
        """
        if not numbers:
            return []
        out: list[range] = []
        for a, b in self.resolve(numbers[-1]):
            lo = bisect_left(numbers, a)
            hi = bisect_right(numbers, b, lo)
            if lo < hi:
                out.append(range(lo, hi))
        return out

    def select(self, numbers: Sequence[int]) -> list[int]:
        """0-based positions in ``numbers`` (sorted ascending) of the numbers in the set.

        With a mailbox's UID list, positions + 1 are the sequence numbers of
        the messages a UID set names; ``1:*`` costs O(n), ``5`` O(log n).
        """
        out: list[int] = []
        for r in self.index_ranges(numbers):
            out.extend(r)
        return out


def _merge(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sort and merge overlapping or adjacent inclusive ranges."""
    merged: list[tuple[int, int]] = []
    for a, b in sorted(ranges):
        if merged and a <= merged[-1][1] + 1:
            if b > merged[-1][1]:
                merged[-1] = (merged[-1][0], b)
        else:
            merged.append((a, b))
    return merged


def format_ranges(ranges: Iterable[tuple[int, int]]) -> str:
    """``1:3,5`` from inclusive ranges (merged first); empty input gives ``""``."""
    return ",".join(str(a) if a == b else f"{a}:{b}" for a, b in _merge(ranges))


def format_set(numbers: Iterable[int]) -> str:
    """The compact sequence set of ``numbers``: ``1:3,5,7:9`` (sorted, merged).

    For COPYUID/APPENDUID (RFC 4315 §3) and ESEARCH ``ALL`` (RFC 4731 §3.1);
    an empty input gives ``""``, which is not a valid set, so callers omit it.
    """
    return format_ranges((n, n) for n in numbers)
