"""What a ``message.received`` payload says about the message: headers, bodies, attachments.

:func:`message_summary` is pure and never raises. Hostile mail gets a valid,
bounded answer in linear time: the MIME tree comes from the bounded splitter
IMAP FETCH uses (:mod:`mailstead.proto.imap.message`: byte offsets, nesting
and part counts capped, fuzzed), not from :mod:`email`, whose parser and
header decoding have quadratic paths and raise lazily on broken input.

Bounds: the text and HTML bodies are each cut at ``max_body_bytes`` UTF-8
bytes; every other string (header values, addresses, attachment metadata)
and its JSON framing is paid from one budget of ``max_header_bytes``, spent
in the order the consumer most needs it (subject, from, dates and ids, then
attachments, then the recipient lists and references). Every string is
valid UTF-8: undecodable octets become U+FFFD, and control characters other
than tab and newline are removed.
"""

from __future__ import annotations

import re
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import TypeAlias
from urllib.parse import unquote_to_bytes

from mailstead.peertext import CONTROL_CHARS
from mailstead.proto.imap.message import MimePart, ParsedMessage, UnknownCTE
from mailstead.proto.imap.mime_words import decode_text, decode_words
from mailstead.proto.imap.mimeheader import (
    ContentType,
    parse_addresses,
    parse_disposition,
    strip_comments,
)

__all__ = ["JSON", "message_summary"]

JSON: TypeAlias = "bool | int | float | str | list[JSON] | dict[str, JSON] | None"

# JSON framing charged per list entry, so the budget bounds the serialised size.
_ADDRESS_COST = 32  # {"name": "", "address": ""},
_ID_COST = 4
_ATTACHMENT_COST = 112
_ATTACHMENT_FIELD = 255  # bytes per attachment string: a file name's usual maximum
_DATE_INPUT = 256  # a Date field longer than this is not a date

_PLAIN = ContentType(b"text", b"plain", (), False)
# parse_addresses' stand-ins for a missing part (they keep IMAP's ENVELOPE non-NIL).
_NO_MAILBOX = b"MISSING_MAILBOX"
_NO_HOST = b".MISSING-HOST-NAME."

# peertext's control characters, minus the two a text keeps; lone surrogates
# (the UTF-7 codec makes them) cannot be encoded to UTF-8 and become U+FFFD.
_CONTROL = re.compile("[" + re.escape(CONTROL_CHARS.replace("\t", "").replace("\n", "")) + "]+")
_SURROGATE = re.compile("[\ud800-\udfff]")
_ASCII_CONTROL = bytes(ord(c) for c in CONTROL_CHARS if c.isascii() and c not in "\t\n")

_MSG_ID = re.compile(r"<[^<>\s]+>")

# The address lists most mail carries, ``Ann Lee <ann@example.test>`` or
# ``ann@example.test``: atoms (RFC 5322 §3.2.3, without "=" and "?", which
# could start an encoded word) and a dot-atom address. parse_addresses reads
# them to the same (name, route, mailbox, host), at a tenth of the cost.
_SIMPLE_ADDRESS = re.compile(
    rb"""
    [ \t]*
    (?:
        (?: (ATOM(?:\ ATOM)*) [ \t]* )?  # display name: atoms, single spaces
        < (ATOM(?:\.ATOM)*) @ (ATOM(?:\.ATOM)*) >
    |
        (ATOM(?:\.ATOM)*) @ (ATOM(?:\.ATOM)*)
    )
    [ \t]*
    """.replace(b"ATOM", rb"[A-Za-z0-9!\#$%&'*+/^_`{|}~-]+"),
    re.VERBOSE,
)


