"""A strict reader of the IMAP response values Mailstead renders (RFC 9051 §4, §9).

The oracle of the IMAP fuzz targets: whatever a message or a command holds,
ENVELOPE, BODYSTRUCTURE and FETCH responses must parse as the RFC grammar
says, or a client reads a different answer than the one meant.
"""

from __future__ import annotations

import re

Value = bytes | int | None | list["Value"]

_NUMBER = re.compile(rb"[0-9]+")
_LITERAL = re.compile(rb"(~?)\{([0-9]+)\}\r\n")
# RFC 9051 §4.3: no CR, LF or NUL; "\" escapes only DQUOTE and "\" (one way to match each octet).
_QUOTED = re.compile(rb'"((?:[^"\\\r\n\x00]|\\["\\])*)"')
_UNESCAPE = re.compile(rb'\\(["\\])')


class ResponseSyntaxError(AssertionError):
    """A rendered response that breaks the RFC 9051 grammar."""


def _fail(data: bytes, pos: int, what: str) -> ResponseSyntaxError:
    return ResponseSyntaxError(f"{what} at {pos}: {data[max(0, pos - 40) : pos + 40]!r}")


def read_string(data: bytes, pos: int, utf8: bool, binary: bool = False) -> tuple[bytes, int]:
    """A quoted string or a literal (``~{n}`` only when ``binary``) starting at ``pos``."""
    if data.startswith(b'"', pos):
        m = _QUOTED.match(data, pos)
        if m is None:
            raise _fail(data, pos, "bad quoted string")
        value = _UNESCAPE.sub(rb"\1", m[1])
        if not value.isascii():
            if not utf8:
                raise _fail(data, pos, "8-bit quoted string without UTF8=ACCEPT")
            try:
                value.decode("utf-8")
            except UnicodeDecodeError:
                raise _fail(data, pos, "invalid UTF-8 in quoted string") from None
        return value, m.end()
    m = _LITERAL.match(data, pos)
    if m is None:
        raise _fail(data, pos, "expected a string")
    if m[1] and not binary:
        raise _fail(data, pos, "literal8 outside BINARY")
    size = int(m[2])
    start = m.end()
    if start + size > len(data):
        raise _fail(data, pos, "literal longer than the response")
    value = data[start : start + size]
    if not m[1] and b"\0" in value:
        raise _fail(data, pos, "NUL in a literal")
    return value, start + size


def read_value(data: bytes, pos: int, utf8: bool, binary: bool = False) -> tuple[Value, int]:
    """NIL, a number, a string or a parenthesized list of values separated by one SP."""
    if data.startswith(b"NIL", pos):
        return None, pos + 3
    if data.startswith(b"(", pos):
        items: list[Value] = []
        pos += 1
        if data.startswith(b")", pos):
            return items, pos + 1
        while True:
            item, pos = read_value(data, pos, utf8)
            items.append(item)
            if data.startswith(b")", pos):
                return items, pos + 1
            if isinstance(item, list) and data.startswith(b"(", pos):
                continue  # 1*address, 1*body: lists follow each other without SP
            if not data.startswith(b" ", pos):
                raise _fail(data, pos, "expected SP or )")
            pos += 1
    m = _NUMBER.match(data, pos)
    if m is not None:
        return int(m[0]), m.end()
    return read_string(data, pos, utf8, binary)


def parse(data: bytes, utf8: bool) -> Value:
    """The one value ``data`` holds; anything left over is an error."""
    value, pos = read_value(data, 0, utf8)
    if pos != len(data):
        raise _fail(data, pos, "junk after the value")
    return value


def _nstring(v: Value, what: str) -> None:
    if v is not None and not isinstance(v, bytes):
        raise ResponseSyntaxError(f"{what}: expected nstring, got {v!r}")


def _string(v: Value, what: str) -> bytes:
    if not isinstance(v, bytes):
        raise ResponseSyntaxError(f"{what}: expected string, got {v!r}")
    return v


