"""RFC 8970 PREVIEW: the first words of a message's text, for a message list.

The text is the first text/plain part that is not an attachment (else the
first text/html one, its markup dropped), transfer encoding and charset
undone, quoted lines (``>``) left out, white space collapsed, and cut to
:data:`PREVIEW_CHARS` characters at a word break (§3.1 allows at most 256).
A message without such a part has the empty preview (§3.1: the empty string,
not NIL). Computed once per message and kept in the index's cache.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

from mailstead.proto.imap.message import MimePart, ParsedMessage, UnknownCTE
from mailstead.proto.imap.mime_words import decode_text
from mailstead.proto.imap.mimeheader import parse_disposition

__all__ = ["PREVIEW_CHARS", "preview", "text_of_html"]

PREVIEW_CHARS = 200
_READ = 64 * 1024  # decoded octets of the part looked at: the start is enough
_WHITE = re.compile(r"\s+")
_QUOTED = re.compile(r"^[ \t]*>.*$", re.MULTILINE)


class _Text(HTMLParser):
    """Collects the text of an HTML document, without scripts and styles."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style", "head", "title"):
            self._skip += 1
        elif tag in ("br", "p", "div", "tr", "li"):
            self.out.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "head", "title") and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.out.append(data)


def text_of_html(html: str) -> str:
    """The readable text of an HTML fragment (tags gone, entities decoded)."""
    parser = _Text()
    parser.feed(html)
    parser.close()
    return " ".join(parser.out)


def _is_attachment(part: MimePart) -> bool:
    raw = part.fields().get(b"content-disposition")
    found = parse_disposition(raw) if raw is not None else None
    return found is not None and found[0].lower() == b"attachment"


def _text_parts(msg: ParsedMessage) -> tuple[MimePart | None, MimePart | None]:
    """The first inline text/plain and text/html leaves, in document order."""
    plain = html = None
    stack = [msg.root]
    while stack and plain is None:
        part = stack.pop()
        if part.is_multipart:
            stack.extend(reversed(part.parts()))
            continue
        ctype = part.content_type
        if ctype.type.lower() != b"text" or _is_attachment(part):
            continue  # also message/rfc822: a forwarded message is not this one's text
        subtype = ctype.subtype.lower()
        if subtype == b"plain":
            plain = part
        elif subtype == b"html" and html is None:
            html = part
    return plain, html


def _decoded(part: MimePart) -> str:
    try:
        body = part.decoded()[:_READ]
    except UnknownCTE:
        return ""
    charset = part.content_type.param(b"charset")
    label = charset.decode("ascii", "replace") if charset else None
    return decode_text(body, label, latin1=True)


def preview(msg: ParsedMessage) -> str:
    """The preview text of ``msg`` (possibly empty)."""
    plain, html = _text_parts(msg)
    if plain is not None:
        text = _QUOTED.sub(" ", _decoded(plain))
    elif html is not None:
        text = text_of_html(_decoded(html))
    else:
        return ""
    text = _WHITE.sub(" ", text).strip()
    if len(text) <= PREVIEW_CHARS:
        return text
    cut = text.rfind(" ", 0, PREVIEW_CHARS + 1)
    return text[: cut if cut > PREVIEW_CHARS // 2 else PREVIEW_CHARS].rstrip()
