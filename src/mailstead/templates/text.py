"""The text/plain alternative of an HTML e-mail, derived from its markup with inscriptis.

What a reader of the text part needs, in the order the HTML shows it:
the preheader first; layout tables (cells holding paragraphs, headings,
lists or tables) read cell after cell, other tables kept as aligned
columns; links as numbered references listed at the end;
hidden elements (``display:none``, ``visibility:hidden``, ``mso-hide:all``,
``hidden``) and tracking pixels (images 1 px wide or high) dropped; lines
wrapped at 78 characters (RFC 5322 §2.1.1).
"""

from __future__ import annotations

import functools
import re
import textwrap
from collections.abc import Callable
from typing import Any, cast

from lxml import etree
from lxml import html as lxml_html

__all__ = ["html_to_text"]

WIDTH = 78  # RFC 5322 §2.1.1: lines SHOULD be no more than 78 characters

_HIDDEN = re.compile(
    r"(?:^|;)\s*(?:display\s*:\s*none|visibility\s*:\s*hidden|mso-hide\s*:\s*all)", re.I
)
_PIXEL = re.compile(r"(?:^|;)\s*(?:width|height)\s*:\s*[01](?:px)?\s*(?:;|$)", re.I)
_BLOCKS = frozenset({"p", "div", "table", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol"})
_TABLE_PARTS = frozenset({"table", "thead", "tbody", "tfoot", "tr", "td", "th", "caption"})
_LINKED = ("http:", "https:", "mailto:")
_OTHER_SPACE = re.compile(r"[^\S ]")  # white space other than " "
_BLANK_LINES = re.compile(r"\n{3,}")

# XPath finds in C what _drop_hidden looks at: every element visited in
# Python costs more than all the rest of the text part's preparation.
_STYLES = etree.XPath("//@style", smart_strings=False)
_HIDDEN_OR_IMAGE = etree.XPath("//*[@hidden or self::img]")
_HIDDEN_IMAGE_OR_STYLED = etree.XPath("//*[@hidden or self::img or @style]")
_AMPERSAND_TEXT = etree.XPath("//text()[contains(., '&')]")
_AMPERSAND_ALT = etree.XPath("//img[contains(@alt, '&')]")


def html_to_text(markup: str, *, preheader: str | None = None) -> str:
    """A plain-text rendering of ``markup`` for the text/plain alternative.

    ``preheader`` comes first; when it is not given, the text of an element
    with the class ``preheader`` (usually hidden) takes its place.
    """
    from inscriptis import Inscriptis  # type: ignore[import-untyped]

    if not markup.strip():
        return preheader + "\n" if preheader else ""
    try:
        root = lxml_html.document_fromstring(markup)
    except (etree.ParserError, ValueError):
        return preheader + "\n" if preheader else ""
    found = _take_preheader(root)
    preheader = preheader or found
    _drop_hidden(root)
    _linearise_layout_tables(root)
    references = _number_links(root)
    _escape_ampersands(root)
    body: str = Inscriptis(root, _config()).get_text()
    blocks = [preheader] if preheader else []
    blocks.append(_tidy(body))
    if references:
        blocks.append("\n".join(f"[{n}] {href}" for n, href in enumerate(references, 1)))
    text = "\n\n".join(b for b in blocks if b)
    return text + "\n" if text else ""


def _classes(el: lxml_html.HtmlElement) -> list[str]:
    return (el.get("class") or "").lower().split()


def _take_preheader(root: lxml_html.HtmlElement) -> str | None:
    for el in root.iter():
        if isinstance(el.tag, str) and "preheader" in _classes(el):
            text = " ".join(el.text_content().split())
            el.drop_tree()
            return text or None
    return None


@functools.lru_cache(maxsize=1024)
def _hides(style: str) -> bool:
    return _HIDDEN.search(style) is not None


@functools.lru_cache(maxsize=1024)
def _pixel_style(style: str) -> bool:
    return _PIXEL.search(style) is not None


def _is_pixel(el: lxml_html.HtmlElement) -> bool:
    sizes = [el.get("width", ""), el.get("height", "")]
    return any(s.strip().removesuffix("px") in ("0", "1") for s in sizes) or _pixel_style(
        el.get("style", "")
    )


def _drop_hidden(root: lxml_html.HtmlElement) -> None:
    # A few distinct style attributes are repeated on most elements (CSS
    # inlining): decide for each once, and visit the styled elements only
    # when one of them hides.
    hiding = {style for style in cast("list[str]", _STYLES(root)) if _hides(style)}
    candidates = _elements(_HIDDEN_IMAGE_OR_STYLED if hiding else _HIDDEN_OR_IMAGE, root)
    doomed = [
        el
        for el in candidates
        if el.get("hidden") is not None
        or el.get("style") in hiding
        or (el.tag == "img" and _is_pixel(el))
    ]
    for el in doomed:
        if el.getparent() is not None:
            el.drop_tree()  # keeps the text that follows it


def _linearise_layout_tables(root: lxml_html.HtmlElement) -> None:
    # Layout tables place columns side by side; read as a grid, their text
    # would interleave line by line. Each cell becomes a block instead.
    for table in list(root.iter("table")):
        cells = table.iter("td", "th")
        if not any(next(cell.iter(*_BLOCKS), None) is not None for cell in cells):
            continue
        own = [table]
        _collect_own_parts(table, own)
        for el in own:  # renamed only now: the walk stops at <table> tags
            el.tag = "div"


def _collect_own_parts(table: lxml_html.HtmlElement, own: list[lxml_html.HtmlElement]) -> None:
    """The table parts below ``table`` that belong to it, not to a nested table."""
    pending = list(table)
    while pending:
        el = pending.pop()
        if el.tag == "table" or not isinstance(el.tag, str):
            continue
        if el.tag in _TABLE_PARTS:
            own.append(el)
        pending.extend(el)


def _number_links(root: lxml_html.HtmlElement) -> list[str]:
    references: list[str] = []
    for a in root.iter("a"):
        href = (a.get("href") or "").strip()
        if not href.lower().startswith(_LINKED):
            continue
        shown = " ".join(a.text_content().split())
        if shown in (href, href.removeprefix("mailto:")):
            continue  # the text is the address already
        if href not in references:
            references.append(href)
        a.tail = f" [{references.index(href) + 1}]" + (a.tail or "")
    return references


def _escape_ampersands(root: lxml_html.HtmlElement) -> None:
    # lxml has decoded the character references already, and inscriptis
    # decodes its text once more: "&amp;lt;" would come out as "<".
    found = cast("list[etree._ElementUnicodeResult]", _AMPERSAND_TEXT(root))
    # once per text or tail, however many text nodes make it up
    for el, is_tail in {(text.getparent(), text.is_tail) for text in found}:
        if el is None:
            continue
        if is_tail:
            el.tail = (el.tail or "").replace("&", "&amp;")
        else:
            el.text = (el.text or "").replace("&", "&amp;")
    for img in _elements(_AMPERSAND_ALT, root):
        img.set("alt", img.get("alt", "").replace("&", "&amp;"))


def _elements(path: etree.XPath, root: lxml_html.HtmlElement) -> list[lxml_html.HtmlElement]:
    """The elements ``path`` selects (lxml types an XPath result as any value)."""
    return cast("list[lxml_html.HtmlElement]", path(root))


@functools.cache
def _config() -> Any:
    """Inscriptis' settings, made once: the strict CSS profile, images by their alt text,
    and each distinct ``style`` attribute read once rather than on every element."""
    from inscriptis.css_profiles import CSS_PROFILES  # type: ignore[import-untyped]
    from inscriptis.model.config import ParserConfig  # type: ignore[import-untyped]

    config = ParserConfig(css=CSS_PROFILES["strict"], display_images=True)
    handlers = dict(config.attribute_handler.attribute_mapping)
    handlers["style"] = _apply_style
    config.attribute_handler.attribute_mapping = handlers
    return config


def _apply_style(style: str, element: object) -> None:
    # what inscriptis' CssParse.attr_style does, with the parsing remembered
    for handler, value in _style_rules(style):
        try:  # noqa: SIM105 - contextlib.suppress costs more, once per element
            handler(value, element)
        except AttributeError:  # as attr_style: an unparsable length is ignored
            pass


@functools.lru_cache(maxsize=1024)
def _style_rules(style: str) -> tuple[tuple[Callable[[str, object], None], str], ...]:
    from inscriptis.model.css import CssParse  # type: ignore[import-untyped]

    rules = []
    for directive in style.lower().split(";"):
        if ":" not in directive:
            continue
        key, value = (s.strip() for s in directive.split(":", 1))
        handler = getattr(CssParse, "attr_" + key.replace("-webkit-", "").replace("-", "_"), None)
        if handler is not None:
            rules.append((handler, value))
    return tuple(rules)


def _tidy(text: str) -> str:
    lines: list[str] = []
    for line in text.split("\n"):
        line = line.rstrip()
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
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip("\n")


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