def _list(v: Value, what: str) -> list[Value]:
    if not isinstance(v, list):
        raise ResponseSyntaxError(f"{what}: expected list, got {v!r}")
    return v


def _params(v: Value) -> None:
    """body-fld-param: NIL or a non-empty list of string pairs."""
    if v is None:
        return
    items = _list(v, "body-fld-param")
    if not items or len(items) % 2:
        raise ResponseSyntaxError(f"body-fld-param: odd or empty list {v!r}")
    for item in items:
        _string(item, "body-fld-param")


def check_envelope(v: Value) -> None:
    """RFC 9051 §9 envelope: 10 fields, address lists of 4-field addresses."""
    fields = _list(v, "envelope")
    if len(fields) != 10:
        raise ResponseSyntaxError(f"envelope has {len(fields)} fields")
    for i in (0, 1, 8, 9):
        _nstring(fields[i], "envelope field")
    for i in range(2, 8):
        if fields[i] is None:
            continue
        addrs = _list(fields[i], "address list")
        if not addrs:
            raise ResponseSyntaxError("empty address list (must be NIL)")
        for addr in addrs:
            parts = _list(addr, "address")
            if len(parts) != 4:
                raise ResponseSyntaxError(f"address with {len(parts)} fields")
            for part in parts:
                _nstring(part, "address field")


def _extension_tail(items: list[Value]) -> None:
    """body-fld-dsp SP body-fld-lang SP body-fld-loc."""
    if len(items) != 3:
        raise ResponseSyntaxError(f"extension data has {len(items)} fields")
    dsp, lang, loc = items
    if dsp is not None:
        pair = _list(dsp, "body-fld-dsp")
        if len(pair) != 2:
            raise ResponseSyntaxError("body-fld-dsp needs type and params")
        _string(pair[0], "disposition type")
        _params(pair[1])
    if isinstance(lang, list):
        if not lang:
            raise ResponseSyntaxError("empty body-fld-lang list")
        for tag in lang:
            _string(tag, "body-fld-lang")
    else:
        _nstring(lang, "body-fld-lang")
    _nstring(loc, "body-fld-loc")


def check_body(v: Value, extended: bool, depth: int = 0) -> None:
    """RFC 9051 §9 body: BODY (``extended`` False) or BODYSTRUCTURE, recursively."""
    items = _list(v, "body")
    if not items:
        raise ResponseSyntaxError("empty body")
    if isinstance(items[0], list):  # body-type-mpart = 1*body SP media-subtype [SP ext]
        n = 0
        while n < len(items) and isinstance(items[n], list):
            check_body(items[n], extended, depth + 1)
            n += 1
        rest = items[n:]
        if not rest:
            raise ResponseSyntaxError("multipart without subtype")
        _string(rest[0], "multipart subtype")
        if extended:
            if len(rest) != 5:
                raise ResponseSyntaxError(f"body-ext-mpart has {len(rest) - 1} fields")
            _params(rest[1])
            _extension_tail(rest[2:])
        elif len(rest) != 1:
            raise ResponseSyntaxError("BODY multipart with extension data")
        return
    if len(items) < 7:
        raise ResponseSyntaxError(f"body-type-1part has {len(items)} fields")
    kind = _string(items[0], "media type").upper()
    sub = _string(items[1], "media subtype").upper()
    _params(items[2])
    _nstring(items[3], "body-fld-id")
    _nstring(items[4], "body-fld-desc")
    _string(items[5], "body-fld-enc")
    if not isinstance(items[6], int):
        raise ResponseSyntaxError("body-fld-octets is not a number")
    rest = items[7:]
    if kind == b"MESSAGE" and sub in (b"RFC822", b"GLOBAL"):
        # body-type-msg: ... SP envelope SP body SP body-fld-lines
        if len(rest) < 3:
            raise ResponseSyntaxError("message/rfc822 without envelope, body and lines")
        check_envelope(rest[0])
        check_body(rest[1], extended, depth + 1)
        if not isinstance(rest[2], int):
            raise ResponseSyntaxError("body-fld-lines is not a number")
        rest = rest[3:]
    elif kind == b"TEXT":
        if not rest or not isinstance(rest[0], int):
            raise ResponseSyntaxError("text body without body-fld-lines")
        rest = rest[1:]
    if extended:
        if len(rest) != 4:
            raise ResponseSyntaxError(f"body-ext-1part has {len(rest)} fields")
        _nstring(rest[0], "body-fld-md5")
        _extension_tail(rest[1:])
    elif rest:
        raise ResponseSyntaxError(f"BODY with extension data {rest!r}")


