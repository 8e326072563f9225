"""The text/plain alternative of an HTML e-mail, derived from its markup.

What a reader of the text part needs, in the order the HTML shows it:
the preheader first; layout tables (cells holding paragraphs, headings,
lists or tables) read cell after cell, other tables kept as aligned
columns; links as numbered references listed at the end;
hidden elements (``display:none``, ``visibility:hidden``, ``mso-hide:all``,
``hidden``) and tracking pixels (images 1 px wide or high) dropped; lines
wrapped at 78 characters (RFC 5322 §2.1.1). :mod:`.plain` lays the
rest out.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from lxml import etree

from mailstead.templates.plain import Link, layout, numbered
from mailstead.templates.shapes import Filler, fill

__all__ = ["TextPlan", "finish_text", "html_to_text", "plan_text"]

WIDTH = 78  # RFC 5322 §2.1.1: lines SHOULD be no more than 78 characters

_OTHER_SPACE = re.compile(r"[^\S ]")  # white space other than " "

# The elements whose class may say "preheader" (any case), checked in Python after.
_MAYBE_PREHEADER = etree.XPath(
    "//@class[contains(translate(., 'PREHAD', 'prehad'), 'preheader')]/.."
)
_PREHEADER_WORD = re.compile("preheader", re.I)
# Where plain.layout may number a link; ":0" or ":1" after the slot's number if the
# values decide it, and whether a space was pending before it.
_SLOT = re.compile("\ue002([0-9]+)(?::([01]))?\ue003")
_TEXT = etree.XPath("string()", smart_strings=False)  # as lxml.html's text_content()
# lxml.html's element classes are looked up in Python for every element touched
_PARSER = etree.HTMLParser()


_OWN_MARKS = str.maketrans(dict.fromkeys("\ue000\ue001\ue002\ue003", "\ufffd"))


def html_to_text(markup: str, *, preheader: str | None = None) -> str:
    """A plain-text rendering of ``markup`` for the text/plain alternative.

    ``preheader`` comes first; when it is not given, the text of an element
    with the class ``preheader`` (usually hidden) takes its place.
    """
    # The layout marks placeholders and link slots with U+E000–U+E003: in a
    # whole message they can only be the content's own, written as U+FFFD
    # rather than read as marks (one once raised IndexError here).
    markup = markup.translate(_OWN_MARKS)
    if preheader:
        preheader = preheader.translate(_OWN_MARKS)
    plan = plan_text(markup)
    if plan is None:
        return preheader + "\n" if preheader else ""
    text = finish_text(plan, preheader)
    assert text is not None  # no values: nothing to refuse
    return text


@dataclass(frozen=True, slots=True)
class TextPlan:
    """The text part of a markup as far as it goes before the values are known: laid out
    but not wrapped, with a slot where each link's number may go (see
    :mod:`.shapes` for the placeholders)."""

    found: str | None  # the preheader element's text
    body: _Body
    links: tuple[Link, ...]
    exact: bool  # the placeholders are where values change nothing but themselves


_BLANK = None  # a run of blank lines in a _Body


class _Body:
    """The body of a text plan, tidied (:func:`_tidy`) ahead wherever it can be.

    Its lines in runs: the lines without a value's placeholder or a link's
    slot are tidied once, and only the others are filled, numbered and tidied
    for each message; the runs are then joined as :func:`_tidy` joins lines,
    no blank line at either end or after another. (Tidied whole, a newsletter's
    700 lines were a quarter of the time a message took.)
    """

    __slots__ = ("_runs",)

    def __init__(self, text: str) -> None:
        # tidied lines (no blank line at either end), a line to finish, or _BLANK
        self._runs: list[str | Filler | None] = []
        kept: list[str] = []
        for line in text.split("\n"):
            if "\ue000" in line or "\ue002" in line:
                self._keep(kept)
                kept = []
                self._runs.append(Filler(line))
            else:
                kept.append(line)
        self._keep(kept)

    def _keep(self, lines: list[str]) -> None:
        if not lines:
            return
        tidied = _tidy("\n".join(lines))
        if not tidied or not lines[0].strip():
            self._runs.append(_BLANK)
        if tidied:
            self._runs.append(tidied)
            if not lines[-1].strip():
                self._runs.append(_BLANK)

    def finish(self, values: Sequence[str], numbers: Sequence[int | None]) -> str | None:
        """The body tidied, its placeholders filled with ``values`` and its slots with
        link ``numbers`` (if there are any); None where :func:`_numbered_slots` says."""
        out: list[str] = []
        blank = False  # a blank line is due before the next text
        for run in self._runs:
            if isinstance(run, Filler):
                line: str | None = run.fill(values)
                if numbers and line is not None:
                    line = _numbered_slots(line, numbers)
                if line is None:
                    return None
                run = _tidy(line)
            if not run:
                blank = bool(out)
                continue
            if blank:
                out.append("")
                blank = False
            out.append(run)
        return "\n".join(out)


def plan_text(markup: str) -> TextPlan | None:
    """The plan of ``markup``'s text part; None if it has nothing to read."""
    if not markup.strip():
        return None
    try:
        root = etree.fromstring(markup, _PARSER)
    except (etree.ParserError, ValueError):
        return None
    if root is None:
        return None
    element = _preheader(root) if _PREHEADER_WORD.search(markup) else None
    found = " ".join(cast("str", _TEXT(element)).split()) or None if element is not None else None
    body, links, exact = layout(root, skip=element)
    return TextPlan(found, _Body(body), tuple(links), exact)