class _Budget:
    """UTF-8 bytes left for the strings of a payload; remembers whether it cut one."""

    __slots__ = ("cut", "left")

    def __init__(self, limit: int) -> None:
        self.left = limit
        self.cut = False

    def spend(self, cost: int) -> bool:
        """Pay ``cost`` for one more entry; False (and nothing paid) when it does not fit."""
        if cost > self.left:
            self.cut = True
            return False
        self.left -= cost
        return True

    def prefix(self, value: bytes) -> bytes:
        """Enough of ``value`` to fill what is left: decoding never more than quadruples."""
        room = 4 * max(self.left, 0) + 80  # + one encoded word's worth (RFC 2047 §2)
        if len(value) > room:
            self.cut = True
            return value[:room]
        return value

    def clip(self, text: str, cap: int | None = None) -> str:
        """``text`` cut to what is left (and to ``cap``), never inside a character."""
        raw = text.encode()
        room = max(self.left, 0) if cap is None else max(min(self.left, cap), 0)
        if len(raw) > room:
            self.cut = True
            raw = raw[:room]
            text = raw.decode("utf-8", "ignore")
        self.left -= len(raw)
        return text


def _clean(text: str) -> str:
    """``text`` without control characters (tab and newline kept) or lone surrogates."""
    if text.isascii():  # most text: a byte table in C, 15x faster than the regex
        return text.encode("ascii").translate(None, _ASCII_CONTROL).decode("ascii")
    return _SURROGATE.sub("\ufffd", _CONTROL.sub("", text))


def _header(value: bytes | None, budget: _Budget) -> str | None:
    """A decoded, cleaned header value paid from ``budget``; None when absent."""
    if value is None:
        return None
    return budget.clip(_clean(decode_words(budget.prefix(value))).strip())


def _addresses(value: bytes | None, budget: _Budget, count: list[int]) -> list[JSON]:
    """An address list as ``{"name", "address"}`` objects; ``count`` holds what is left."""
    out: list[JSON] = []
    if value is None:
        return out
    for name, _, mailbox, host in _parse_addresses(budget.prefix(value)):
        if host is None:  # a group's start or end marker (RFC 5322 §3.4)
            continue
        if count[0] <= 0 or not budget.spend(_ADDRESS_COST):
            budget.cut = True
            break
        count[0] -= 1
        local = b"" if mailbox is None or mailbox == _NO_MAILBOX else mailbox
        address = local if host == _NO_HOST else local + b"@" + host
        out.append(
            {
                "name": "" if name is None else budget.clip(_clean(decode_words(name)).strip()),
                "address": budget.clip(_clean(address.decode("utf-8", "replace"))),
            }
        )
    return out


def _parse_addresses(
    value: bytes,
) -> list[tuple[bytes | None, bytes | None, bytes | None, bytes | None]]:
    """:func:`parse_addresses`, with a quick path for one plain address."""
    simple = _SIMPLE_ADDRESS.fullmatch(value)
    if simple is None:
        return parse_addresses(value)
    name, mailbox, host, bare_mailbox, bare_host = simple.groups()
    if mailbox is None:
        return [(None, None, bare_mailbox, bare_host)]
    return [(name, None, mailbox, host)]


def _iso_date(raw: str) -> str | None:
    """RFC 5322 §3.3 date-time as ISO 8601 UTC (``2026-12-07T13:00:00Z``), or None."""
    try:
        moment = parsedate_to_datetime(raw[:_DATE_INPUT])
        if moment.tzinfo is None:  # "-0000": the time is UTC, the zone unknown
            moment = moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="seconds") + "Z"
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _param(params: tuple[tuple[bytes, bytes], ...], name: bytes) -> str | None:
    """Parameter ``name`` decoded: RFC 2231 (extended, continued) or RFC 2047 words."""
    plain: bytes | None = None
    sections: dict[int, tuple[bool, bytes]] = {}
    for key, value in params:
        key = key.lower()
        if key == name:
            plain = value if plain is None else plain
        elif key.startswith(name + b"*"):
            # RFC 2231 §3-4: name*, name*N, name*N*; a bare "name*" is section 0.
            number = key[len(name) + 1 :]
            extended = number.endswith(b"*") or not number
            number = number.rstrip(b"*") or b"0"
            if number.isdigit() and len(number) <= 3:
                sections.setdefault(int(number), (extended, value))
    if not sections:
        return None if plain is None else decode_words(plain)
    octets = bytearray()
    charset: str | None = None
    for i in range(len(sections)):
        if i not in sections:
            break
        extended, value = sections[i]
        if extended:
            if i == 0 and value.count(b"'") >= 2:  # RFC 2231 §4: charset'language'value
                label, _, rest = value.partition(b"'")
                value = rest.partition(b"'")[2]
                charset = label.decode("ascii", "replace") or None
            octets += unquote_to_bytes(value)
        else:
            octets += value
    return decode_text(bytes(octets), charset)