def check_fetch_response(data: bytes, utf8: bool) -> None:
    """``* n FETCH (label value ...)`` CRLF; labels as RFC 9051 §9 msg-att writes them."""
    m = re.match(rb"\* [1-9][0-9]* FETCH \(", data)
    if m is None:
        raise _fail(data, 0, "bad FETCH response start")
    pos = m.end()
    while True:
        pos, name = _label(data, pos)
        if name == b"FLAGS":
            flags = _FLAG_LIST.match(data, pos)
            if flags is None:
                raise _fail(data, pos, "bad flag list")
            pos = flags.end()
        else:
            _, pos = read_value(data, pos, utf8, binary=name == b"BINARY")
        if data.startswith(b")\r\n", pos):
            if pos + 3 != len(data):
                raise _fail(data, pos, "junk after FETCH response")
            return
        if not data.startswith(b" ", pos):
            raise _fail(data, pos, "expected SP or ) after a FETCH item")
        pos += 1


_ITEM_NAME = re.compile(rb"[A-Z0-9.]+")
_SECTION_TEXT = re.compile(rb"[A-Z0-9.]*")
_ASTRING_ATOM = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\]+')
# flag-list = "(" [flag *(SP flag)] ")": "\" atom or a keyword atom.
_FLAG = rb'\\?[^\x00-\x20\x7f-\xff(){%*"\\\]]+'
_FLAG_LIST = re.compile(rb"\((?:" + _FLAG + rb"(?: " + _FLAG + rb")*)?\)")


def _label(data: bytes, pos: int) -> tuple[int, bytes]:
    """Skip ``NAME``, ``BODY[section]<n>``, ``BINARY[1.2]`` and the SP after it."""
    m = _ITEM_NAME.match(data, pos)
    if m is None:
        raise _fail(data, pos, "expected a FETCH item name")
    name = m[0]
    pos = m.end()
    if data.startswith(b"[", pos):
        pos = _section(data, pos + 1)
        if data.startswith(b"<", pos):
            n = _NUMBER.match(data, pos + 1)
            if n is None or not data.startswith(b">", n.end()):
                raise _fail(data, pos, "bad <origin> in FETCH label")
            pos = n.end() + 1
    if not data.startswith(b" ", pos):
        raise _fail(data, pos, "expected SP after a FETCH item name")
    return pos + 1, name


def _section(data: bytes, pos: int) -> int:
    """After ``[``: section-spec (with a header-list of astrings), then ``]``."""
    m = _SECTION_TEXT.match(data, pos)
    assert m is not None
    pos = m.end()
    if data.startswith(b" (", pos):
        pos += 2
        while True:
            if data.startswith(b'"', pos) or _LITERAL.match(data, pos):
                _, pos = read_string(data, pos, utf8=True)
            else:
                atom = _ASTRING_ATOM.match(data, pos)
                if atom is None:
                    raise _fail(data, pos, "bad header-fld-name")
                pos = atom.end()
            if data.startswith(b")", pos):
                pos += 1
                break
            if not data.startswith(b" ", pos):
                raise _fail(data, pos, "expected SP in header-list")
            pos += 1
    if not data.startswith(b"]", pos):
        raise _fail(data, pos, "expected ] after a section")
    return pos + 1
