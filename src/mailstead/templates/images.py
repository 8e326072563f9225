"""Local images a template refers to, carried in the message as ``cid:`` parts.

An ``<img src="logo.png">`` with a relative address is read from the
template's folder (never outside it: ``..``, absolute paths and symbolic
links leading out are refused), attached in a ``multipart/related`` part
(RFC 2387) and referred to as ``cid:…`` (RFC 2392). Remote (``https:``),
``data:`` and ``cid:`` addresses are left as written.
"""

from __future__ import annotations

import hashlib
import html
import mimetypes
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

from mailstead.message.compose import Related
from mailstead.templates.errors import TemplateError

__all__ = ["embed_images", "last_local_src"]

_SRC = re.compile(r"""(\ssrc\s*=\s*)("[^"]*"|'[^']*'|[^\s"'>]+)""", re.I)
_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*:", re.I)
# After "src" where _SRC could match: the "=" and the start of a value that
# is surely remote, a fragment or empty once embed_images has stripped the
# quotes and spaces around it. A character reference or a path may be local.
_EQUALS = re.compile(r"\s*=\s*")
_NOT_LOCAL = re.compile(r"""["']*[ \t\n\r\f\v]*(?://|#|[a-z][a-z0-9+.-]*:)""", re.I)
# What "src" matches in _SRC (case-insensitive: "ſ" is an "s" too), lower-cased.
_SRC_NAMES = ("src", "\u017frc")


class _ImageFinder(HTMLParser):
    """Collects where each ``<img>`` start tag is in the markup (line, column, text)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[int, int, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        text = self.get_starttag_text()
        if tag == "img" and text is not None:
            line, column = self.getpos()
            self.found.append((line, column, text))

    handle_startendtag = handle_starttag


def embed_images(markup: str, template: Path, limit: int) -> tuple[str, tuple[Related, ...]]:
    """``markup`` with local image addresses turned into ``cid:`` URLs, and the parts."""
    last = last_local_src(markup)
    if last < 0:
        return markup, ()  # the parse below would find nothing to embed
    finder = _ImageFinder()
    _parse_past(finder, markup, last)
    if not finder.found:
        return markup, ()
    # HTMLParser counts lines at "\n" only
    starts = [0, *(newline.end() for newline in re.finditer("\n", markup))]
    root = template.parent.resolve()
    by_path: dict[Path, Related] = {}
    parts: dict[str, Related] = {}  # by Content-ID: the same image once
    total = 0
    pieces: list[str] = []
    done = 0
    for line, column, tag in finder.found:
        offset = starts[line - 1] + column
        src = _SRC.search(tag)
        if src is None:
            continue
        address = html.unescape(src.group(2).strip("\"'")).strip()
        if not address or address.startswith(("//", "#")) or _SCHEME.match(address):
            continue
        path = _resolve(root, address, template)
        part = by_path.get(path)
        if part is None:
            part = by_path[path] = _read(path, address, template, limit - total)
            if part.content_id not in parts:
                total += len(part.content)
                parts[part.content_id] = part
        value_at = offset + src.start(2)
        pieces += [markup[done:value_at], f'"cid:{part.content_id}"']
        done = value_at + len(src.group(2))
    pieces.append(markup[done:])
    return "".join(pieces), tuple(parts.values())


def last_local_src(markup: str) -> int:
    """Where the last ``src`` that may be a local address is in ``markup``, or -1: a
    quick scan that spares the parse for the usual template, whose images are all
    remote, and ends it early for one whose only local image is its logo."""
    lowered = markup.lower()
    if len(lowered) != len(markup):
        return len(markup)  # some character lower-cased into two: parse it all
    last = -1
    for name in _SRC_NAMES:
        at = lowered.find(name, 1)
        while at != -1:
            equals = _EQUALS.match(markup, at + 3)
            if (
                markup[at - 1].isspace()  # the \s before src in _SRC
                and equals is not None
                and _NOT_LOCAL.match(markup, equals.end()) is None
            ):
                last = max(last, at - 1)
            at = lowered.find(name, at + 1)
    return last


def _parse_past(finder: _ImageFinder, markup: str, last: int) -> None:
    """Feeds ``markup`` to ``finder`` until the markup at ``last`` has been parsed:
    tags after it hold no local address. HTMLParser takes its input in pieces
    and waits for the rest of an unfinished tag or comment, so what it finds
    is what it finds in the whole."""
    fed = min(last, len(markup))
    finder.feed(markup[:fed])
    while fed - len(finder.rawdata) <= last:
        if fed == len(markup):
            finder.close()
            return
        end = markup.find(">", fed)
        piece_end = len(markup) if end < 0 else end + 1
        finder.feed(markup[fed:piece_end])
        fed = piece_end


def _resolve(root: Path, address: str, template: Path) -> Path:
    relative = unquote(address.split("?", 1)[0].split("#", 1)[0])
    path = (root / relative).resolve()
    if relative.startswith("/") or not path.is_relative_to(root):
        raise TemplateError(f"{template}: image {address!r} is outside the template's folder")
    return path


def _read(path: Path, address: str, template: Path, room: int) -> Related:
    kind, _ = mimetypes.guess_type(path.name)
    if kind is None or not kind.startswith("image/"):
        raise TemplateError(f"{template}: {address!r} is not an image file")
    try:
        with path.open("rb") as f:
            content = f.read(room + 1)
    except OSError as exc:
        raise TemplateError(f"{template}: image {address!r}: {exc.strerror or exc}") from None
    if len(content) > room:
        raise TemplateError(f"{template}: the images together are too large ({address!r})")
    maintype, subtype = kind.split("/", 1)
    # RFC 2392: a Content-ID is an addr-spec; the digest makes it the same
    # for the same image, and unique between images.
    content_id = hashlib.sha256(content).hexdigest()[:20] + "@mailstead.invalid"
    return Related(content_id, content, maintype, subtype, path.name)
