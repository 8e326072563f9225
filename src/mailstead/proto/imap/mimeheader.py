"""Header fields of one message or MIME part, read the way IMAP needs them.

Values are unfolded (RFC 5322 §2.2.3) but never decoded: encoded words
(RFC 2047) and raw 8-bit octets reach the client as they were sent, which is
what ENVELOPE and BODYSTRUCTURE want (RFC 9051 §7.5.2). Everything here
works on ``bytes`` and never raises on malformed input.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailstead.proto.imap.encode import nstring, quoted_or_literal

_WSP = b" \t"
_STRIP = b" \t\r\n"
# RFC 5322 §3.2.3 specials that separate tokens in an address header.
_ADDR_SPECIALS = frozenset(b"<>@,;:.[]")
_MISSING_HOST = b".MISSING-HOST-NAME."  # the marker c-client and Dovecot use
_MISSING_MAILBOX = b"MISSING_MAILBOX"


def unfold(value: bytes) -> bytes:
    """Remove the line breaks of folding and the outer white space (RFC 5322 §2.2.3)."""
    if b"\n" in value:
        value = value.replace(b"\r\n", b"").replace(b"\n", b"")
    return value.strip(_STRIP)


def strip_comments(value: bytes) -> bytes:
    """``value`` without RFC 5322 §3.2.2 comments; quoted strings are kept intact."""
    if b"(" not in value:
        return value
    out = bytearray()
    depth = 0
    quoted = False
    i = 0
    n = len(value)
    while i < n:
        c = value[i]
        if c == 0x5C and i + 1 < n and (quoted or depth):  # quoted-pair
            if not depth:
                out += value[i : i + 2]
            i += 2
            continue
        if quoted:
            out.append(c)
            if c == 0x22:
                quoted = False
        elif c == 0x28:  # (
            depth += 1
        elif c == 0x29 and depth:  # )
            depth -= 1
            if not depth:
                out.append(0x20)
        elif not depth:
            out.append(c)
            if c == 0x22:
                quoted = True
        i += 1
    return bytes(out)


def _unquote(value: bytes) -> bytes:
    """The content of a quoted string, quoted-pairs resolved (RFC 5322 §3.2.4)."""
    inner = value[1:-1] if len(value) >= 2 and value.endswith(b'"') else value[1:]
    if b"\\" not in inner:
        return inner
    out = bytearray()
    i = 0
    while i < len(inner):
        if inner[i] == 0x5C and i + 1 < len(inner):
            i += 1
        out.append(inner[i])
        i += 1
    return bytes(out)


def _split_unquoted(value: bytes, sep: int) -> list[bytes]:
    """Split ``value`` on ``sep`` outside quoted strings."""
    if 0x22 not in value:
        return value.split(bytes((sep,)))
    pieces: list[bytes] = []
    quoted = False
    start = 0
    i = 0
    while i < len(value):
        c = value[i]
        if quoted and c == 0x5C:
            i += 2
            continue
        if c == 0x22:
            quoted = not quoted
        elif c == sep and not quoted:
            pieces.append(value[start:i])
            start = i + 1
        i += 1
    pieces.append(value[start:])
    return pieces


@dataclass(frozen=True, slots=True)
class ContentType:
    """A Content-Type (RFC 2045 §5.1): type, subtype as sent, and parameters.

    ``explicit`` is False when the field was absent or unusable and the
    RFC 2045 §5.2 default (text/plain; charset=us-ascii) stands in.
    """

    type: bytes
    subtype: bytes
    params: tuple[tuple[bytes, bytes], ...]
    explicit: bool

    def param(self, name: bytes) -> bytes | None:
        """The value of parameter ``name`` (case-insensitive), or None."""
        name = name.lower()
        for key, value in self.params:
            if key.lower() == name:
                return value
        return None


def parse_params(pieces: list[bytes]) -> tuple[tuple[bytes, bytes], ...]:
    """``name=value`` pairs from the ``;``-separated pieces after a value."""
    params: list[tuple[bytes, bytes]] = []
    for piece in pieces:
        name, eq, value = piece.partition(b"=")
        name = name.strip(_STRIP)
        value = value.strip(_STRIP)
        if not eq or not name or b" " in name or b'"' in name:
            continue  # malformed parameter: ignored, like most MUAs do
        if value.startswith(b'"'):
            value = _unquote(value)
        params.append((name, value))
    return tuple(params)


def parse_content_type(raw: bytes | None, default: ContentType) -> ContentType:
    """The Content-Type of ``raw`` (an unfolded value), or ``default`` when unusable."""
    if raw is None:
        return default
    pieces = _split_unquoted(strip_comments(raw), 0x3B)
    main, slash, sub = pieces[0].partition(b"/")
    main = main.strip(_STRIP)
    sub = sub.strip(_STRIP)
    # RFC 2045 §5.2: a syntactically invalid Content-Type means text/plain.
    if not slash or not main or not sub or b" " in main or b" " in sub or b'"' in main + sub:
        return default
    return ContentType(main, sub, parse_params(pieces[1:]), True)


def parse_disposition(raw: bytes) -> tuple[bytes, tuple[tuple[bytes, bytes], ...]] | None:
    """Disposition type and parameters of a Content-Disposition (RFC 2183)."""
    pieces = _split_unquoted(strip_comments(raw), 0x3B)
    kind = pieces[0].strip(_STRIP)
    if not kind or b" " in kind or b'"' in kind:
        return None
    return kind, parse_params(pieces[1:])


def param_list(params: tuple[tuple[bytes, bytes], ...], utf8: bool) -> bytes:
    """RFC 9051 §9 ``body-fld-param``: ``("NAME" "value" ...)`` or NIL."""
    if not params:
        return b"NIL"
    return (
        b"("
        + b" ".join(nstring(k, utf8=utf8) + b" " + nstring(v, utf8=utf8) for k, v in params)
        + b")"
    )


# --- addresses (RFC 5322 §3.4) --------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: int  # 0 atom, 1 quoted string, 2 special, 3 comment, 4 domain literal
    text: bytes  # the source text (quoted strings keep their quotes)
    space: bool  # white space or a comment came before it


def _tokens(value: bytes) -> list[_Tok]:
    toks: list[_Tok] = []
    i = 0
    n = len(value)
    space = False
    while i < n:
        c = value[i]
        if c in _WSP or c in b"\r\n":
            space = True
            i += 1
            continue
        start = i
        if c == 0x22 or c == 0x28 or c == 0x5B:  # " ( [
            close = {0x22: 0x22, 0x28: 0x29, 0x5B: 0x5D}[c]
            depth = 1
            i += 1
            while i < n and depth:
                d = value[i]
                if d == 0x5C:
                    i += 2
                    continue
                if c == 0x28 and d == 0x28:
                    depth += 1
                elif d == close:
                    depth -= 1
                i += 1
            i = min(i, n)
            kind = {0x22: 1, 0x28: 3, 0x5B: 4}[c]
            toks.append(_Tok(kind, value[start:i], space))
            space = kind == 3
            continue
        if c in _ADDR_SPECIALS:
            toks.append(_Tok(2, value[i : i + 1], space))
            i += 1
        else:
            while i < n and value[i] not in _ADDR_SPECIALS and value[i] not in b' \t\r\n"(':
                i += 1
            toks.append(_Tok(0, value[start:i], space))
        space = False
    return toks


def _phrase(toks: list[_Tok]) -> bytes | None:
    """The display name: words joined as they were spaced, quoted strings unquoted."""
    out = bytearray()
    for tok in toks:
        if tok.kind == 3:
            continue
        if out and tok.space:
            out.append(0x20)
        out += _unquote(tok.text) if tok.kind == 1 else tok.text
    return bytes(out) if out else None


def _comment_name(toks: list[_Tok]) -> bytes | None:
    """``a@b (Real Name)``: the last comment serves as the display name."""
    for tok in reversed(toks):
        if tok.kind == 3:
            inner = tok.text[1:-1] if tok.text.endswith(b")") else tok.text[1:]
            inner = inner.strip(_STRIP)
            return inner or None
    return None


Address = tuple[bytes | None, bytes | None, bytes | None, bytes | None]
"""RFC 9051 §7.5.2 address: (name, adl, mailbox, host); a group marker has host None."""


def _mailbox(toks: list[_Tok]) -> Address | None:
    words = [t for t in toks if t.kind != 3]
    if not words:
        return None
    lt = next((i for i, t in enumerate(words) if t.kind == 2 and t.text == b"<"), -1)
    if lt >= 0:
        name = _phrase(words[:lt])
        spec = words[lt + 1 :]
        gt = next((i for i, t in enumerate(spec) if t.kind == 2 and t.text == b">"), len(spec))
        spec = spec[:gt]
    else:
        name = _comment_name(toks)
        spec = words
    adl: bytes | None = None
    colon = max((i for i, t in enumerate(spec) if t.kind == 2 and t.text == b":"), default=-1)
    if colon >= 0:  # RFC 5322 §4.4 obs-route: "<@a,@b:user@host>"
        adl = b"".join(t.text for t in spec[:colon]) or None
        spec = spec[colon + 1 :]
    at = max((i for i, t in enumerate(spec) if t.kind == 2 and t.text == b"@"), default=-1)
    local_toks = spec[:at] if at >= 0 else spec
    host_toks = spec[at + 1 :] if at >= 0 else []
    local = b"".join(t.text for t in local_toks if t.kind != 2 or t.text == b".")
    host = b"".join(t.text for t in host_toks if t.kind != 2 or t.text == b".")
    if not local and not host and name is None:
        return None
    return (name, adl, local or _MISSING_MAILBOX, host or _MISSING_HOST)


def parse_addresses(value: bytes) -> list[Address]:
    """The addresses of an address-list header, groups as start/end markers."""
    out: list[Address] = []
    cur: list[_Tok] = []
    angle = False
    group = False

    def flush() -> None:
        box = _mailbox(cur)
        if box is not None:
            out.append(box)
        cur.clear()

    for tok in _tokens(value):
        if tok.kind == 2:
            t = tok.text
            if t == b"<":
                angle = True
            elif t == b">":
                angle = False
            elif not angle:
                if t == b",":
                    flush()
                    continue
                if t == b":" and not group and not any(x.text == b"@" for x in cur):
                    # RFC 5322 §3.4 group: display-name ":" [group-list] ";"
                    out.append((None, None, _phrase(cur) or b"", None))
                    cur.clear()
                    group = True
                    continue
                if t == b";" and group:
                    flush()
                    out.append((None, None, None, None))
                    group = False
                    continue
        cur.append(tok)
    flush()
    if group:
        out.append((None, None, None, None))
    return out


def address_list(value: bytes | None, utf8: bool) -> bytes:
    """An ENVELOPE address list: ``((name adl mailbox host) ...)`` or NIL."""
    if value is None:
        return b"NIL"
    addrs = parse_addresses(value)
    if not addrs:
        return b"NIL"
    return (
        b"("
        + b"".join(
            b"(" + b" ".join(nstring(part, utf8=utf8) for part in addr) + b")" for addr in addrs
        )
        + b")"
    )


# --- ENVELOPE and BODYSTRUCTURE extension data (RFC 9051 §7.5.2) ---------------


def extension_tail(fields: dict[bytes, bytes], utf8: bool) -> bytes:
    """BODYSTRUCTURE extension data: `` SP body-fld-dsp SP body-fld-lang SP body-fld-loc``."""
    dsp = b"NIL"
    raw = fields.get(b"content-disposition")
    parsed = parse_disposition(raw) if raw is not None else None
    if parsed is not None:
        dsp = (
            b"("
            + quoted_or_literal(parsed[0], utf8=utf8)
            + b" "
            + param_list(parsed[1], utf8)
            + b")"
        )
    lang = b"NIL"
    raw = fields.get(b"content-language")
    if raw is not None:
        tags = [t.strip() for t in strip_comments(raw).split(b",") if t.strip()]
        if len(tags) == 1:
            lang = quoted_or_literal(tags[0], utf8=utf8)
        elif tags:
            lang = b"(" + b" ".join(quoted_or_literal(t, utf8=utf8) for t in tags) + b")"
    loc = nstring(fields.get(b"content-location"), utf8=utf8)
    return b" " + dsp + b" " + lang + b" " + loc


def envelope(fields: dict[bytes, bytes], utf8: bool) -> bytes:
    """RFC 9051 §7.5.2 ENVELOPE from a message's first field values by lower-case name."""
    f = fields
    sender = f.get(b"from")
    out = [
        nstring(f.get(b"date"), utf8=utf8),
        nstring(f.get(b"subject"), utf8=utf8),
        address_list(sender, utf8),
        # RFC 9051 §7.5.2: Sender and Reply-To default to From when absent or empty.
        address_list(f.get(b"sender") or sender, utf8),
        address_list(f.get(b"reply-to") or sender, utf8),
        address_list(f.get(b"to"), utf8),
        address_list(f.get(b"cc"), utf8),
        address_list(f.get(b"bcc"), utf8),
        nstring(f.get(b"in-reply-to"), utf8=utf8),
        nstring(f.get(b"message-id"), utf8=utf8),
    ]
    return b"(" + b" ".join(out) + b")"
