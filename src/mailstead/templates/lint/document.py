"""The HTML under lint: its source lines, the as-written scan, and lxml's repaired tree.

lxml (libxml2's HTML parser) is the kept parser here because its elements
carry the line they come from (``sourceline``), which every finding needs;
selectolax (lexbor) keeps no source positions. The scanner in
:mod:`.source` supplies the columns: it records each start tag by the line
libxml2 reports for it, and the n-th element of a tag on a line is the n-th
start tag the scanner saw there.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TypeAlias

import lxml.etree as etree
import lxml.html
import tinycss2  # type: ignore[import-untyped]
from lxml.html import HtmlElement

from mailstead.templates.lint.css import Sheet, declarations, read_sheet
from mailstead.templates.lint.source import SourceScan, StyleBlock, scan

__all__ = ["Document", "Element", "HostileInput", "Node", "local_file", "snippet"]

Element: TypeAlias = HtmlElement
Node: TypeAlias = tuple[Element, str, Mapping[str, str]]  # an element, its tag, its inline style


_NO_STYLE: Mapping[str, str] = {}


@functools.lru_cache(maxsize=4096)
def _style_map(style: str) -> Mapping[str, str]:
    # Shared between the elements with this style="", so read-only.
    return {decl.lower_name: tinycss2.serialize(decl.value).strip() for decl in declarations(style)}


class HostileInput(ValueError):
    """The HTML is built to make parsing slow; it is not linted further."""


class Document:
    """One HTML document, read once, with the lookups the checks share."""

    def __init__(
        self, source: str, base_dir: Path | None, *, only: tuple[str, ...] | None = None
    ) -> None:
        """``only``: just lxml's tree and the elements with these tags, placed without the
        scan (for the findings a message's data can change: see ``lint.batch``)."""
        self.source = source
        self.base_dir = base_dir
        self.lines = source.splitlines()
        self.scan: SourceScan = scan(source) if only is None else SourceScan()
        if self.scan.hostile:
            raise HostileInput(self.scan.hostile)
        self.root: Element = lxml.html.document_fromstring(source)
        self.sheets: list[tuple[Sheet, StyleBlock]] = [
            (read_sheet(block.text, block.line, block.column, block.media), block)
            for block in self.scan.styles
        ]
        self._used: dict[tuple[int, str], int] = {}
        self._where: dict[int, tuple[int, int]] = {}
        # Each element with its tag and inline style, read once for all the checks.
        self.nodes: list[Node] = []
        self._placed = only is None  # else placed when a finding first asks
        for el in self.root.iter(*(only or (etree.Element,))):
            tag = str(el.tag)
            if only is None:
                self._where[id(el)] = self._locate(el, tag)
            self.nodes.append((el, tag, self.style(el)))

    def _find(self, el: Element, tag: str) -> tuple[int, int]:
        """Where the scan would place ``el``: the n-th ``<tag`` on its line."""
        line = el.sourceline or 1
        key = (line, tag)
        n = self._used.get(key, 0)
        self._used[key] = n + 1
        text = self.lines[line - 1] if 1 <= line <= len(self.lines) else ""
        starts = [m.start() + 1 for m in re.finditer(rf"<{tag}(?![\w-])", text, re.I)]
        return line, starts[min(n, len(starts) - 1)] if starts else 1

    def _locate(self, el: Element, tag: str) -> tuple[int, int]:
        line = el.sourceline or 1
        key = (line, tag)
        starts = self.scan.starts.get(key)
        if not starts:
            return line, 1  # an element the parser implied (tbody, body...)
        n = self._used.get(key, 0)
        self._used[key] = n + 1
        return starts[min(n, len(starts) - 1)]

    def where(self, el: Element) -> tuple[int, int]:
        if not self._placed:
            self._placed = True
            for node, tag, _ in self.nodes:  # in order: the n-th of a tag on a line
                self._where[id(node)] = self._find(node, tag)
        return self._where.get(id(el), (el.sourceline or 1, 1))

    def snippet(self, line: int, column: int) -> str:
        """The source around a position, one line, at most 120 characters."""
        return snippet(self.lines, line, column)

    def style(self, el: Element) -> Mapping[str, str]:
        """The element's inline declarations, lower-cased names, the last one winning."""
        raw = el.get("style")
        return _style_map(raw) if raw else _NO_STYLE

    def comments(self) -> Iterator[str]:
        for node in self.root.iter(etree.Comment):
            yield str(node.text or "")


def local_file(base_dir: Path | None, src: str) -> Path | None:
    """The file an ``src`` names on this machine (relative to ``base_dir``), if it is a
    local path that exists."""
    if base_dir is None or not src or ":" in src.split("/")[0] or src.startswith("//"):
        if not src.startswith("file://"):
            return None
        src = src[len("file://") :]
    path = Path(src) if Path(src).is_absolute() else (base_dir or Path.cwd()) / src
    try:
        return path if path.is_file() else None
    except OSError:
        return None


def snippet(lines: list[str], line: int, column: int) -> str:
    """The source around a position in ``lines``, one line, at most 120 characters."""
    if not 1 <= line <= len(lines):
        return ""
    text = lines[line - 1]
    start = max(0, column - 1 - 20)
    cut = text[start : start + 120].strip()
    return ("…" if start > 0 else "") + cut + ("…" if len(text) > start + 120 else "")