def _decoded(part: MimePart) -> bytes:
    """The part's content with its transfer encoding undone (as stored when unknown)."""
    try:
        return part.decoded()
    except UnknownCTE:
        return part.body_bytes()


def _body(part: MimePart, ctype: ContentType, max_bytes: int) -> tuple[str, bool]:
    """A text part as UTF-8 with LF line ends, cut at ``max_bytes``; and whether it was cut."""
    data = _decoded(part)
    # A decoder yields at least one character per four octets (UTF-32), so
    # this much input fills max_bytes unless characters are removed.
    limit = 4 * max_bytes + 4
    label = ctype.param(b"charset")
    text = decode_text(
        data[:limit],
        None if label is None else label.decode("ascii", "replace"),
        final=len(data) <= limit,
    )
    text = _clean(text.replace("\r\n", "\n").replace("\r", "\n"))
    raw = text.encode()
    if len(raw) > max_bytes:
        return raw[:max_bytes].decode("utf-8", "ignore"), True
    return text, len(data) > limit


def _attachment(part: MimePart, ctype: ContentType, budget: _Budget) -> JSON:
    fields = part.fields()
    raw = fields.get(b"content-disposition")
    disposition = parse_disposition(raw) if raw is not None else None
    filename = None if disposition is None else _param(disposition[1], b"filename")
    if filename is None:
        filename = _param(ctype.params, b"name")
    cid = fields.get(b"content-id")
    if cid is not None:  # RFC 2392: a cid: URL names the Content-ID without its brackets
        cid = strip_comments(cid).strip().removeprefix(b"<").removesuffix(b">")

    def text(value: str | None) -> str | None:
        return None if value is None else budget.clip(_clean(value).strip(), _ATTACHMENT_FIELD)

    return {
        "filename": text(filename),
        "content_type": text(
            (ctype.type + b"/" + ctype.subtype).decode("utf-8", "replace").lower()
        ),
        "size": len(_decoded(part)),
        "content_id": text(
            None if cid is None else cid[: 4 * _ATTACHMENT_FIELD].decode("utf-8", "replace")
        ),
        "disposition": text(
            None if disposition is None else disposition[0].decode("utf-8", "replace").lower()
        ),
    }


def _unread(part: MimePart) -> JSON:
    """A part whose header was not read: all that is known is its size as stored."""
    return {
        "filename": None,
        "content_type": "application/octet-stream",
        "size": part.end - part.body_start,
        "content_id": None,
        "disposition": None,
    }


def _leaves(
    root: MimePart, visits: int, allowance: int
) -> tuple[list[tuple[MimePart, ContentType | None]], bool]:
    """Leaf parts in document order with their effective type; False if the walk stopped early.

    Reading a header costs a Python step per line, so the headers read share
    ``allowance`` octets; a part whose header does not fit is left unread
    (type None) and is not split.
    """
    out: list[tuple[MimePart, ContentType | None]] = []
    todo = [root]
    complete = True
    while todo:
        if visits <= 0:
            return out, False
        visits -= 1
        part = todo.pop()
        allowance -= part.fields_end - part.start
        if allowance < 0:
            out.append((part, None))
            complete = False
            continue
        ctype = part.content_type
        if ctype.type.lower() == b"multipart":
            if not ctype.param(b"boundary"):
                # RFC 2046 §5.1.1 requires it; without it the type is invalid,
                # which RFC 2045 §5.2 reads as text/plain.
                out.append((part, _PLAIN))
                continue
            children = part.parts()
            if children:  # none: past the splitter's bounds, now an opaque leaf
                todo.extend(reversed(children))
                continue
            ctype = part.content_type
        out.append((part, ctype))
    return out, complete


