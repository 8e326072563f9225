"""Lays an HTML tree out as plain text: blocks on lines of their own, lists, tables.

The layout is a browser's reduced to text (CSS 2.1 §9 normal flow): block
elements start a line, paragraphs and headings are set apart by a blank
line (their margins, collapsing as CSS margins do, §8.3.1), white space
collapses (§16.6.1) except in ``<pre>``, list items carry a bullet or their
number inside their list's indentation, images show as ``[alt]``, and a
table is a grid of columns two spaces apart. An inline ``style`` may make
an element a block or hide it (``display``), set its margins
(``margin-top``, ``margin-bottom``: 8 px or 1 em make a line) and indentation
(``padding-left``), or keep its white space (``white-space: pre``).
Lines are not wrapped here.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import cast

from lxml import etree

__all__ = ["layout"]

_SKIPPED = frozenset({"head", "link", "meta", "script", "style", "title"})
_MARGINED = frozenset({"p", "figure", "h1", "h2", "h3", "h4", "h5", "h6"})
_PRE = frozenset({"pre", "xmp", "listing", "plaintext"})
_BLOCKS = (
    _MARGINED
    | _PRE
    | frozenset(
        {
            "ul",
            "ol",
            "li",
            "dl",
            "dt",
            "dd",
            "address",
            "article",
            "aside",
            "blockquote",
            "center",
            "div",
            "figcaption",
            "footer",
            "header",
            "hgroup",
            "hr",
            "main",
            "nav",
            "section",
        }
    )
)
# A cell holding one of these makes its table a layout table (side-by-side columns):
# read cell after cell, as blocks, rather than as a grid whose lines would interleave.
_LAYOUT_CONTENT = ("p", "div", "table", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol")
_TABLE_PARTS = frozenset({"thead", "tbody", "tfoot", "tr", "td", "th", "caption"})
_MARKED = frozenset({"ul", "ol", "li", "br", "img", "q", "a"})  # write more than their content
_HIDDEN = re.compile(
    r"(?:^|;)\s*(?:display\s*:\s*none|visibility\s*:\s*hidden|mso-hide\s*:\s*all)", re.I
)
_PIXEL = re.compile(r"(?:^|;)\s*(?:width|height)\s*:\s*[01](?:px)?\s*(?:;|$)", re.I)
LINKED = ("http:", "https:", "mailto:")
_PLACED = "\ue000"  # starts a placeholder (shapes.PLACEHOLDER)
_TEXT = etree.XPath("string()", smart_strings=False)
_LIST_INDENT = 4
_BULLETS = ("* ", "+ ", "o ", "- ")  # by how deep the list is
_SEPARATOR = "  "  # between table columns
# A length with its unit: a bare 0 is not read, as e-mail CSS often zeroes the margins
# of paragraphs it spaces with padding, and the text part keeps their blank lines.
_LENGTH = re.compile(r"(-?[0-9.]+)([a-z]+)")
_EM = 8  # px in a line of text


@dataclass(frozen=True, slots=True)
class _Style:
    """What an inline style changes in the layout (None: the tag's default)."""

    display: str | None = None
    pre: bool | None = None
    margin_before: int | None = None
    margin_after: int | None = None
    indent: int | None = None


_PLAIN = _Style()


def _style(style: str) -> _Style:
    values: dict[str, object] = {}
    for declaration in style.lower().split(";"):
        name, colon, value = declaration.partition(":")
        if not colon:
            continue
        name = name.strip().replace("-webkit-", "")
        value = value.replace("!important", "").strip()
        if name == "display":
            values["display"] = "block" if value == "block" else "none" if value == "none" else ""
        elif name == "white-space":
            if value in ("normal", "nowrap"):
                values["pre"] = False
            elif value in ("pre", "pre-line", "pre-wrap"):
                values["pre"] = True
        elif name in ("margin-top", "margin-bottom", "padding-left"):
            lines = _lines(value)
            if lines is not None:
                key = {"margin-top": "margin_before", "margin-bottom": "margin_after"}
                values[key.get(name, "indent")] = lines
    return _Style(**values) if values else _PLAIN  # type: ignore[arg-type]


@functools.lru_cache(maxsize=4096)
def _spec(tag: str, style: str | None) -> tuple[bool, int, int, int, bool | None] | None:
    """How a ``tag`` with this ``style`` is laid out: block or not, its top and bottom
    margins, its indentation and whether its white space is kept; None: not shown."""
    if tag in _SKIPPED or (style and _HIDDEN.search(style)):
        return None
    found = _style(style) if style else _PLAIN
    if found.display == "none":
        return None
    block = tag in _BLOCKS if found.display is None else found.display == "block"
    margin = 1 if tag in _MARGINED else 0
    before = margin if found.margin_before is None else found.margin_before
    after = margin if found.margin_after is None else found.margin_after
    indent = 0 if found.indent is None else found.indent
    if tag in ("ul", "ol"):
        indent += _LIST_INDENT
    keep = found.pre if found.pre is not None else True if tag in _PRE else None
    return block, before, after, indent, keep


def _lines(length: str) -> int | None:
    found = _LENGTH.match(length)
    if found is None:
        return None
    try:
        number = float(found.group(1))
    except ValueError:
        return None
    if found.group(2) not in ("em", "rem"):
        number /= _EM
    return max(0, round(number))


class _Canvas:
    """Lines of text being written: the current line, the blank lines owed before the
    next, the indentation and the bullet waiting for the next line."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.parts: list[str] = []  # the current line, empty until it has text
        self.space = False  # white space is pending after the current line's text
        self.gap = 0  # blank lines owed before the next text (collapsed margins)
        self.indent = 0
        self.bullet = ""

    def start(self) -> None:
        if self.lines and self.gap:
            self.lines.extend([""] * self.gap)
        self.gap = 0
        bullet, self.bullet = self.bullet, ""
        self.parts.append(" " * (self.indent - len(bullet)) + bullet)

    def text(self, text: str) -> None:
        words = text.split()
        if not words:
            if text and self.parts:
                self.space = True
            return
        if not self.parts:
            self.start()
        elif self.space or text[0].isspace():
            self.parts.append(" ")
        self.parts.append(" ".join(words))
        self.space = text[-1].isspace()

    def pre(self, text: str) -> None:
        first, *rest = text.split("\n")
        if not self.parts:
            self.start()
        self.parts.append(first)
        for line in rest:
            self.end()
            self.parts.append(" " * self.indent + line)
        self.space = False

    def end(self) -> bool:
        """Ends the current line; False if it had no text."""
        if not self.parts:
            return False
        self.lines.append("".join(self.parts))
        self.parts = []
        self.space = False
        return True

    def margin(self, lines: int) -> None:
        self.end()
        if self.lines:
            self.gap = max(self.gap, lines)

    def newline(self) -> None:
        if not self.end():
            self.lines.append("")

    def slot(self, token: str) -> None:
        """Where a link's number may go: written as is, leaving no space pending."""
        if not self.parts:
            self.start()
        self.parts.append(token)
        self.space = False

    def put_bullet(self) -> None:
        """A list item with no text still shows its bullet."""
        if self.bullet:
            self.start()
            self.end()


class _Layout:
    def __init__(self, skip: etree._Element | None = None) -> None:
        self.skip = skip  # an element left out (its text is put elsewhere)
        self.counters: list[int | str] = []  # per open list: the next number, or its bullet
        self.links: list[Link] = []  # by slot
        self.exact = True  # no placeholder where its value's width matters

    def element(
        self,
        el: etree._Element,
        out: _Canvas,
        pre: bool,
        enclosing: int = 0,
        in_layout: bool = False,
    ) -> None:
        """Lays ``el`` out. ``enclosing``: the bottom margin of the block it is in, which
        keeps a block in it apart from what came before; ``in_layout``: ``el`` is in a
        layout table, whose own rows and cells are blocks."""
        tag = el.tag
        if not isinstance(tag, str) or el is self.skip:
            return  # a comment, or left out: its tail is the parent's to write
        layout = False
        if tag == "table":
            layout = _is_layout(el)
            if layout:
                tag = "div"
        elif in_layout and tag in _TABLE_PARTS:
            tag, layout = "div", True
        spec = _spec(tag, el.get("style"))
        if spec is None or el.get("hidden") is not None or (tag == "img" and _is_pixel(el)):
            return  # hidden, or a tracking pixel
        block, before, after, indent, keep = spec
        if keep is not None:
            pre = keep
        if tag == "table":
            self.table(el, out)
            return
        if block:
            out.margin(max(before, enclosing))
            out.indent += indent
        if tag in _MARKED:
            self.open(el, tag, out, pre)
        if el.text:
            out.pre(el.text) if pre else out.text(el.text)
        inner = after if block else 0
        for child in el:
            self.element(child, out, pre, inner, layout)
            tail = child.tail
            if tail:
                out.pre(tail) if pre else out.text(tail)
        if tag in _MARKED:
            self.close(el, tag, out, pre)
        if block:
            out.indent -= indent
            out.margin(after)

    def open(self, el: etree._Element, tag: str, out: _Canvas, pre: bool) -> None:
        """What an element writes before its content."""
        if tag in ("ul", "ol"):
            depth = len(self.counters)
            self.counters.append(1 if tag == "ol" else _BULLETS[depth % len(_BULLETS)])
        elif tag == "li":
            out.put_bullet()
            out.bullet = self.bullet(el)
        elif tag == "br":
            out.newline()
        elif tag == "img":
            shown = el.get("alt") or el.get("title")
            if shown:
                out.pre(f"[{shown}]") if pre else out.text(f"[{shown}]")
        elif tag == "q":
            out.pre('"') if pre else out.text('"')

    def close(self, el: etree._Element, tag: str, out: _Canvas, pre: bool) -> None:
        """What an element writes after its content."""
        if tag in ("ul", "ol"):
            self.counters.pop()
        elif tag == "li":
            out.put_bullet()
        elif tag == "q":
            out.pre('"') if pre else out.text('"')
        elif tag == "a" and self.link(el):
            slot = len(self.links) - 1
            if not self.links[-1].dynamic:
                token = f" \ue002{slot}\ue003"  # numbered, whatever the values
                out.pre(token) if pre else out.text(token)
                return
            if not out.parts:
                self.exact = False  # whether a line starts here depends on the values
            # numbered or not, once the values are in; and if not, whether the space
            # pending before it is still to be written
            out.slot(f"\ue002{slot}:{int(out.space and not pre)}\ue003")

    def link(self, a: etree._Element) -> bool:
        """Adds a link that may get a number among the references (``text`` fills the
        slots once the values are in); False if it gets none whatever they are."""
        href = (a.get("href") or "").strip()
        dynamic = _PLACED in href
        if not dynamic and not href.lower().startswith(LINKED):
            return False
        shown = cast("str", _TEXT(a))
        dynamic = dynamic or _PLACED in shown
        shown = " ".join(shown.split())
        if not dynamic and not numbered(href, shown):
            return False
        self.links.append(Link(href, shown, dynamic))
        return True

    def bullet(self, li: etree._Element) -> str:
        if not self.counters:
            return _BULLETS[0]
        counter = self.counters[-1]
        if isinstance(counter, str):
            return counter
        value = li.get("value", "")
        number = int(value) if value.isdigit() else counter
        self.counters[-1] = number + 1
        return f"{number}. "

    def table(self, table: etree._Element, out: _Canvas) -> None:
        rows: list[list[_Cell]] = []
        outside = _Canvas()  # a caption, or text astray between the rows
        self.rows(table, rows, outside)
        outside.end()
        out.end()
        shown = [line for line in outside.lines if line.strip()]
        widths: dict[int, int] = {}
        for row in rows:
            for n, cell in enumerate(row):
                widths[n] = max(widths.get(n, 0), *(len(line) for line in cell.lines))
        for row in rows:
            height = max((len(cell.lines) for cell in row), default=0)
            for k in range(height):
                line = _SEPARATOR.join(
                    cell.line(k, height, widths[n]) for n, cell in enumerate(row)
                )
                if line.strip():
                    shown.append(line)
        for line in shown:
            out.start()
            out.parts.append(line)
            out.end()
        out.margin(1)  # a table stands apart from what follows

    def rows(
        self,
        group: etree._Element,
        rows: list[list[_Cell]],
        outside: _Canvas,
    ) -> None:
        """The rows of a table or row group into ``rows``, anything else into ``outside``."""
        if group.text:
            outside.text(group.text)
        for el in group:
            if el.tag in ("thead", "tbody", "tfoot"):
                self.rows(el, rows, outside)
            elif el.tag == "tr":
                rows.append([self.cell(cell) for cell in el if cell.tag in ("td", "th")])
            elif el.tag in ("td", "th"):
                rows.append([self.cell(el)])
            else:
                self.element(el, outside, False)
            if el.tail:
                outside.text(el.tail)

    def cell(self, cell: etree._Element) -> _Cell:
        canvas = _Canvas()
        if cell.text:
            canvas.text(cell.text)
        for child in cell:
            self.element(child, canvas, False)
            if child.tail:
                canvas.text(child.tail)
        canvas.end()
        lines = canvas.lines
        if any(_PLACED in line for line in lines):
            self.exact = False  # the column's width is its widest line's
        while lines and not lines[-1].strip():
            lines.pop()
        align = (cell.get("align") or "").lower()
        return _Cell(lines or [""], align, (cell.get("valign") or "middle").lower())


@dataclass(frozen=True, slots=True)
class _Cell:
    """A table cell's lines, and how they sit in their column and row."""

    lines: list[str]
    align: str
    valign: str

    def line(self, k: int, height: int, width: int) -> str:
        """The k-th of the row's ``height`` lines in a column ``width`` wide."""
        spare = height - len(self.lines)
        first = 0 if self.valign == "top" else spare if self.valign == "bottom" else spare // 2
        text = self.lines[k - first] if first <= k < first + len(self.lines) else ""
        if self.align == "right":
            return text.rjust(width)
        if self.align == "center":
            return text.center(width)
        return text.ljust(width)


def _is_layout(table: etree._Element) -> bool:
    return any(
        next(cell.iter(*_LAYOUT_CONTENT), None) is not None for cell in table.iter("td", "th")
    )


@functools.lru_cache(maxsize=1024)
def _pixel_style(style: str) -> bool:
    return _PIXEL.search(style) is not None


def _is_pixel(img: etree._Element) -> bool:
    sizes = (img.get("width", ""), img.get("height", ""))
    return any(s.strip().removesuffix("px") in ("0", "1") for s in sizes) or _pixel_style(
        img.get("style", "")
    )


@dataclass(frozen=True, slots=True)
class Link:
    """A link that may be numbered: its address and text, and whether a placeholder is in
    either (its number then depends on the values)."""

    href: str
    shown: str
    dynamic: bool


def numbered(href: str, shown: str) -> bool:
    """Whether a link gets a reference number: a web or mail address its text is not."""
    return href.lower().startswith(LINKED) and shown not in (href, href.removeprefix("mailto:"))


def layout(
    root: etree._Element, skip: etree._Element | None = None
) -> tuple[str, list[Link], bool]:
    """The text of the document ``root`` laid out (lines not wrapped, a slot where each
    link's number may go), its links by slot, and whether the layout stays the same
    with any values in place of the placeholders (none is in a table's grid)."""
    out = _Canvas()
    laid = _Layout(skip)
    laid.element(root, out, False)
    out.end()
    return "\n".join(out.lines), laid.links, laid.exact
