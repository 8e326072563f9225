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

import re
import textwrap

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


def html_to_text(markup: str, *, preheader: str | None = None) -> str:
    """A plain-text rendering of ``markup`` for the text/plain alternative.

    ``preheader`` comes first; when it is not given, the text of an element
    with the class ``preheader`` (usually hidden) takes its place.
    """
    from inscriptis import Inscriptis  # type: ignore[import-untyped]
    from inscriptis.css_profiles import CSS_PROFILES  # type: ignore[import-untyped]
    from inscriptis.model.config import ParserConfig  # type: ignore[import-untyped]

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
    config = ParserConfig(css=CSS_PROFILES["strict"], display_images=True)
    body: str = Inscriptis(root, config).get_text()
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


def _is_pixel(el: lxml_html.HtmlElement) -> bool:
    sizes = [el.get("width", ""), el.get("height", "")]
    return any(s.strip().removesuffix("px") in ("0", "1") for s in sizes) or bool(
        _PIXEL.search(el.get("style", ""))
    )


def _drop_hidden(root: lxml_html.HtmlElement) -> None:
    doomed = [
        el
        for el in root.iter()
        if isinstance(el.tag, str)
        and (
            el.get("hidden") is not None
            or _HIDDEN.search(el.get("style", ""))
            or (el.tag == "img" and _is_pixel(el))
        )
    ]
    for el in doomed:
        if el.getparent() is not None:
            el.drop_tree()  # keeps the text that follows it


def _linearise_layout_tables(root: lxml_html.HtmlElement) -> None:
    # Layout tables place columns side by side; read as a grid, their text
    # would interleave line by line. Each cell becomes a block instead.
    for table in list(root.iter("table")):
        layout = any(
            isinstance(el.tag, str) and el.tag in _BLOCKS
            for cell in table.iter("td", "th")
            for el in cell.iterdescendants()
        )
        if not layout:
            continue
        own = [
            el
            for el in [table, *table.iterdescendants()]
            if isinstance(el.tag, str) and el.tag in _TABLE_PARTS and _owner(el) is table
        ]
        for el in own:  # renamed only now: _owner looks for the <table> tag
            el.tag = "div"


def _owner(el: lxml_html.HtmlElement) -> lxml_html.HtmlElement | None:
    """The table ``el`` belongs to (itself, for a table)."""
    node: lxml_html.HtmlElement | None = el
    while node is not None and node.tag != "table":
        node = node.getparent()
    return node


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
    for el in root.iter():
        if el.text:
            el.text = el.text.replace("&", "&amp;")
        if el.tail:
            el.tail = el.tail.replace("&", "&amp;")
        if el.tag == "img" and el.get("alt"):
            el.set("alt", el.get("alt", "").replace("&", "&amp;"))


def _tidy(text: str) -> str:
    lines: list[str] = []
    for line in text.split("\n"):
        line = line.rstrip()
        if len(line) <= WIDTH:
            lines.append(line)
            continue
        indent = line[: len(line) - len(line.lstrip())]
        lines.extend(
            textwrap.wrap(
                line,
                WIDTH,
                subsequent_indent=indent,
                break_long_words=False,  # a URL stays whole
                break_on_hyphens=False,
            )
        )
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n")