def finish_text(plan: TextPlan, preheader: str | None, values: Sequence[str] = ()) -> str | None:
    """The text part from ``plan`` with ``values`` for its placeholders; None if they
    would make it other than the text of the markup they fill in."""
    if values and not (plan.exact and all(map(_plain_value, values))):
        return None
    references: list[str] = []
    numbers: list[int | None] = []
    for link in plan.links:
        href, shown = link.href, link.shown
        if link.dynamic:
            href, shown = fill(href, values), " ".join(fill(shown, values).split())
            if not numbered(href, shown):
                numbers.append(None)
                continue
        if href not in references:
            references.append(href)
        numbers.append(references.index(href) + 1)
    body = plan.body.finish(values, numbers)
    if body is None:
        return None
    found = " ".join(fill(plan.found, values).split()) or None if plan.found else None
    preheader = preheader or found
    blocks = [preheader] if preheader else []
    blocks.append(body)
    if references:
        blocks.append("\n".join(f"[{n}] {href}" for n, href in enumerate(references, 1)))
    text = "\n\n".join(b for b in blocks if b)
    return text + "\n" if text else ""


def _numbered_slots(body: str, numbers: Sequence[int | None]) -> str | None:
    """``body`` with each link's slot as its number, or as what would have been written
    without it; None where that cannot be told."""
    pieces: list[str] = []
    done = 0
    for slot in _SLOT.finditer(body):
        pieces.append(body[done : slot.start()])
        done = slot.end()
        number = numbers[int(slot.group(1))]
        if slot.group(2) is None:  # written with its space, as " [n]" is
            pieces.append(f"[{number}]")
        elif number is not None:
            pieces.append(f" [{number}]")
        else:
            following = body[done : done + 1]
            if following == "\ue002":
                return None  # another slot right after it
            # the space pending before it, unless the text after brings its own
            if slot.group(2) == "1" and following not in (" ", "\n", ""):
                pieces.append(" ")
    pieces.append(body[done:])
    return "".join(pieces)


def _plain_value(value: str) -> bool:
    """A value the layout writes as it is: printable, one space between its words."""
    return bool(value) and value.isprintable() and value == " ".join(value.split())


def _preheader(root: etree._Element) -> etree._Element | None:
    """The first element whose class is ``preheader``: its text goes first, not in place."""
    for el in _elements(_MAYBE_PREHEADER, root):
        if "preheader" in (el.get("class") or "").lower().split():
            return el
    return None


def _elements(path: etree.XPath, root: etree._Element) -> list[etree._Element]:
    """The elements ``path`` selects (lxml types an XPath result as any value)."""
    return cast("list[etree._Element]", path(root))


def _tidy(text: str) -> str:
    """``text`` with its lines' trailing white space cut, long lines wrapped, and no
    blank line at the start or the end or after another (a regular expression over
    the joined text did the last, at half the cost of the whole)."""
    lines: list[str] = []
    blank = False  # a blank line is due before the next line
    for line in text.split("\n"):
        line = line.rstrip()
        if not line:
            blank = bool(lines)
            continue
        if blank:
            lines.append("")
            blank = False
        if len(line) <= WIDTH:
            lines.append(line)
            continue
        indent = line[: len(line) - len(line.lstrip())]
        if _OTHER_SPACE.search(line) is None:
            lines.extend(_wrap(line, indent))
            continue
        lines.extend(
            textwrap.wrap(
                line,
                WIDTH,
                subsequent_indent=indent,
                break_long_words=False,  # a URL stays whole
                break_on_hyphens=False,
            )
        )
    return "\n".join(lines)


def _wrap(line: str, indent: str) -> list[str]:
    """What the ``textwrap.wrap`` call in :func:`_tidy` gives for a line whose only
    white space is " ", found with string searches instead of word by word.

    As textwrap: words and runs of spaces are chunks; a line takes chunks
    while they fit, a word longer than the width takes a line alone, a run
    of spaces is dropped at the end of a line and, after the first line, at
    the start of one.
    """
    lines: list[str] = []
    end = len(line)
    at = 0
    while at < end:
        lead = indent if lines else ""
        width = WIDTH - len(lead)
        if lines and line[at] == " ":
            at = _chunk_end(line, at)
            if at == end:
                break
        limit = at + width
        if limit >= end:
            taken = end
        elif limit <= at:
            taken = at
        elif (line[limit - 1] == " ") != (line[limit] == " "):
            taken = limit  # a chunk ends right at the width
        elif line[limit] == " ":
            taken = at + len(line[at:limit].rstrip(" "))  # before the run of spaces
        else:
            taken = line.rfind(" ", at, limit) + 1  # before the word; 0 if none
        if taken <= at:
            taken = _chunk_end(line, at)  # nothing fits: a long word on its own
        kept = line[at:taken].rstrip(" ")
        if kept:
            lines.append(lead + kept)
        at = taken
    return lines


def _chunk_end(line: str, at: int) -> int:
    """Where the word or run of spaces starting at ``at`` ends."""
    if line[at] == " ":
        return len(line) - len(line[at:].lstrip(" "))
    found = line.find(" ", at)
    return len(line) if found < 0 else found