def message_summary(
    content: bytes,
    *,
    max_body_bytes: int = 256 * 1024,
    max_header_bytes: int = 64 * 1024,
    max_parts: int = 100,
    max_addresses: int = 1000,
) -> dict[str, JSON]:
    """The JSON-ready view of a stored message (LF or CRLF line ends) for ``message.received``.

    Keys: ``headers`` (``from``, ``to``, ``cc``, ``reply_to`` as lists of
    ``{"name", "address"}``; ``subject``; ``date`` in ISO 8601 UTC or None and
    ``date_raw``; ``message_id``, ``in_reply_to`` and the ``references`` list,
    each ``<id>``), ``headers_truncated``; ``text`` and ``html`` (the first
    text/plain and text/html parts that are not attachments, or None) with
    ``text_truncated`` and ``html_truncated``; ``attachments`` (``filename``,
    ``content_type``, ``size`` decoded, ``content_id`` without brackets,
    ``disposition``) for every other leaf part, at most ``max_parts``, with
    ``attachments_truncated``; ``size``, the stored octets.
    """
    root = ParsedMessage(content).root  # finding the header's end is one find()
    header_cut = root.fields_end > max_header_bytes
    if header_cut:
        # Only the first max_header_bytes of the header section are read at all:
        # reading a field costs a Python step per line.
        kept = content[:max_header_bytes].rstrip(b"\r\n")
        rest = content[root.fields_end :]
        root = ParsedMessage(kept + b"\n" + rest if kept else rest).root
    head = root.fields()
    budget = _Budget(max_header_bytes)
    left = [max_addresses]

    subject = _header(head.get(b"subject"), budget)
    sender = _addresses(head.get(b"from"), budget, left)
    reply_to = _addresses(head.get(b"reply-to"), budget, left)
    date_raw = _header(head.get(b"date"), budget)
    ids: dict[str, list[str]] = {}
    for field, key in ((b"message-id", "message_id"), (b"in-reply-to", "in_reply_to")):
        value = _header(head.get(field), budget)
        found = [] if value is None else _MSG_ID.findall(value) or value.split()
        ids[key] = found[:1]
    header_cut = header_cut or budget.cut

    # Bodies and attachments.
    budget.cut = False
    text: str | None = None
    html: str | None = None
    text_cut = html_cut = False
    attachments: list[JSON] = []
    leaves, complete = _leaves(root, 2 * max_parts + 16, 4 * max_header_bytes)
    attachments_cut = not complete
    for part, ctype in leaves:
        if ctype is None:
            if len(attachments) < max_parts and budget.spend(_ATTACHMENT_COST):
                attachments.append(_unread(part))
            continue
        disposition = parse_disposition(part.fields().get(b"content-disposition") or b"")
        inline = disposition is None or disposition[0].lower() != b"attachment"
        kind = (ctype.type.lower(), ctype.subtype.lower())
        if inline and text is None and kind == (b"text", b"plain"):
            text, text_cut = _body(part, ctype, max_body_bytes)
        elif inline and html is None and kind == (b"text", b"html"):
            html, html_cut = _body(part, ctype, max_body_bytes)
        elif len(attachments) >= max_parts or not budget.spend(_ATTACHMENT_COST):
            attachments_cut = True
        else:
            attachments.append(_attachment(part, ctype, budget))
    attachments_cut = attachments_cut or budget.cut

    budget.cut = False
    to = _addresses(head.get(b"to"), budget, left)
    cc = _addresses(head.get(b"cc"), budget, left)
    references: list[JSON] = []
    raw_refs = head.get(b"references")
    if raw_refs is not None:
        for ref in _MSG_ID.findall(_clean(decode_words(budget.prefix(raw_refs)))):
            if not budget.spend(_ID_COST):
                break
            references.append(budget.clip(ref))
    header_cut = header_cut or budget.cut

    headers: dict[str, JSON] = {
        "from": sender,
        "to": to,
        "cc": cc,
        "reply_to": reply_to,
        "subject": subject,
        "date": None if date_raw is None else _iso_date(date_raw),
        "date_raw": date_raw,
        "message_id": next(iter(ids["message_id"]), None),
        "in_reply_to": next(iter(ids["in_reply_to"]), None),
        "references": references,
    }
    return {
        "headers": headers,
        "headers_truncated": header_cut,
        "text": text,
        "text_truncated": text_cut,
        "html": html,
        "html_truncated": html_cut,
        "attachments": attachments,
        "attachments_truncated": attachments_cut,
        "size": len(content),
    }
