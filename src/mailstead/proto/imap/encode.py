"""Encoding of strings in server responses, always valid whatever the bytes.

RFC 9051 §4.3: a quoted string holds no CR, LF, NUL or 8-bit octet (8-bit
is allowed after UTF8=ACCEPT, but a literal is always safe); anything else
goes out as a literal ``{n}\\r\\n`` followed by the bytes.
"""

from __future__ import annotations

_ATOM_SPECIALS = frozenset(b'(){ %*"\\]')
_QUOTED_UNSAFE = frozenset(b"\r\n\0") | frozenset(range(0x80, 0x100))


def literal(data: bytes) -> bytes:
    """``{n}CRLF`` followed by ``data``."""
    return b"{%d}\r\n" % len(data) + data


def quoted_or_literal(data: bytes, *, utf8: bool = False) -> bytes:
    """A quoted string when ``data`` allows it, else a literal.

    ``utf8``: the client enabled UTF8=ACCEPT (or IMAP4rev2), so valid UTF-8
    may stay quoted (RFC 9051 §4.3 ``quoted-utf8-char``). A NUL (a stored
    header may hold one) becomes 0x80, as Dovecot does: a literal is
    ``*CHAR8`` and CHAR8 has no NUL (RFC 9051 §9).
    """
    if b"\0" in data:
        data = data.replace(b"\0", b"\x80")
    if len(data) > 1000 or any(b in b"\r\n\0" for b in data):
        return literal(data)
    if any(b >= 0x80 for b in data):
        if not utf8:
            return literal(data)
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return literal(data)
    return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def nstring(data: bytes | None, *, utf8: bool = False) -> bytes:
    """``NIL`` for None, else a string (RFC 9051 §9 ``nstring``)."""
    return b"NIL" if data is None else quoted_or_literal(data, utf8=utf8)


def astring(data: bytes, *, utf8: bool = False) -> bytes:
    """An atom when ``data`` is a plain non-empty atom, else a string (``astring``)."""
    if data and all(0x20 < b < 0x7F and b not in _ATOM_SPECIALS for b in data):
        return data
    return quoted_or_literal(data, utf8=utf8)


def number_list(values: list[int]) -> bytes:
    return b" ".join(b"%d" % v for v in values)
