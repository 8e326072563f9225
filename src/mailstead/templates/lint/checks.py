"""The checks the support table has no row for: images, size, links, layout, fonts, safety."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from mailstead.templates.lint.data import ClientIssue
from mailstead.templates.lint.document import Document, Element
from mailstead.templates.lint.gif import gif_bytes, gif_frames
from mailstead.templates.lint.report import Finding

__all__ = [
    "GMAIL_CLIP_BYTES",
    "MESSAGE_CHECK_NAMES",
    "Addressed",
    "addressed",
    "check_all",
    "html_words",
    "message_checks",
]

GMAIL_CLIP_BYTES = 102 * 1024  # Gmail shows "[Message clipped]" past about this much HTML
GMAIL_STYLE_BYTES = 16 * 1024  # Gmail drops a <style> block larger than this
MAX_WIDTH_PX = 640  # wider than a preview pane or a phone held upright
TEXT_RATIO = 0.3  # a text part under this share of the HTML's words is "much shorter"
MAX_REPORTED = 20  # per check; the rest are counted in the last finding

_GENERIC_FONTS = frozenset({"serif", "sans-serif", "monospace", "cursive", "fantasy", "system-ui"})
_WEB_SAFE_FONTS = frozenset(
    {
        "arial",
        "helvetica",
        "helvetica neue",
        "georgia",
        "times new roman",
        "times",
        "verdana",
        "tahoma",
        "trebuchet ms",
        "courier new",
        "courier",
        "segoe ui",
        "lucida grande",
        "lucida sans unicode",
        "palatino",
        "palatino linotype",
        "garamond",
        "impact",
    }
)
_SAFE_SCHEMES = ("http:", "https:", "mailto:", "tel:", "sms:", "cid:", "#")
_PLACEHOLDER = re.compile(r"^(\{\{|\{%|%%|\*\||\[)")  # merge tags an ESP fills in later
_IGNORED_IN_SCHEME = re.compile(r"[\s\x00-\x1f]")  # what browsers skip in "java script:"
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:")


def _client(family: str, platform: str, support: str, note: str) -> ClientIssue:
    return ClientIssue(family, platform, support, "", (note,))


OUTLOOK_WINDOWS = "outlook", "windows"


def _outlook(support: str, note: str) -> tuple[ClientIssue, ...]:
    return (_client(*OUTLOOK_WINDOWS, support, note),)


def _gmail(note: str, *platforms: str) -> tuple[ClientIssue, ...]:
    chosen = platforms or ("desktop-webmail", "ios", "android", "mobile-webmail")
    return tuple(_client("gmail", p, "n", note) for p in chosen)


class _Out:
    """Collects findings, at most MAX_REPORTED per check."""

    def __init__(
        self,
        snippet: Callable[[int, int], str],
        where: Callable[[Element], tuple[int, int]] | None = None,
    ) -> None:
        self.snippet = snippet
        self.where = where
        self.items: list[Finding] = []
        self.count: dict[str, int] = {}

    def add(
        self,
        check: str,
        feature: str,
        severity: str,
        where: tuple[int, int],
        message: str,
        fix: str | None = None,
        clients: tuple[ClientIssue, ...] = (),
    ) -> None:
        seen = self.count.get(check, 0)
        self.count[check] = seen + 1
        if seen < MAX_REPORTED:
            line, column = where
            self.items.append(
                Finding(
                    check,
                    feature,
                    severity,
                    line,
                    column,
                    self.snippet(line, column),
                    message,
                    clients,
                    fix,
                )
            )

    def at(self, el: Element) -> tuple[int, int]:
        assert self.where is not None
        return self.where(el)

    def summaries(self) -> Iterator[Finding]:
        yield from self.items
        for check, seen in self.count.items():
            if seen > MAX_REPORTED:
                yield Finding(
                    check,
                    "More findings",
                    "info",
                    1,
                    1,
                    "",
                    f"{seen - MAX_REPORTED} more {check} finding(s) not listed",
                )


@dataclass(frozen=True, slots=True)
class Addressed:
    """An element by its address: a link's (``a``, ``area``) href, an image's src."""

    tag: str
    address: str
    where: tuple[int, int]


def addressed(doc: Document) -> list[Addressed]:
    """The links and images of ``doc``, in order."""
    out = []
    for el, tag, _ in doc.nodes:
        if tag in ("a", "area", "img"):
            address = el.get("src" if tag == "img" else "href", "")
            out.append(Addressed(tag, str(address), doc.where(el)))
    return out


def html_words(doc: Document) -> int:
    """How many words the body of ``doc`` shows (its text, hidden or not)."""
    body = doc.root.find("body")
    return len((body if body is not None else doc.root).text_content().split())


def _images(doc: Document, out: _Out) -> None:
    for el, tag, style in doc.nodes:
        if tag != "img":
            continue
        where = out.at(el)
        if el.get("alt") is None:
            out.add(
                "img-alt",
                "Image without alt",
                "warning",
                where,
                "<img> has no alt attribute: with images blocked (the default in Outlook) and"
                " for screen readers it says nothing, or its file name",
                'add alt="what the image says" (alt="" for a decorative image)',
            )
        if el.get("width") is None:
            out.add(
                "img-size",
                "Image without width",
                "warning",
                where,
                "<img> has no width attribute: Outlook for Windows ignores CSS width and shows"
                " the image at its file's size",
                'add width="…" (and height="…") attributes in pixels, without "px"',
                _outlook("n", "Uses the width attribute, not CSS, for images."),
            )
        elif el.get("height") is None and "height" not in style:
            out.add(
                "img-size",
                "Image without height",
                "info",
                where,
                "<img> has no height: the layout jumps when images load, and blocked images"
                " collapse",
                'add height="…" in pixels',
            )


def _gifs(images: list[Addressed], base_dir: Path | None, out: _Out) -> None:
    for image in images:
        if image.tag != "img":
            continue
        data = gif_bytes(base_dir, image.address)
        if data is not None and gif_frames(data) > 1:
            out.add(
                "img-animated-gif",
                "Animated GIF",
                "warning",
                image.where,
                "animated GIF: Outlook for Windows 2007-2019 shows its first frame only",
                "put the message of the animation in its first frame",
                _outlook("a", "Shows the first frame of an animated GIF only."),
            )


def _text_part(words: int, text: str | None, out: _Out) -> None:
    if text is None:
        out.add(
            "text-missing",
            "Plain-text part",
            "warning",
            (1, 1),
            "no plain-text alternative: text-only clients show nothing and spam filters"
            " score HTML-only mail higher",
            "send a text/plain part beside the HTML (mailstead template render builds one)",
        )
        return
    if words < 20:
        return
    # Counted as far as it matters: at this many words the text part is long enough.
    enough = math.ceil(TEXT_RATIO * words)
    text_words = len(text.split(maxsplit=enough))  # all of them if fewer, else enough + 1
    if text_words < TEXT_RATIO * words:
        out.add(
            "text-short",
            "Plain-text part",
            "warning",
            (1, 1),
            f"the text part has {text_words} words, the HTML {words}: readers of the"
            " text part miss most of the message, and spam filters notice the mismatch",
            "derive the text part from the HTML, or write it out in full",
        )


def _size(source: str, sent_bytes: int | None, out: _Out) -> None:
    # Gmail clips what it receives: the HTML as sent, CSS inlined, when known.
    size = len(source.encode("utf-8")) if sent_bytes is None else sent_bytes
    if size > GMAIL_CLIP_BYTES:
        sent = "" if sent_bytes is None else " as sent (CSS inlined)"
        out.add(
            "size-gmail-clip",
            "Message size",
            "error",
            (1, 1),
            f"the HTML{sent} is {size / 1024:.0f} KB: Gmail clips it after about 102 KB behind"
            ' "[Message clipped] View entire message" (and the open-tracking pixel with it)',
            "shorten the message, remove comments and whitespace, shorten class names",
            _gmail("Clips HTML after about 102 KB."),
        )


def _style_blocks(doc: Document, out: _Out) -> None:
    for sheet, block in doc.sheets:
        nbytes, where = len(block.text.encode("utf-8")), (block.line, block.column)
        if nbytes > GMAIL_STYLE_BYTES:
            out.add(
                "style-gmail-dropped",
                "<style> block",
                "error",
                where,
                f"a <style> block of {nbytes / 1024:.1f} KB: Gmail drops a block over 16 KB",
                "split it into several <style> blocks of under 16 KB, or inline more of it",
                _gmail("Drops <style> blocks over 16 KB.", "desktop-webmail"),
            )
        if sheet.errors:
            line, column, message = sheet.errors[0]
            out.add(
                "style-gmail-dropped",
                "<style> block",
                "error",
                (line, column),
                f"invalid CSS ({message}): Gmail drops the whole <style> block",
                "fix the syntax error; check braces and semicolons",
                _gmail("Drops a <style> block it cannot parse."),
            )
        if block.in_body:
            out.add(
                "style-gmail-dropped",
                "<style> block",
                "warning",
                where,
                "<style> inside <body>: Gmail and others keep only the <style> in <head>",
                "move the block into <head>",
                _gmail("Ignores <style> in <body>."),
            )
        if sheet.plain_rules:
            line, column = sheet.plain_rules[0]
            out.add(
                "style-not-inlined",
                "CSS not inlined",
                "warning",
                (line, column),
                f"{len(sheet.plain_rules)} rule(s) in <style> outside @media: Gmail with"
                " non-Google accounts and clients that strip <style> will not apply them",
                'inline the CSS into style="" attributes (mailstead template render does),'
                " keeping only @media rules in <style>",
                tuple(
                    _client("gmail", p, "a", "Ignores <style> with non-Google accounts.")
                    for p in ("ios", "android")
                ),
            )


_PIXELS = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(px)?\s*")


def _px(value: str | None) -> float | None:
    if value is None:
        return None
    match = _PIXELS.fullmatch(value)
    return float(match.group(1)) if match else None


def _layout(doc: Document, out: _Out) -> None:
    vml = any(
        re.search(r"<v:(fill|image|rect|roundrect)\b[^>]*(src|fill)", c, re.I)
        for c in doc.comments()
    )
    for el, tag, style in doc.nodes:
        widths = [_px(el.get("width")), _px(style.get("width")), _px(style.get("min-width"))]
        widest = max((w for w in widths if w is not None), default=0.0)
        if widest > MAX_WIDTH_PX and tag in ("table", "td", "th", "div", "img"):
            out.add(
                "layout-width",
                "Layout width",
                "warning",
                out.at(el),
                f"<{tag}> is {widest:g} px wide: more than {MAX_WIDTH_PX} px scrolls sideways"
                " in preview panes and on phones",
                "keep the layout 600-640 px wide, with max-width:100% for phones",
            )
        background = style.get("background-image", "") + " " + style.get("background", "")
        if ("url(" in background or el.get("background")) and not vml:
            out.add(
                "background-vml",
                "Background image",
                "error",
                out.at(el),
                f"background image on <{tag}> without a VML fallback: Outlook for Windows"
                " shows no background image",
                'add VML inside <!--[if gte mso 9]>: <v:rect fill="true" stroke="false"'
                ' style="width:600px"><v:fill type="frame" src="…" color="#…"/>'
                '<v:textbox inset="0,0,0,0">…</v:textbox></v:rect>, and set a'
                " background-color for clients that block images",
                _outlook("n", "Draws background images only through VML."),
            )
        if tag == "table":
            _table(doc, el, style, out)
        elif tag in ("td", "th"):
            if "vertical-align" in style and el.get("valign") is None:
                out.add(
                    "align-valign",
                    "Cell alignment",
                    "warning",
                    out.at(el),
                    "vertical-align in CSS only: Outlook for Windows aligns cells by the"
                    " valign attribute",
                    f'add valign="{style["vertical-align"]}"',
                    _outlook("a", "Honours valign more reliably than vertical-align."),
                )
            if "text-align" in style and el.get("align") is None:
                out.add(
                    "align-align",
                    "Cell alignment",
                    "info",
                    out.at(el),
                    "text-align in CSS only: older Outlook for Windows versions align cells by"
                    " the align attribute",
                    f'add align="{style["text-align"]}"',
                    _outlook("a", "Outlook 2007-2010 need the align attribute."),
                )


def _table(doc: Document, el: Element, style: Mapping[str, str], out: _Out) -> None:
    margin = " ".join(style.get(k, "") for k in ("margin", "margin-left", "margin-right"))
    if "auto" in margin and el.get("align") is None:
        out.add(
            "align-center",
            "Table centring",
            "warning",
            out.at(el),
            "table centred with margin:auto only: Outlook for Windows ignores it",
            'add align="center" to the <table>',
            _outlook("n", 'Ignores margin:auto; centres tables with align="center".'),
        )
    role = str(el.get("role", "")).lower()
    if role != "presentation" and el.find(".//th") is None and el.find("caption") is None:
        out.add(
            "table-role",
            "Layout table",
            "warning",
            out.at(el),
            'layout <table> without role="presentation": screen readers announce its rows'
            " and columns",
            'add role="presentation"',
        )


def _links(links: list[Addressed], out: _Out) -> None:
    for link in links:
        if link.tag not in ("a", "area"):
            continue
        href = link.address.strip()
        if not href or _PLACEHOLDER.match(href):
            continue
        lower = href.lower()
        if lower.startswith(_SAFE_SCHEMES):
            continue  # most links: neither javascript: nor relative
        if _IGNORED_IN_SCHEME.sub("", lower).startswith("javascript:"):
            out.add(
                "link-javascript",
                "javascript: link",
                "error",
                link.where,
                "javascript: link: every mail client refuses to run it, and spam filters flag it",
                "link to a web page instead",
            )
        elif not _SCHEME.match(lower):
            out.add(
                "link-relative",
                "Relative link",
                "error",
                link.where,
                f'relative link "{href[:60]}": in a mail there is no page to resolve it against',
                "write the full URL, https://…",
            )


def _fonts(doc: Document, out: _Out) -> None:
    def families(value: str) -> list[str]:
        return [f.strip().strip("'\"").lower() for f in value.split(",") if f.strip()]

    declared: list[tuple[str, tuple[int, int]]] = []
    for el, tag, style in doc.nodes:
        value = style.get("font-family")
        if value:
            declared.append((value, out.at(el)))
        if tag == "font" and el.get("face"):
            declared.append((str(el.get("face")), out.at(el)))
    for sheet, _ in doc.sheets:
        for name, value, line, column in sheet.declarations:
            if name == "font-family":
                declared.append((value, (line, column)))
    for value, where in declared:
        names = families(value)
        if not names or "inherit" in names:
            continue
        if names[-1] in _GENERIC_FONTS or any(n in _WEB_SAFE_FONTS for n in names):
            continue
        out.add(
            "font-fallback",
            "Font fallback",
            "warning",
            where,
            f"font-family: {value} has no web-safe fallback: clients without the font use"
            " their default, Outlook for Windows Times New Roman",
            f"end the list with web-safe fonts: font-family: {value}, Arial, Helvetica, sans-serif",
            _outlook("a", "Falls back to Times New Roman when no listed font is installed."),
        )


def _safety(doc: Document, out: _Out) -> None:
    for el, tag, _ in doc.nodes:
        if tag == "script":
            out.add(
                "unsafe-script",
                "<script>",
                "error",
                out.at(el),
                "<script>: every mail client strips it, and spam filters score it",
                "remove it; mail cannot run scripts",
            )
        elif tag in ("embed", "applet", "iframe"):
            out.add(
                "unsafe-embed",
                f"<{tag}>",
                "error",
                out.at(el),
                f"<{tag}>: mail clients strip embedded content (Flash and plug-ins are gone)",
                "link to the content on the web, with a still image",
            )
        handlers = [name for name in el.attrib if str(name).lower().startswith("on")]
        if handlers:
            out.add(
                "unsafe-event-handler",
                "Event handler attribute",
                "error",
                out.at(el),
                f"{handlers[0]}= on <{tag}>: mail clients strip event handlers and spam"
                " filters score them",
                f"remove the {', '.join(map(str, handlers))} attribute(s)",
            )


def _lang(doc: Document, out: _Out) -> None:
    if not str(doc.root.get("lang", "")).strip():
        out.add(
            "html-lang-missing",
            "Document language",
            "warning",
            doc.where(doc.root),
            "<html> has no lang attribute: screen readers guess the language and read it"
            " with the wrong voice",
            'add lang="en" (or the message\'s language) to <html>',
        )


# The checks whose findings the values a message's data put into its text and
# addresses can change (lint.batch runs them for every message: message_checks).
MESSAGE_CHECK_NAMES = frozenset(
    {
        "text-missing",
        "text-short",
        "size-gmail-clip",
        "link-javascript",
        "link-relative",
        "img-animated-gif",
    }
)


def message_checks(
    source: str,
    base_dir: Path | None,
    words: int,
    links_and_images: list[Addressed],
    text: str | None,
    snippet: Callable[[int, int], str],
    sent_bytes: int | None = None,
) -> Iterator[Finding]:
    """The findings of the checks in MESSAGE_CHECK_NAMES, from what they read.

    ``sent_bytes``: the size of the HTML as sent (after CSS inlining), if known.
    """
    out = _Out(snippet)
    _message(source, base_dir, words, links_and_images, text, sent_bytes, out)
    yield from out.summaries()


def _message(
    source: str,
    base_dir: Path | None,
    words: int,
    links_and_images: list[Addressed],
    text: str | None,
    sent_bytes: int | None,
    out: _Out,
) -> None:
    _text_part(words, text, out)
    _size(source, sent_bytes, out)
    _links(links_and_images, out)
    _gifs(links_and_images, base_dir, out)


def check_all(doc: Document, text: str | None, sent_bytes: int | None = None) -> Iterator[Finding]:
    out = _Out(doc.snippet, doc.where)
    _message(doc.source, doc.base_dir, html_words(doc), addressed(doc), text, sent_bytes, out)
    _images(doc, out)
    _style_blocks(doc, out)
    _layout(doc, out)
    _fonts(doc, out)
    _safety(doc, out)
    _lang(doc, out)
    yield from out.summaries()
