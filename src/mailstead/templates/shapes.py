"""The shape of a rendered message: its markup with the data's values masked.

Messages of one template differ in the values each recipient's data put
in; the render records where each is in the markup. A value in text, or in
an ``href``, ``src``, ``alt`` or ``title``, changes neither which elements
there are nor how they are styled: the markup with such values masked is
the message's *shape*, and what depends on the shape alone (most of the
lint, the layout of the text part) is worked out once per shape. A value
anywhere else (a ``style``, a ``class``, a ``<style>`` block, a comment)
stays in the shape as it is.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["PLACEHOLDER", "Filler", "fill", "masked", "rewritten", "shape", "skeleton"]

_MARK = "\x00"
_MASKED_ATTRIBUTES = frozenset({"href", "src", "alt", "title"})
# Elements whose content is not text a reader sees (CSS, script) or is not parsed as markup,
# and comments, kept as written (an MSO conditional comment has tags and text in it).
# A comment ends at the first "-->" after it, or runs to the end: a little longer than the
# parser may read it, which only keeps a value in the shape. (The lookahead skips the
# other tags, most of them, at a third less than trying the names at each.)
_RAW = re.compile(
    r"<(?=[stx!])(?:(style|script|title|textarea|xmp)\b.*?</\1\s*>|!--.*?(?:-->|\Z))",
    re.I | re.S,
)
# The attribute whose value runs up to the end of a tag's start, if one does.
_OPEN_ATTRIBUTE = re.compile(r"""([^\s"'<>/=]+)\s*=\s*(?:"[^"]*|'[^']*|[^\s"'<>=`]*)$""")
# What the HTML parser rewrites (control characters, CR) or cannot write (lone surrogates):
# a value with one is not filled into a skeleton's results.
_REWRITTEN = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
# The n-th masked value in a skeleton: private-use characters around n in hex, one word.
PLACEHOLDER = re.compile("\ue000([0-9a-f]+)\ue001")


def masked(markup: str, values: Sequence[tuple[int, int]]) -> list[tuple[int, int, bool]]:
    """The ``values`` (start, end; in order) that are text or an address in ``markup``,
    each with whether it is in an attribute."""
    raw = _RAW.finditer(markup) if "<" in markup else iter(())
    skipped = next(raw, None)  # the first raw span not ended before the value
    out: list[tuple[int, int, bool]] = []
    done = 0
    for at, end in values:
        while skipped is not None and skipped.end() <= at:
            skipped = next(raw, None)
        if at < done or (skipped is not None and skipped.start() <= at):
            continue
        where = _place(markup, at)
        if where is not None:
            out.append((at, end, where))
            done = end
    return out


def _place(markup: str, at: int) -> bool | None:
    """False if ``at`` is in text, True if in the value of an address, else None."""
    opened = markup.rfind("<", 0, at)
    if opened <= markup.rfind(">", 0, at):
        return False  # between tags: text
    if markup.startswith("<!", opened):
        return None  # a comment or declaration
    found = _OPEN_ATTRIBUTE.search(markup, opened, at)
    return True if found is not None and found.group(1).lower() in _MASKED_ATTRIBUTES else None


def shape(markup: str, spans: Sequence[tuple[int, int, bool]]) -> str:
    """``markup`` with the :func:`masked` ``spans`` masked: blank or not, and how many
    line breaks, is all that is left of each (the lines and empty elements)."""
    pieces: list[str] = []
    done = 0
    for at, end, _ in spans:
        value = markup[at:end]
        mask = _MARK + "\n" * value.count("\n") if value.strip() else value
        pieces += [markup[done:at], mask]
        done = end
    pieces.append(markup[done:])
    return "".join(pieces)


def skeleton(markup: str, spans: Sequence[tuple[int, int, bool]]) -> str:
    """``markup`` with the n-th of the :func:`masked` ``spans`` replaced by a placeholder
    (:data:`PLACEHOLDER`) for n."""
    pieces: list[str] = []
    done = 0
    for n, (at, end, _) in enumerate(spans):
        pieces += [markup[done:at], f"\ue000{n:x}\ue001"]
        done = end
    pieces.append(markup[done:])
    return "".join(pieces)


def fill(text: str, values: Sequence[str]) -> str:
    """``text`` with each placeholder replaced by its value."""
    if "\ue000" not in text:
        return text
    return PLACEHOLDER.sub(lambda found: values[int(found.group(1), 16)], text)


class Filler:
    """A text with placeholders, split at them once, for :func:`fill` many times over:
    filling it is then one join instead of a search through the whole text (an inlined
    skeleton of 100 KB is filled for every message)."""

    __slots__ = ("_pieces", "_slots")

    def __init__(self, text: str) -> None:
        parts = PLACEHOLDER.split(text) if "\ue000" in text else [text]  # text, number, ..., text
        self._pieces = parts[0::2]
        self._slots = [int(number, 16) for number in parts[1::2]]

    def fill(self, values: Sequence[str]) -> str:
        """The text with each placeholder replaced by its value, as :func:`fill` gives it."""
        pieces = self._pieces
        out = [pieces[0]]
        for slot, piece in zip(self._slots, pieces[1:], strict=True):
            out += (values[slot], piece)
        return "".join(out)


def rewritten(values: Sequence[str]) -> bool:
    """Whether a parser would not read one of ``values`` as it is."""
    return any(_REWRITTEN.search(value) for value in values)
