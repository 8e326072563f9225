"""The HTML as written: tag structure checked before any parser repairs it.

Browsers and mail clients repair broken markup each in their own way (HTML
§13.2.6, the tree-construction rules: foster parenting, implied end tags,
the adoption agency), so a layout that looks right in one breaks in
another. This scanner reads the tokens in order (:mod:`.tokens`: the standard
library's tokenizer, or an exact faster equivalent), repairs nothing, keeps its
own stack of open elements and reports what a repairing parser would have had
to guess. It also records where every start tag and ``<style>`` block is, for
the other checks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from mailstead.templates.lint.tokens import Attributes, attributes, tokenize

__all__ = ["Issue", "SourceScan", "StyleBlock", "scan"]

# Elements with no end tag (HTML §13.1.2, void elements).
VOID = frozenset(
    [
        "area",
        "base",
        "br",
        "col",
        "embed",
        "hr",
        "img",
        "input",
        "link",
        "meta",
        "param",
        "source",
        "track",
        "wbr",
        "keygen",
    ]
)
# End tags the HTML syntax lets authors leave out (HTML §13.1.2.4); leaving
# them out is legal, so it is not reported, except for table rows and cells.
OPTIONAL_END = frozenset(
    [
        "html",
        "head",
        "body",
        "p",
        "li",
        "dt",
        "dd",
        "option",
        "optgroup",
        "colgroup",
        "thead",
        "tbody",
        "tfoot",
        "rt",
        "rp",
    ]
)
ROW_OR_CELL = frozenset({"tr", "td", "th"})
CELLS = frozenset({"td", "th"})
TABLE_SECTIONS = frozenset({"table", "thead", "tbody", "tfoot"})
ROW_HOLDERS = TABLE_SECTIONS | {"tr"}  # where a cell, and nothing else, may start
ROW_CONTEXT = TABLE_SECTIONS | CELLS  # the nearest of these tells whether a <tr> is in a table
_P = frozenset({"p"})
_LI_OR_P = frozenset({"li", "p"})
# Starting one of these closes an open <p> (HTML §13.1.2.4).
CLOSES_P = frozenset(
    [
        "address",
        "article",
        "aside",
        "blockquote",
        "details",
        "div",
        "dl",
        "fieldset",
        "figcaption",
        "figure",
        "footer",
        "form",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "header",
        "hr",
        "main",
        "menu",
        "nav",
        "ol",
        "p",
        "pre",
        "section",
        "table",
        "ul",
    ]
)
# Content that belongs in a cell; directly in <table>/<tr> a parser moves it
# out in front of the table (HTML §13.2.6.1, foster parenting).
CELL_CONTENT = frozenset(
    [
        "p",
        "div",
        "span",
        "a",
        "img",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "ul",
        "ol",
        "center",
        "font",
        "b",
        "i",
        "strong",
        "em",
        "br",
    ]
)
MAX_ATTRIBUTES = 256  # libxml2 checks attributes pairwise: many make it quadratic
MAX_DEPTH = 200  # deeper than any real e-mail; libxml2 stops at 256
MAX_PER_CHECK = 50  # findings of one kind reported before the rest are only counted


@dataclass(frozen=True, slots=True)
class Issue:
    """A structure problem at a position of the source (1-based line and column)."""

    check: str
    severity: str
    line: int
    column: int
    message: str
    fix: str | None = None


@dataclass(slots=True)
class StyleBlock:
    """The text of a ``<style>`` element and where that text starts."""

    text: str
    line: int
    column: int
    in_body: bool
    media: bool  # it has a media="" attribute


class _Open(NamedTuple):  # one per start tag: a tuple builds faster
    tag: str
    line: int
    column: int


@dataclass(slots=True)
class _Table:
    """Column counting for one table: the width of each row, with rowspans carried."""

    rows: list[tuple[int, int, int]] = field(default_factory=list)  # (line, column, width)
    pending: list[tuple[int, int]] = field(default_factory=list)  # (rows left, colspan)
    row_at: tuple[int, int] = (0, 0)
    row_width: int = -1  # -1: no row open
    new_spans: list[tuple[int, int]] = field(default_factory=list)


@dataclass(slots=True)
class SourceScan:
    """What the scanner found: structure issues, tag positions, style blocks."""

    issues: list[Issue] = field(default_factory=list)
    starts: dict[tuple[int, str], list[tuple[int, int]]] = field(default_factory=dict)
    styles: list[StyleBlock] = field(default_factory=list)
    doctype: bool = False
    too_deep: bool = False
    hostile: str | None = None  # why the document is not parsed further
    suppressed: dict[str, int] = field(default_factory=dict)


def _span(value: str | None) -> int:
    try:
        n = int((value or "1").strip())
    except ValueError:
        return 1
    return n if 1 <= n <= 1000 else 1


class _Scanner:
    """Receives the tokens (a :class:`.tokens.Sink`) and keeps the stack of open elements."""

    def __init__(self) -> None:
        self.out = SourceScan()
        self.at = (1, 1)  # where the current token starts
        self.counts: dict[str, int] = {}  # issues listed per check
        self.stack: list[_Open] = []
        self.tables: list[_Table] = []
        self.swallow: dict[str, int] = {}  # end tags already reported as misnested
        self.style: StyleBlock | None = None  # the <style> text being read
        self.style_media = False  # whether that <style> has a media attribute

    # -- reporting -------------------------------------------------------

    def _issue(
        self,
        check: str,
        severity: str,
        message: str,
        fix: str | None = None,
        at: tuple[int, int] | None = None,
    ) -> None:
        count = self.counts.get(check, 0)
        if count >= MAX_PER_CHECK:
            self.out.suppressed[check] = self.out.suppressed.get(check, 0) + 1
            return
        self.counts[check] = count + 1
        line, column = at or self.at
        self.out.issues.append(Issue(check, severity, line, column, message, fix))

    # -- the stack -------------------------------------------------------

    def _in_body(self) -> bool:
        return any(o.tag == "body" for o in self.stack)

    def _pop_implied(self, closing: frozenset[str], report: bool) -> None:
        while self.stack and self.stack[-1].tag in closing:
            gone = self.stack.pop()
            self._closed(gone.tag)
            if report and gone.tag in ROW_OR_CELL:
                self._pop_report(gone)

    def _pop_report(self, gone: _Open) -> None:
        self._issue(
            "structure-unclosed",
            "warning",
            f"<{gone.tag}> opened at line {gone.line} is never closed",
            f"close it with </{gone.tag}>; some clients misplace the cells that follow",
            at=(gone.line, gone.column),
        )

    def _closed(self, tag: str) -> None:
        if tag == "style" and self.style is not None:
            self.out.styles.append(self.style)
            self.style = None
        elif tag == "table" and self.tables:
            self._end_table(self.tables.pop())
        elif tag == "tr" and self.tables:
            self._end_row(self.tables[-1])

    def _nearest(self, names: frozenset[str]) -> _Open | None:
        for item in reversed(self.stack):
            if item.tag in names:
                return item
        return None

    # -- tables ----------------------------------------------------------

    def _end_row(self, table: _Table) -> None:
        if table.row_width < 0:
            return
        table.rows.append((*table.row_at, table.row_width))
        table.pending = [(left - 1, span) for left, span in table.pending if left > 1]
        table.pending.extend(table.new_spans)
        table.new_spans = []
        table.row_width = -1

    def _end_table(self, table: _Table) -> None:
        self._end_row(table)
        widths = [w for _, _, w in table.rows]
        if not widths:
            return
        full = max(widths)
        for line, column, width in table.rows:
            if width != full:
                self._issue(
                    "structure-colspan",
                    "warning",
                    f"this row spans {width} column(s), the table has {full}:"
                    " colspan does not add up",
                    "make each row's colspans (plus cells spanning down from rows above) add up"
                    " to the same number; Outlook and Gmail collapse the missing columns",
                    at=(line, column),
                )

    # -- tokens ----------------------------------------------------------

    def doctype(self) -> None:
        self.out.doctype = True

    def start(
        self, tag: str, attrs: Attributes | None, text: str, at: tuple[int, int], closed: bool
    ) -> None:
        self.at = at
        self._start(tag, attrs, text)
        # "/>" closes only foreign (SVG, MathML) elements (HTML §13.1.2.1).
        if (
            closed
            and any(o.tag in ("svg", "math") for o in self.stack)
            and tag not in VOID
            and self.stack
            and self.stack[-1].tag == tag
        ):
            self.stack.pop()
            self._closed(tag)

    def _start(self, tag: str, attrs: Attributes | None, text: str) -> None:
        line, column = self.at
        # Unsplit attributes each take two characters at least: a space and a name.
        if (attrs is not None or len(text) > 2 * MAX_ATTRIBUTES) and self.out.hostile is None:
            attrs = attributes(text) if attrs is None else attrs
            if len(attrs) > MAX_ATTRIBUTES:
                self.out.hostile = (
                    f"<{tag}> at line {line} has more than {MAX_ATTRIBUTES} attributes"
                )
        # Keyed by the line the start tag ends on, which is what libxml2 records.
        end_line = line + text.count("\n")
        self.out.starts.setdefault((end_line, tag), []).append((line, column))
        if tag in CLOSES_P:
            self._pop_implied(_P, report=False)
        if tag == "li":
            self._pop_implied(_LI_OR_P, report=False)
        if tag in ("td", "th"):
            self._pop_implied(CELLS, report=True)
            self._check_cell(tag)
        elif tag == "tr":
            self._pop_implied(ROW_OR_CELL, report=True)
            self._check_row()
        elif tag in CELL_CONTENT and self.stack and self.stack[-1].tag in ROW_HOLDERS:
            self._issue(
                "structure-cell-expected",
                "error",
                f"<{tag}> directly inside <{self.stack[-1].tag}>: it belongs in a <td>",
                f"wrap it in <tr><td>…</td></tr>; parsers move the <{tag}> out, above the table",
            )
        if tag in VOID:
            return
        if tag == "style":
            attrs = attributes(text) if attrs is None else attrs
            self.style_media = any(name == "media" and value for name, value in attrs)
        if len(self.stack) >= MAX_DEPTH:
            if not self.out.too_deep:
                self.out.too_deep = True
                self._issue(
                    "structure-depth",
                    "error",
                    f"elements nested more than {MAX_DEPTH} deep;"
                    " mail clients cut such documents off",
                    "flatten the layout; real e-mails nest a few dozen levels at most",
                )
            return
        self.stack.append(_Open(tag, line, column))
        if tag == "table":
            self.tables.append(_Table())
        elif tag == "tr" and self.tables:
            table = self.tables[-1]
            table.row_at, table.row_width = (line, column), sum(s for _, s in table.pending)
        elif tag in ("td", "th") and self.tables and self.tables[-1].row_width >= 0:
            table = self.tables[-1]
            # Most cells span nothing: their attributes need not be read.
            spans = attrs is not None or "span" in text.lower()
            values = dict(attributes(text) if attrs is None else attrs) if spans else {}
            colspan, rowspan = _span(values.get("colspan")), _span(values.get("rowspan"))
            table.row_width += colspan
            if rowspan > 1:
                table.new_spans.append((rowspan - 1, colspan))

    def _check_cell(self, tag: str) -> None:
        holder = self._nearest(ROW_HOLDERS)
        if holder is None:
            self._issue(
                "structure-table-context",
                "error",
                f"<{tag}> outside any <table>",
                "put the cell in a <table><tr>…</tr></table>; outside a table it is dropped",
            )
        elif holder.tag != "tr" or self._nearest(ROW_OR_CELL) is not holder:
            self._issue(
                "structure-table-context",
                "error",
                f"<{tag}> not inside a <tr> (in <{holder.tag}> from line {holder.line})",
                "wrap the cells of each row in <tr>…</tr>",
            )

    def _check_row(self) -> None:
        holder = self._nearest(ROW_CONTEXT)
        if holder is None or holder.tag in ("td", "th"):
            self._issue(
                "structure-table-context",
                "error",
                "<tr> outside any <table>",
                "put the row in a <table>; outside one the row and its cells are dropped",
            )

    def end(self, tag: str, at: tuple[int, int]) -> None:
        self.at = at
        if tag in VOID:
            return
        if self.swallow.get(tag):
            self.swallow[tag] -= 1
            return
        index = len(self.stack) - 1
        while index >= 0 and self.stack[index].tag != tag:
            index -= 1
        if index < 0:
            if not (self.out.too_deep or tag in ("html", "head", "body", "p")):
                self._issue(
                    "structure-stray-end",
                    "error",
                    f"</{tag}> closes nothing that is open",
                    f"remove the </{tag}> or add its start tag",
                )
            return
        for above in reversed(self.stack[index + 1 :]):
            if above.tag in OPTIONAL_END:
                self._closed(above.tag)
                continue
            if above.tag in ROW_OR_CELL:
                self._pop_report(above)
                self._closed(above.tag)
                continue
            if tag in ("body", "html"):
                self._unclosed(above)
                self._closed(above.tag)
                continue
            opened = self.stack[index]
            self._issue(
                "structure-misnested",
                "error",
                f"</{tag}> (opened at line {opened.line}) closes while <{above.tag}>"
                f" from line {above.line} is still open",
                f"close <{above.tag}> before </{tag}>;"
                " each client repairs overlapping tags differently",
            )
            self._closed(above.tag)
            self.swallow[above.tag] = self.swallow.get(above.tag, 0) + 1
        del self.stack[index:]
        self._closed(tag)

    def data(self, data: str, at: tuple[int, int]) -> None:
        self.at = at
        if self.stack and self.stack[-1].tag == "style":
            if self.style is None:
                line, column = at
                self.style = StyleBlock("", line, column, self._in_body(), self.style_media)
            self.style.text += data
        elif data.strip() and self.stack and self.stack[-1].tag in ROW_HOLDERS:
            self._issue(
                "structure-cell-expected",
                "error",
                f"text directly inside <{self.stack[-1].tag}>: it belongs in a <td>",
                "put the text in a cell; parsers move it out, above the table",
            )

    def _unclosed(self, item: _Open) -> None:
        self._issue(
            "structure-unclosed",
            "error" if item.tag not in ROW_OR_CELL else "warning",
            f"<{item.tag}> is never closed",
            f"add </{item.tag}> where the element ends",
            at=(item.line, item.column),
        )

    def finish(self) -> SourceScan:
        self._closed("style")
        for item in reversed(self.stack):
            if item.tag not in OPTIONAL_END:
                self._unclosed(item)
        while self.tables:
            self._end_table(self.tables.pop())
        return self.out


def scan(source: str) -> SourceScan:
    """Scan ``source`` as written; the caller bounds its size."""
    return tokenize(source, _Scanner).finish()
