"""The tokens of the HTML as written, in order, for the structure scanner.

The standard library's ``html.parser`` defines what the scanner sees: its
tokens, positions and attribute values are the reference. It is slow (a
pure-Python loop with a handful of regular expressions per tag), so the
markup templates are made of, well-formed start tags with plain attributes,
end tags, comments, a doctype and text, is read here with one expression per
tag. It yields exactly the events ``HTMLParser`` would; anything else (a
stray ``<``, a marked section, an unterminated tag or comment, unusual
characters in a tag) sends the whole document to ``HTMLParser`` instead.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from html import unescape
from html.parser import HTMLParser
from typing import Protocol, TypeVar

__all__ = ["Attributes", "Sink", "attributes", "tokenize"]

Attributes = list[tuple[str, str | None]]


class Sink(Protocol):
    """What receives the tokens. Positions are 1-based (line, column) of the token's start.

    ``attrs`` is None when the fast reader has not split the attributes
    (:func:`attributes` does, from ``text``, the whole start tag).
    """

    def doctype(self) -> None: ...

    def start(
        self, tag: str, attrs: Attributes | None, text: str, at: tuple[int, int], closed: bool
    ) -> None: ...

    def end(self, tag: str, at: tuple[int, int]) -> None: ...

    def data(self, text: str, at: tuple[int, int]) -> None: ...


S = TypeVar("S", bound=Sink)

# Only ASCII whitespace separates; a name or bare value holds printable ASCII only, so
# where these stop HTMLParser's wider patterns (any \s, any character) stop too.
_WS = r"[ \t\n\r\f]"
_NAME = r"[^\x00-\x20\"'/=<>`\x7f-\U0010ffff]++"
_VALUE = (
    r"(?:\"[^\"]*+\"|'[^']*+'"
    r"|[^\x00-\x20\"'=<>`\x7f-\U0010ffff][^\x00-\x20\"'<>`\x7f-\U0010ffff]*+)"
)
_ATTRIBUTE = re.compile(rf"{_WS}++({_NAME})(?:{_WS}*+={_WS}*+({_VALUE}))?+")
_START = re.compile(
    rf"<([a-zA-Z][-a-zA-Z0-9:_.]*+)(?:{_WS}++{_NAME}(?:{_WS}*+={_WS}*+{_VALUE})?+)*+{_WS}*+(/?)>"
)
_END = re.compile(r"</\s*([a-zA-Z][-.a-zA-Z0-9:_]*)\s*>")  # html.parser's endtagfind
_COMMENT_CLOSE = re.compile(r"--\s*>")  # _markupbase's, searched from after "<!--"
# Raw text elements end at their end tag only (html.parser's set_cdata_mode).
_RAW_END = {
    "style": re.compile(r"</\s*style\s*>", re.I),
    "script": re.compile(r"</\s*script\s*>", re.I),
}


def attributes(text: str) -> Attributes:
    """The attributes of a start tag the fast reader accepted, as HTMLParser gives them."""
    out: Attributes = []
    for match in _ATTRIBUTE.finditer(text, 1):  # the tag name holds no whitespace
        name, value = match.group(1, 2)
        if value is not None and value[:1] in ("'", '"'):
            value = value[1:-1]
        out.append((name.lower(), unescape(value) if value else value))
    return out


def _fast(source: str, sink: Sink) -> bool:
    """Feed ``sink`` the tokens of ``source``; False as soon as it meets markup it leaves to
    HTMLParser (the sink is then half-fed and is dropped)."""
    line, line_start, last = 1, 0, 0  # position bookkeeping, as HTMLParser.updatepos
    pos, n = 0, len(source)
    while pos < n:
        lt = source.find("<", pos)
        stop = n if lt < 0 else lt
        if stop > pos:
            newlines = source.count("\n", last, pos)
            if newlines:
                line += newlines
                line_start = source.rindex("\n", last, pos) + 1
            last = pos
            sink.data(unescape(source[pos:stop]), (line, pos - line_start + 1))
        if lt < 0:
            break
        newlines = source.count("\n", last, lt)
        if newlines:
            line += newlines
            line_start = source.rindex("\n", last, lt) + 1
        last = lt
        at = (line, lt - line_start + 1)
        nxt = source[lt + 1 : lt + 2]
        if nxt == "/":
            match = _END.match(source, lt)
            if match is None:
                return False
            sink.end(match.group(1).lower(), at)
            pos = match.end()
        elif nxt == "!":
            if source.startswith("<!--", lt):
                close = _COMMENT_CLOSE.search(source, lt + 4)
                if close is None:
                    return False
                pos = close.end()
            elif source[lt : lt + 9].lower() == "<!doctype":
                gt = source.find(">", lt + 9)
                if gt < 0:
                    return False
                sink.doctype()
                pos = gt + 1
            else:
                return False
        else:
            match = _START.match(source, lt)
            if match is None:
                return False
            tag, text, closed = match.group(1).lower(), match.group(0), bool(match.group(2))
            sink.start(tag, None, text, at, closed)
            pos = match.end()
            raw_end = _RAW_END.get(tag)
            if raw_end is not None and not closed:
                found = raw_end.search(source, pos)
                if found is None:
                    return False
                if found.start() > pos:
                    newlines = source.count("\n", last, pos)
                    if newlines:
                        line += newlines
                        line_start = source.rindex("\n", last, pos) + 1
                    last = pos
                    sink.data(source[pos : found.start()], (line, pos - line_start + 1))
                end = found.start()
                newlines = source.count("\n", last, end)
                if newlines:
                    line += newlines
                    line_start = source.rindex("\n", last, end) + 1
                last = end
                sink.end(tag, (line, end - line_start + 1))
                pos = found.end()
    return True


class _Stdlib(HTMLParser):
    """HTMLParser's events, passed on to a sink."""

    def __init__(self, sink: Sink) -> None:
        super().__init__(convert_charrefs=True)
        self.sink = sink

    def _at(self) -> tuple[int, int]:
        line, offset = self.getpos()
        return line, offset + 1

    def handle_decl(self, decl: str) -> None:
        if decl.lower().startswith("doctype"):
            self.sink.doctype()

    def handle_starttag(self, tag: str, attrs: Attributes) -> None:
        self.sink.start(tag, attrs, self.get_starttag_text() or "", self._at(), False)

    def handle_startendtag(self, tag: str, attrs: Attributes) -> None:
        self.sink.start(tag, attrs, self.get_starttag_text() or "", self._at(), True)

    def handle_endtag(self, tag: str) -> None:
        self.sink.end(tag, self._at())

    def handle_data(self, data: str) -> None:
        self.sink.data(data, self._at())


def tokenize(source: str, new_sink: Callable[[], S]) -> S:
    """A sink from ``new_sink`` fed every token of ``source``; ValueError if it has none."""
    sink = new_sink()
    if _fast(source, sink):
        return sink
    sink = new_sink()
    parser = _Stdlib(sink)
    try:
        parser.feed(source)
        parser.close()
    except AssertionError as exc:
        # html.parser asserts on some marked sections (``<![foo]]>``); that is
        # bad input, not a bug of ours: lint reports it as unparsable.
        raise ValueError(f"the HTML cannot be tokenized: {exc}") from None
    return sink
