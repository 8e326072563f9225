"""The checks the support table has no row for: images, size, links, layout, fonts, safety."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

from mailstead.templates.lint.data import ClientIssue
from mailstead.templates.lint.document import Document, Element
from mailstead.templates.lint.report import Finding

__all__ = ["GMAIL_CLIP_BYTES", "check_all", "gif_frames"]

GMAIL_CLIP_BYTES = 102 * 1024  # Gmail shows "[Message clipped]" past about this much HTML
GMAIL_STYLE_BYTES = 16 * 1024  # Gmail drops a <style> block larger than this
MAX_WIDTH_PX = 640  # wider than a preview pane or a phone held upright
TEXT_RATIO = 0.3  # a text part under this share of the HTML's words is "much shorter"
MAX_REPORTED = 20  # per check; the rest are counted in the last finding
GIF_READ_LIMIT = 10 * 1024 * 1024

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

    def __init__(self, doc: Document) -> None:
        self.doc = doc
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
                    self.doc.snippet(line, column),
                    message,
                    clients,
                    fix,
                )
            )

    def at(self, el: Element) -> tuple[int, int]:
        return self.doc.where(el)


def gif_frames(data: bytes) -> int:
    """How many images a GIF holds (GIF89a spec §§17-27: blocks up to the trailer)."""
    if data[:6] not in (b"GIF87a", b"GIF89a") or len(data) < 13:
        return 0
    pos = 13
    if data[10] & 0x80:  # global colour table
        pos += 3 * (2 << (data[10] & 0x07))
    frames = 0

    def skip_sub_blocks(at: int) -> int:
        while at < len(data) and data[at] != 0:
            at += data[at] + 1
        return at + 1

    while pos < len(data):
        block = data[pos]
        if block == 0x3B:  # trailer
            break
        if block == 0x21:  # extension: label, then data sub-blocks
            pos = skip_sub_blocks(pos + 2)
        elif block == 0x2C:  # image descriptor
            frames += 1
            if frames > 1:
                return frames
            flags = data[pos + 9] if pos + 9 < len(data) else 0
            pos += 10
            if flags & 0x80:
                pos += 3 * (2 << (flags & 0x07))
            pos = skip_sub_blocks(pos + 1)  # LZW minimum code size, then the data
        else:
            break
    return frames


def _gif_bytes(doc: Document, src: str) -> bytes | None:
    if src.lower().startswith("data:image/gif;base64,"):
        try:
            return base64.b64decode(src.split(",", 1)[1][: GIF_READ_LIMIT * 2], validate=False)
        except ValueError:
            return None
    if not re.search(r"\.gif(?:[?#].*)?$", src, re.IGNORECASE):
        return None
    path: Path | None = doc.local_file(src.split("?")[0].split("#")[0])
    if path is None:
        return None
    try:
        with path.open("rb") as f:
            return f.read(GIF_READ_LIMIT)
    except OSError:
        return None


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
        data = _gif_bytes(doc, str(el.get("src", "")))
        if data is not None and gif_frames(data) > 1:
            out.add(
                "img-animated-gif",
                "Animated GIF",
                "warning",
                where,
                "animated GIF: Outlook for Windows 2007-2019 shows its first frame only",
                "put the message of the animation in its first frame",
                _outlook("a", "Shows the first frame of an animated GIF only."),
            )


def _text_part(doc: Document, text: str | None, out: _Out) -> None:
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
    body = doc.root.find("body")
    html_words = len((body if body is not None else doc.root).text_content().split())
    text_words = len(text.split())
    if html_words >= 20 and text_words < TEXT_RATIO * html_words:
        out.add(
            "text-short",
            "Plain-text part",
            "warning",
            (1, 1),
            f"the text part has {text_words} words, the HTML {html_words}: readers of the"
            " text part miss most of the message, and spam filters notice the mismatch",
            "derive the text part from the HTML, or write it out in full",
        )


def _size(doc: Document, out: _Out) -> None:
    size = len(doc.source.encode("utf-8"))
    if size > GMAIL_CLIP_BYTES:
        out.add(
            "size-gmail-clip",
            "Message size",
            "error",
            (1, 1),
            f"the HTML is {size / 1024:.0f} KB: Gmail clips it after about 102 KB behind"
            ' "[Message clipped] View entire message" (and the open-tracking pixel with it)',
            "shorten the message, remove comments and whitespace, shorten class names",
            _gmail("Clips HTML after about 102 KB."),
        )
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


def _links(doc: Document, out: _Out) -> None:
    for el, tag, _ in doc.nodes:
        if tag not in ("a", "area"):
            continue
        href = str(el.get("href", "")).strip()
        if not href or _PLACEHOLDER.match(href):
            continue
        lower = href.lower()
        if re.sub(r"[\s\x00-\x1f]", "", lower).startswith("javascript:"):
            out.add(
                "link-javascript",
                "javascript: link",
                "error",
                out.at(el),
                "javascript: link: every mail client refuses to run it, and spam filters flag it",
                "link to a web page instead",
            )
        elif not lower.startswith(_SAFE_SCHEMES) and not re.match(r"^[a-z][a-z0-9+.-]*:", lower):
            out.add(
                "link-relative",
                "Relative link",
                "error",
                out.at(el),
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


def check_all(doc: Document, text: str | None) -> Iterator[Finding]:
    out = _Out(doc)
    _images(doc, out)
    _text_part(doc, text, out)
    _size(doc, out)
    _layout(doc, out)
    _links(doc, out)
    _fonts(doc, out)
    _safety(doc, out)
    _lang(doc, out)
    for check, seen in out.count.items():
        if seen > MAX_REPORTED:
            out.items.append(
                Finding(
                    check,
                    "More findings",
                    "info",
                    1,
                    1,
                    "",
                    f"{seen - MAX_REPORTED} more {check} finding(s) not listed",
                )
            )
    yield from out.items
