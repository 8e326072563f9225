"""FETCH: the data items a client asks for, and the untagged response for one message.

``parse_fetch`` turns the argument after the sequence set into a
``FetchRequest`` once per command: every item's kind, section and response
label are worked out there, so ``render_fetch`` (called once per message,
perhaps 100,000 times) only formats numbers and copies bytes, and never
loads the message for UID/FLAGS/INTERNALDATE/RFC822.SIZE.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Protocol

from mailstead.proto.errors import RemoteProtocolError
from mailstead.proto.imap.encode import astring
from mailstead.proto.imap.message import (
    HEADER,
    HEADER_FIELDS,
    HEADER_FIELDS_NOT,
    MIME,
    TEXT,
    ParsedMessage,
    Section,
    UnknownCTE,
)
from mailstead.proto.imap.objectid import OBJECT_ITEMS, PREVIEW, fetch_value, preview_modifiers
from mailstead.proto.imap.tokens import Atom, ParenList, Token

__all__ = [
    "FetchItem",
    "FetchRequest",
    "FetchSource",
    "FetchSyntaxError",
    "Section",
    "UnknownCTE",
    "internaldate",
    "parse_fetch",
    "render_fetch",
]

MAX_SECTION_DEPTH = 32  # part numbers in one section spec
MAX_HEADER_NAMES = 256  # names in one HEADER.FIELDS list
MAX_HEADER_NAME = 256  # octets in one header field name
MAX_ITEMS = 64  # data items in one FETCH
_NUMBER_MAX = 2**32 - 1  # RFC 9051 §9 number / nz-number
_NUMBER64_MAX = 2**63 - 1  # RFC 9051 §9 number64 / nz-number64

# Item kinds.
UID = "UID"
FLAGS = "FLAGS"
INTERNALDATE = "INTERNALDATE"
RFC822_SIZE = "RFC822.SIZE"
ENVELOPE = "ENVELOPE"
BODYSTRUCTURE = "BODYSTRUCTURE"
BODY = "BODY"  # the non-extensible BODYSTRUCTURE
BODY_SECTION = "BODY[]"
BINARY = "BINARY[]"
BINARY_SIZE = "BINARY.SIZE[]"
RFC822 = "RFC822"
RFC822_HEADER = "RFC822.HEADER"
RFC822_TEXT = "RFC822.TEXT"
MODSEQ = "MODSEQ"  # RFC 7162 §3.1.4.1

CACHEABLE = frozenset((ENVELOPE, BODYSTRUCTURE, BODY))
_NO_MESSAGE = frozenset((UID, FLAGS, INTERNALDATE, RFC822_SIZE, MODSEQ))
_MONTHS = (b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun",
           b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec")  # fmt: skip
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ZONES: dict[int, timezone] = {0: UTC}


class FetchSyntaxError(RemoteProtocolError):
    """The FETCH items do not follow RFC 9051 §9 ``fetch-att``; the server answers BAD."""


@dataclass(frozen=True, slots=True)
class FetchItem:
    """One FETCH data item, with the label its response value follows.

    ``kind`` is one of the module's item-kind constants; ``label`` is the
    response item name and a space, e.g. ``b"BODY[HEADER]<0> "``.
    """

    kind: str
    label: bytes
    section: Section | None = None
    partial: tuple[int, int] | None = None
    peek: bool = False

    @property
    def name(self) -> str:
        """The item as it appears in the response, e.g. ``BODY[1.MIME]``."""
        return self.label[:-1].decode("utf-8", "surrogateescape")


@dataclass(frozen=True, slots=True)
class FetchRequest:
    """What one FETCH command asks for, and what serving it involves.

    ``needs_message``: some item may need the message bytes (they need not be
    loaded at all otherwise); ``needs_content``: some item needs them even
    when every ``cacheable`` item (ENVELOPE, BODYSTRUCTURE, BODY) is cached;
    ``sets_seen``: the fetch sets \\Seen (RFC 9051 §6.4.5).
    """

    items: tuple[FetchItem, ...]
    needs_message: bool
    needs_content: bool
    sets_seen: bool
    wants_uid: bool
    wants_flags: bool
    cacheable: tuple[str, ...]

    @classmethod
    def of(cls, items: Sequence[FetchItem]) -> FetchRequest:
        """The request for ``items``; repeats of one response item are dropped."""
        unique: dict[bytes, FetchItem] = {}
        for item in items:
            unique.setdefault(item.label, item)
        kinds = [item.kind for item in unique.values()]
        cacheable = tuple(k for k in kinds if k in CACHEABLE)
        return cls(
            items=tuple(unique.values()),
            needs_message=any(k not in _NO_MESSAGE for k in kinds),
            needs_content=any(k not in _NO_MESSAGE and k not in CACHEABLE for k in kinds),
            # RFC 9051 §6.4.5: BODY[] and BINARY[] without .PEEK, RFC822 and
            # RFC822.TEXT set \Seen; RFC822.HEADER and BINARY.SIZE do not.
            sets_seen=any(
                (i.kind in (BODY_SECTION, BINARY) and not i.peek) or i.kind in (RFC822, RFC822_TEXT)
                for i in items  # BODY.PEEK[] then BODY[]: one response, \Seen set
            ),
            wants_uid=UID in kinds,
            wants_flags=FLAGS in kinds,
            cacheable=cacheable,
        )


class FetchSource(Protocol):
    """The message a FETCH response is rendered from (the store implements it).

    Plain attributes satisfy the read-only properties. ``message`` is called
    at most once per response and only when an item needs the content;
    ``cached``/``remember`` keep ENVELOPE, BODYSTRUCTURE and BODY renderings.
    """

    @property
    def uid(self) -> int: ...

    @property
    def flags(self) -> Sequence[str]: ...  # e.g. ("\\Seen", "$Forwarded")

    @property
    def internaldate(self) -> float: ...  # POSIX seconds

    @property
    def internaldate_offset(self) -> int: ...  # minutes east of UTC shown in INTERNALDATE

    @property
    def size(self) -> int: ...  # RFC822.SIZE: octets with CRLF line endings

    @property
    def modseq(self) -> int: ...  # RFC 7162 MODSEQ

    def message(self) -> ParsedMessage: ...

    def cached(self, item: str) -> bytes | None: ...

    def remember(self, item: str, value: bytes) -> None: ...


# --- parsing ------------------------------------------------------------------


def _simple(kind: str) -> FetchItem:
    return FetchItem(kind, kind.encode() + b" ")


_SIMPLE = {
    k: _simple(k)
    for k in (
        UID,
        FLAGS,
        INTERNALDATE,
        RFC822_SIZE,
        ENVELOPE,
        BODYSTRUCTURE,
        BODY,
        RFC822,
        RFC822_HEADER,
        RFC822_TEXT,
        MODSEQ,
    )
}
_SIMPLE.update((kind, _simple(kind)) for kind in OBJECT_ITEMS)  # RFC 8474 §5, RFC 8970
# RFC 9051 §6.4.5 macros, valid only on their own.
_MACROS = {
    "ALL": (FLAGS, INTERNALDATE, RFC822_SIZE, ENVELOPE),
    "FAST": (FLAGS, INTERNALDATE, RFC822_SIZE),
    "FULL": (FLAGS, INTERNALDATE, RFC822_SIZE, ENVELOPE, BODY),
}
_SECTIONED = ("BODY.PEEK", "BODY", "BINARY.PEEK", "BINARY.SIZE", "BINARY")
_NAME_STOP = frozenset('(){ %*"\\]') | frozenset(chr(c) for c in range(0x20)) | {"\x7f"}


def _error(text: str) -> FetchSyntaxError:
    return FetchSyntaxError(text)


def _number(text: str, pos: int, limit: int, nonzero: bool) -> tuple[int, int]:
    """A decimal number at ``pos`` (RFC 9051 §9 number / nz-number); (value, end)."""
    end = pos
    while end < len(text) and "0" <= text[end] <= "9":
        end += 1
    digits = text[pos:end]
    if not digits or len(digits) > 19:
        raise _error("number expected")
    if nonzero and digits[0] == "0":
        raise _error("number must be nonzero")
    value = int(digits)
    if value > limit:
        raise _error("number too large")
    return value, end


def _header_list(text: str, pos: int) -> tuple[tuple[bytes, ...], int]:
    """RFC 9051 §9 header-list: "(" header-fld-name *(SP header-fld-name) ")"."""
    if not text.startswith("(", pos):
        raise _error("header list expected")
    pos += 1
    names: list[bytes] = []
    while True:
        while text.startswith(" ", pos):
            pos += 1
        if text.startswith(")", pos):
            break
        if pos >= len(text):
            raise _error("unterminated header list")
        if text[pos] == '"':
            chars: list[str] = []
            pos += 1
            while pos < len(text) and text[pos] != '"':
                if text[pos] == "\\" and pos + 1 < len(text):
                    pos += 1
                chars.append(text[pos])
                pos += 1
            if pos >= len(text):
                raise _error("unterminated quoted string")
            pos += 1
            name = "".join(chars)
        else:
            start = pos
            while pos < len(text) and text[pos] not in _NAME_STOP:
                pos += 1
            name = text[start:pos]
        if not name or len(name) > MAX_HEADER_NAME:
            raise _error("bad header field name")
        names.append(name.encode("utf-8", "surrogateescape"))
        if len(names) > MAX_HEADER_NAMES:
            raise _error("too many header field names")
    if not names:
        raise _error("empty header list")
    return tuple(names), pos + 1


def _section(text: str, pos: int, binary: bool) -> tuple[Section, bytes, int]:
    """RFC 9051 §9 section (or section-binary) at ``text[pos] == "["``.

    Returns the section, its canonical spelling for the response, and the
    position after ``]``.
    """
    pos += 1
    n = len(text)
    part: list[int] = []
    need_keyword = False
    if pos < n and "0" <= text[pos] <= "9":
        while True:
            number, pos = _number(text, pos, _NUMBER_MAX, nonzero=True)
            part.append(number)
            if len(part) > MAX_SECTION_DEPTH:
                raise _error("section nested too deeply")
            if not text.startswith(".", pos):
                break
            pos += 1
            if not (pos < n and "0" <= text[pos] <= "9"):
                need_keyword = True  # "1.MIME", "2.HEADER", ...
                break
    keyword = ""
    if need_keyword or (not part and not text.startswith("]", pos)):
        if binary:  # section-binary = "[" [section-part] "]"
            raise _error("bad binary section")
        end = pos
        while end < n and text[end] not in " ]":
            end += 1
        keyword = text[pos:end].upper()
        pos = end
        if keyword not in (HEADER, HEADER_FIELDS, HEADER_FIELDS_NOT, TEXT, MIME):
            raise _error("bad section")
        if keyword == MIME and not part:
            raise _error("MIME needs a part number")  # RFC 9051 §9 section-text
    fields: tuple[bytes, ...] = ()
    if keyword in (HEADER_FIELDS, HEADER_FIELDS_NOT):
        if not text.startswith(" ", pos):
            raise _error("header list expected")
        fields, pos = _header_list(text, pos + 1)
    if not text.startswith("]", pos):
        raise _error("bad section")
    spec = ".".join(str(number) for number in part)
    if keyword:
        spec = f"{spec}.{keyword}" if spec else keyword
    label = spec.encode()
    if fields:
        label += b" (" + b" ".join(astring(f) for f in fields) + b")"
    return Section(tuple(part), keyword, fields), label, pos + 1


def _item(text: str) -> FetchItem:
    """One fetch-att (RFC 9051 §9)."""
    upper = text.upper()
    simple = _SIMPLE.get(upper)
    if simple is not None:
        return simple
    bracket = text.find("[")
    name = upper[:bracket] if bracket > 0 else ""
    if name not in _SECTIONED:
        raise _error("unknown fetch item")
    is_binary = name.startswith("BINARY")
    section, spec, pos = _section(text, bracket, is_binary)
    partial: tuple[int, int] | None = None
    if pos < len(text):
        if name == "BINARY.SIZE" or text[pos] != "<":
            raise _error("junk after section")
        # RFC 9051 §9 partial = "<" number64 "." nz-number64 ">"
        origin, pos = _number(text, pos + 1, _NUMBER64_MAX, nonzero=False)
        if not text.startswith(".", pos):
            raise _error("bad partial")
        octets, pos = _number(text, pos + 1, _NUMBER64_MAX, nonzero=True)
        if text[pos:] != ">":
            raise _error("bad partial")
        partial = (origin, octets)
    kind = {"BINARY.SIZE": BINARY_SIZE}.get(name, BINARY if is_binary else BODY_SECTION)
    response = b"BINARY.SIZE" if kind == BINARY_SIZE else b"BINARY" if is_binary else b"BODY"
    label = response + b"[" + spec + b"]"
    # A partial answer names its origin: BODY[1]<0> (RFC 9051 §7.5.2) and
    # BINARY[1]<0> (RFC 3516 §4.2, RFC 9051 §7.5.2, as Dovecot and strict
    # clients read them; reported erratum 7246 would drop it, docs/quirks.md).
    if partial is not None:
        label += b"<%d>" % partial[0]
    return FetchItem(kind, label + b" ", section, partial, name.endswith(".PEEK"))


def _split_items(text: str) -> list[str]:
    """Split a textual item list on spaces outside ``[...]`` and quotes."""
    items: list[str] = []
    depth = 0
    quoted = False
    start = 0
    for i, c in enumerate(text):
        if quoted:
            if c == '"' and text[i - 1] != "\\":
                quoted = False
        elif c == '"':
            quoted = True
        elif c == "[":
            depth += 1
        elif c == "]":
            depth -= 1
        elif c == " " and depth == 0:
            if i > start:
                items.append(text[start:i])
            start = i + 1
    if depth or quoted:
        raise _error("unbalanced brackets")
    if start < len(text):
        items.append(text[start:])
    return items


def parse_fetch(args: tuple[Token, ...]) -> FetchRequest:
    """The FETCH argument after the sequence set: a macro, one item, or a list."""
    if len(args) != 1:
        raise _error("FETCH takes one item or one list of items")
    arg = args[0]
    texts: list[str]
    if isinstance(arg, Atom):
        value = arg.value
        macro = _MACROS.get(value.upper())
        if macro is not None:
            return FetchRequest.of([_SIMPLE[k] for k in macro])
        if value.startswith("("):  # a list the tokenizer left as text
            if not value.endswith(")"):
                raise _error("unbalanced parentheses")
            texts = _split_items(value[1:-1])
        else:
            texts = [value]
    elif isinstance(arg, ParenList):
        texts = []
        for tok in arg.items:
            if isinstance(tok, ParenList) and texts and texts[-1].upper() == PREVIEW:
                if not preview_modifiers(tok.items):  # RFC 8970 §3.1 "(LAZY)"
                    raise _error("unknown PREVIEW modifier")
                continue
            if not isinstance(tok, Atom):
                raise _error("fetch items are atoms")
            texts.append(tok.value)
    else:
        raise _error("fetch items are atoms")
    if not texts:
        raise _error("empty fetch item list")
    if len(texts) > MAX_ITEMS:
        raise _error("too many fetch items")
    return FetchRequest.of([_item(t) for t in texts])


# --- rendering ----------------------------------------------------------------


def internaldate(ts: float, offset_minutes: int = 0) -> bytes:
    """RFC 9051 §9 date-time: ``"17-Jul-1996 02:44:25 -0700"``, English months."""
    offset = max(-1439, min(1439, offset_minutes))
    tz = _ZONES.get(offset)
    if tz is None:
        tz = _ZONES[offset] = timezone(timedelta(minutes=offset))
    try:
        when = datetime.fromtimestamp(ts, tz)
    except (OverflowError, ValueError, OSError):
        when = _EPOCH.astimezone(tz)
    sign = b"-" if offset < 0 else b"+"
    hours, minutes = divmod(abs(offset), 60)
    return b'"%02d-%s-%04d %02d:%02d:%02d %s%02d%02d"' % (
        when.day, _MONTHS[when.month - 1], when.year,
        when.hour, when.minute, when.second, sign, hours, minutes,
    )  # fmt: skip


def _flags(flags: Sequence[str]) -> bytes:
    return b"FLAGS (" + " ".join(flags).encode() + b") "


def _structure(kind: str, source: FetchSource, msg: ParsedMessage, utf8: bool) -> bytes:
    value = source.cached(kind)
    if value is None:
        if kind == ENVELOPE:
            value = msg.envelope(utf8)
        else:
            value = msg.bodystructure(kind == BODYSTRUCTURE, utf8)
        # Only a rendering without 8-bit octets is the same with and without
        # UTF8=ACCEPT, so only that one is worth keeping.
        if value.isascii():
            source.remember(kind, value)
    return value


class _Lazy:
    """Loads the message on first use, once per response."""

    __slots__ = ("msg", "source")

    def __init__(self, source: FetchSource) -> None:
        self.source = source
        self.msg: ParsedMessage | None = None

    def get(self) -> ParsedMessage:
        if self.msg is None:
            self.msg = self.source.message()
        return self.msg


def render_fetch(
    request: FetchRequest,
    source: FetchSource,
    *,
    seq: int,
    include_uid: bool,
    add_flags: bool,
    utf8: bool,
) -> bytes:
    """``* <seq> FETCH (<items>)\\r\\n`` for one message, items in request order.

    ``include_uid``: a UID FETCH, which always reports UID (RFC 9051 §6.4.9);
    ``add_flags``: \\Seen was just set, so FLAGS is reported even unasked.
    Raises UnknownCTE when a BINARY item meets an encoding it cannot undo.
    """
    # One list of chunks, joined once: a large body is copied only there.
    out: list[bytes] = [b"* %d FETCH (" % seq]
    if include_uid and not request.wants_uid:
        out.append(b"UID %d " % source.uid)
    lazy: _Lazy | None = None
    for item in request.items:
        kind = item.kind
        if kind == UID:
            out.append(b"UID %d " % source.uid)
        elif kind == FLAGS:
            out.append(_flags(source.flags))
        elif kind == RFC822_SIZE:
            out.append(b"RFC822.SIZE %d " % source.size)
        elif kind == MODSEQ:
            out.append(b"MODSEQ (%d) " % source.modseq)
        elif kind == INTERNALDATE:
            out.append(
                b"INTERNALDATE "
                + internaldate(source.internaldate, source.internaldate_offset)
                + b" "
            )
        else:
            if lazy is None:
                lazy = _Lazy(source)
            out.append(item.label)
            _value(item, source, lazy, utf8, out)
            out.append(b" ")
    if add_flags and not request.wants_flags:
        out.append(_flags(source.flags))
    last = out[-1]
    if len(out) == 1:
        out.append(b")\r\n")
    elif last == b" ":
        out[-1] = b")\r\n"
    else:
        out[-1] = last[:-1] + b")\r\n"
    return b"".join(out)


def _value(item: FetchItem, source: FetchSource, lazy: _Lazy, utf8: bool, out: list[bytes]) -> None:
    """Append the value of ``item`` to ``out`` (a literal as two chunks)."""
    kind = item.kind
    if kind in OBJECT_ITEMS:
        out.append(fetch_value(kind, source.cached, source.remember, lazy.get, utf8))
        return
    if kind in CACHEABLE:
        cached = source.cached(kind)
        out.append(cached if cached is not None else _structure(kind, source, lazy.get(), utf8))
        return
    msg = lazy.get()
    data: bytes | None
    if kind == BODY_SECTION:
        assert item.section is not None
        data = msg.section(item.section)
    elif kind in (BINARY, BINARY_SIZE):
        assert item.section is not None
        data = msg.binary(item.section.part)  # RFC 3516 §4.2
        if kind == BINARY_SIZE:
            out.append(b"%d" % (0 if data is None else len(data)))
            return
    elif kind == RFC822:
        data = msg.data
    elif kind == RFC822_HEADER:
        data = msg.header_bytes()
    else:
        assert kind == RFC822_TEXT
        data = msg.text_bytes()
    if data is None:
        out.append(b'""')  # RFC 9051 §6.4.5: a missing section is an empty string
        return
    if item.partial is not None:
        origin, octets = item.partial
        data = data[origin : origin + octets]
    if kind == BINARY and b"\0" in data:
        out.append(b"~{%d}\r\n" % len(data))  # RFC 3516 §4.3 literal8
        out.append(data)
        return
    if b"\0" in data:
        # RFC 9051 §9: a literal is *CHAR8, which has no NUL; only literal8
        # (BINARY) may carry one. 0x80 in its place, as Dovecot does.
        data = data.replace(b"\0", b"\x80")
    if len(data) > 1000 or b"\n" in data or b"\r" in data or not data.isascii():
        # RFC 9051 §4.3: CR, LF, NUL and 8-bit octets need a literal.
        out.append(b"{%d}\r\n" % len(data))
        out.append(data)
    else:
        out.append(b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"')
