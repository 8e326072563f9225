"""The search program of an IMAP SEARCH and how it is matched against a message.

The keys are the nouns of RFC 9051 §6.4.4; :mod:`mailstead.proto.imap.search`
parses a command into them. Matching reads only what a key needs: flags,
sizes and dates come from the :class:`SearchTarget` itself, headers and the
body are asked for lazily, once per message.

String keys match a case-insensitive substring (RFC 9051 §6.4.4) of the
decoded text: header values are unfolded and RFC 2047 encoded words decoded;
BODY and TEXT see text parts with their transfer encoding (base64,
quoted-printable) and charset undone. A message with no encoded parts, no
encoded words and only ASCII is searched in its raw bytes (one ``lower()``
and one ``find``); only other messages are parsed as MIME.
"""

from __future__ import annotations

import email
import email.message
import email.policy
import email.utils
import re
from collections.abc import Callable, Collection, Set
from dataclasses import dataclass
from datetime import date
from typing import Protocol

from mailstead.proto.imap.mime_words import decode_text, decode_words
from mailstead.proto.imap.mimeheader import parse_addresses
from mailstead.proto.imap.sequence import SequenceSet

_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


# --- the program -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class All:
    """ALL, and the program of a search that matches everything."""


@dataclass(frozen=True, slots=True)
class HasFlag:
    """ANSWERED/DELETED/DRAFT/FLAGGED/SEEN/KEYWORD (``present``) and their UN- forms.

    Flag names compare case-insensitively (RFC 9051 §2.3.2).
    """

    flag: str
    present: bool = True


@dataclass(frozen=True, slots=True)
class Size:
    """LARGER n (``larger``) or SMALLER n: strictly, by RFC 822 size."""

    larger: bool
    octets: int


@dataclass(frozen=True, slots=True)
class DateKey:
    """BEFORE/ON/SINCE (internal date) and SENTBEFORE/SENTON/SENTSINCE (Date: header).

    ``op`` is ``"BEFORE"``, ``"ON"`` or ``"SINCE"``; ``day`` counts days since
    1970-01-01. Time and zone are disregarded (RFC 9051 §6.4.4).
    """

    op: str
    day: int
    sent: bool


@dataclass(frozen=True, slots=True)
class HeaderKey:
    """BCC/CC/FROM/SUBJECT/TO s and HEADER name s: a substring of a decoded field value.

    An empty ``needle`` matches every message that has the field (RFC 9051 §6.4.4).
    """

    name: str
    needle: str


@dataclass(frozen=True, slots=True)
class TextKey:
    """BODY s (``header`` False) or TEXT s (header and body)."""

    needle: str
    header: bool


@dataclass(frozen=True, slots=True)
class InSet:
    """A sequence set (``uid`` False) or UID set; ``$`` is the RFC 5182 saved result."""

    numbers: SequenceSet
    uid: bool


@dataclass(frozen=True, slots=True)
class ModSeq:
    """RFC 7162 §3.1.5 MODSEQ: a modseq at least ``value`` (one per message here,
    so the optional entry name and type are accepted and make no difference)."""

    value: int


@dataclass(frozen=True, slots=True)
class Not:
    """NOT key."""

    key: SearchKey


@dataclass(frozen=True, slots=True)
class Or:
    """OR key1 key2."""

    left: SearchKey
    right: SearchKey


@dataclass(frozen=True, slots=True)
class And:
    """Keys side by side or in parentheses: all must match."""

    keys: tuple[SearchKey, ...]


SearchKey = All | HasFlag | Size | DateKey | HeaderKey | TextKey | InSet | ModSeq | Not | Or | And


def walk(key: SearchKey) -> list[SearchKey]:
    """``key`` and every key inside it (the parser bounds the depth)."""
    out = [key]
    i = 0
    while i < len(out):
        k = out[i]
        if isinstance(k, Not):
            out.append(k.key)
        elif isinstance(k, Or):
            out += (k.left, k.right)
        elif isinstance(k, And):
            out += k.keys
        i += 1
    return out


class SearchTarget(Protocol):
    """What a message must offer to be searched; the store implements it."""

    @property
    def seq(self) -> int: ...
    @property
    def uid(self) -> int: ...
    @property
    def flags(self) -> Collection[str]: ...
    @property
    def internaldate(self) -> float:
        """POSIX seconds."""
        ...

    @property
    def size(self) -> int:
        """RFC 822 size (RFC 9051 §6.4.4 LARGER/SMALLER)."""
        ...

    @property
    def modseq(self) -> int:
        """RFC 7162 mod-sequence (MODSEQ)."""
        ...

    @property
    def max_seq(self) -> int:
        """The number of messages in the mailbox (what ``*`` means in a sequence set)."""
        ...

    @property
    def max_uid(self) -> int:
        """The largest UID in use (what ``*`` means in a UID set)."""
        ...

    @property
    def saved(self) -> Set[int] | None:
        """UIDs of the RFC 5182 saved search result, for ``$``; None when none was saved."""
        ...

    def header_bytes(self) -> bytes:
        """The header of the message, up to and including the blank line."""
        ...

    def message_bytes(self) -> bytes:
        """The whole message, lines ending in CRLF."""
        ...


# --- per-message state -----------------------------------------------------------


class _Message:
    """One message being matched: the target and what was read from it so far."""

    __slots__ = ("_fields", "_lowered", "_raw", "_text", "msg", "whole")

    def __init__(self, msg: SearchTarget, whole: bool) -> None:
        self.msg = msg
        # The body will be read anyway: take the header from it, one read not two.
        self.whole = whole
        self._fields: dict[bytes, list[bytes]] | None = None
        self._raw: bytes | None = None
        self._lowered: bytes | None = None
        self._text: tuple[str, str] | None = None

    def fields(self) -> dict[bytes, list[bytes]]:
        if self._fields is None:
            whole = self.whole or self._raw is not None
            source = self.raw() if whole else self.msg.header_bytes()
            self._fields = parse_fields(source)
        return self._fields

    def flat_header(self) -> bytes:
        """The bytes :meth:`fields` parses, lower-cased, with every CR and LF
        removed: each unfolded field value is a substring of it."""
        whole = self.whole or self._raw is not None
        source = self.lowered() if whole else self.msg.header_bytes().lower()
        return source.replace(b"\r", b"").replace(b"\n", b"")

    def raw(self) -> bytes:
        if self._raw is None:
            self._raw = self.msg.message_bytes()
        return self._raw

    def lowered(self) -> bytes:
        if self._lowered is None:
            self._lowered = self.raw().lower()
        return self._lowered

    def decoded(self) -> tuple[str, str]:
        """(header, body) as casefolded text, the slow path."""
        if self._text is None:
            self._text = decode_message(self.raw())
        return self._text


Matcher = Callable[[_Message], bool]


def compile_key(key: SearchKey) -> Matcher:
    """A function deciding ``key`` for one message."""
    if isinstance(key, All):
        return lambda m: True
    if isinstance(key, HasFlag):
        return _flag_matcher(key)
    if isinstance(key, Size):  # RFC 9051 §6.4.4: strictly larger / smaller RFC822.SIZE
        n = key.octets
        if key.larger:
            return lambda m: m.msg.size > n
        return lambda m: m.msg.size < n
    if isinstance(key, DateKey):
        return _date_matcher(key)
    if isinstance(key, HeaderKey):
        return _header_matcher(key)
    if isinstance(key, TextKey):
        return _text_matcher(key)
    if isinstance(key, InSet):
        return _set_matcher(key)
    if isinstance(key, ModSeq):
        least = key.value
        return lambda m: m.msg.modseq >= least
    if isinstance(key, Not):
        inner = compile_key(key.key)
        return lambda m: not inner(m)
    if isinstance(key, Or):
        left, right = compile_key(key.left), compile_key(key.right)
        return lambda m: left(m) or right(m)
    # And: cheap keys first, so flag tests spare reading the file.
    parts = [compile_key(k) for k in sorted(key.keys, key=_cost)]
    if len(parts) == 1:
        return parts[0]
    return lambda m: all(p(m) for p in parts)


def _cost(key: SearchKey) -> int:
    cost = 0
    for k in walk(key):
        if isinstance(k, TextKey):
            cost = 3
        elif isinstance(k, HeaderKey) or (isinstance(k, DateKey) and k.sent):
            cost = max(cost, 2)
    return cost


def _flag_matcher(key: HasFlag) -> Matcher:
    want = key.flag.lower()
    present = key.present

    def match(m: _Message) -> bool:
        flags = m.msg.flags
        found = want in flags or any(f.lower() == want for f in flags)
        return found is present

    return match


def _date_matcher(key: DateKey) -> Matcher:
    day = key.day
    op = key.op

    def compare(d: int) -> bool:
        if op == "BEFORE":
            return d < day
        if op == "ON":
            return d == day
        return d >= day  # SINCE

    if not key.sent:
        # Internal dates are kept as POSIX seconds; their UTC calendar date counts.
        return lambda m: compare(int(m.msg.internaldate // 86400))

    def match(m: _Message) -> bool:
        d = sent_day(m.fields())
        # Quirk (as Dovecot): without a usable Date: field the internal date stands in.
        return compare(int(m.msg.internaldate // 86400) if d is None else d)

    return match


def sent_day(fields: dict[bytes, list[bytes]]) -> int | None:
    """Days since 1970-01-01 of the Date: field's calendar date, in its own zone."""
    values = fields.get(b"date")
    if not values:
        return None
    parsed = email.utils.parsedate_tz(values[0].decode("latin-1"))
    if parsed is None:
        return None
    try:
        return date(parsed[0], parsed[1], parsed[2]).toordinal() - _EPOCH_ORDINAL
    except (ValueError, OverflowError):
        return None


def _header_matcher(key: HeaderKey) -> Matcher:
    name = key.name.lower().encode("utf-8")
    folded = key.needle.casefold()
    raw_needle = folded.encode("ascii") if folded.isascii() else None
    addresses = name in _ADDRESS_FIELDS
    # A cheap look before parsing (3x faster SEARCH SUBJECT on a big
    # mailbox): in a plain ASCII header, decoding changes nothing, so a
    # needle found nowhere in it is in no field. Reading addresses changes
    # the text where there are comments, quotes or odd spacing, but each of
    # the needle's words between specials still stands in the raw header.
    screen = raw_needle if raw_needle and not (b"\r" in raw_needle or b"\n" in raw_needle) else b""
    words = [w for w in _SPECIALS.split(screen) if w] if addresses else [screen] if screen else []

    def match(m: _Message) -> bool:
        if words:
            flat = m.flat_header()
            if b"=?" not in flat and flat.isascii() and not all(w in flat for w in words):
                return False
        values = m.fields().get(name)
        if not values:
            return False
        if not folded:
            return True
        for value in values:
            plain = value.isascii() and b"=?" not in value
            if plain:
                if raw_needle is not None and raw_needle in value.lower():
                    return True
            elif folded in decode_header_value(value).casefold():
                return True
            # RFC 9051 §6.4.4: FROM/TO/CC/BCC match the addresses as they
            # read, display names included (quoted, encoded or a comment).
            if addresses and folded in address_text(value).casefold():
                return True
        return False

    return match


def _text_matcher(key: TextKey) -> Matcher:
    folded = key.needle.casefold()
    raw_needle = folded.encode("ascii") if folded.isascii() else None
    with_header = key.header

    def match(m: _Message) -> bool:
        if not folded:
            return True
        lowered = m.lowered()
        encoded = b"=?" in lowered or b"base64" in lowered or b"quoted-printable" in lowered
        if not encoded:
            # Fast path: no transfer encoding or encoded word to undo.
            start = 0 if with_header else body_offset(lowered)
            if raw_needle is not None and lowered.find(raw_needle, start) >= 0:
                return True
            if lowered.isascii():
                return False
        header, body = m.decoded()
        return folded in body or (with_header and folded in header)

    return match


def _set_matcher(key: InSet) -> Matcher:
    numbers = key.numbers
    if numbers.is_saved:  # RFC 5182 §2.1: "$" is the saved result, a set of UIDs
        return lambda m: m.msg.saved is not None and m.msg.uid in m.msg.saved
    if key.uid:
        return lambda m: numbers.contains(m.msg.uid, m.msg.max_uid)
    return lambda m: numbers.contains(m.msg.seq, m.msg.max_seq)


# --- header fields and encoded words ---------------------------------------------


def body_offset(data: bytes) -> int:
    """Where the body starts: after the first empty line (RFC 5322 §2.1), else the end."""
    if data.startswith((b"\r\n", b"\n")):
        return 2 if data.startswith(b"\r\n") else 1
    crlf = data.find(b"\r\n\r\n")
    lf = data.find(b"\n\n")
    if crlf >= 0 and (lf < 0 or crlf < lf):
        return crlf + 4
    if lf >= 0:
        return lf + 2
    return len(data)


def parse_fields(header: bytes) -> dict[bytes, list[bytes]]:
    """Field values by lower-case name, unfolded (RFC 5322 §2.2.3), in order."""
    fields: dict[bytes, list[bytes]] = {}
    name: bytes | None = None
    value = b""
    for line in header.split(b"\n"):
        line = line.rstrip(b"\r")
        if line[:1] in (b" ", b"\t") and name is not None:
            value += line
            continue
        if name is not None:
            fields.setdefault(name, []).append(value.strip(b" \t"))
            name = None
        if not line:
            break  # the empty line that ends the header
        key, colon, rest = line.partition(b":")
        key = key.strip(b" \t")
        if colon and key:
            name, value = key.lower(), rest
    if name is not None:
        fields.setdefault(name, []).append(value.strip(b" \t"))
    return fields


def decode_bytes(data: bytes, charset: str | None) -> str:
    """``data`` in ``charset``; UTF-8, else Latin-1, when it is unknown or absent."""
    return decode_text(data, charset, latin1=True)


def decode_header_value(value: bytes) -> str:
    """An unfolded field value with RFC 2047 encoded words decoded (:func:`decode_words`)."""
    return decode_words(value, latin1=True)


# Fields whose text is also searched as a reader sees the addresses.
_SPECIALS = re.compile(rb'[\s<>,:;"()\\@.\[\]]+')  # RFC 5322 §3.2.3 specials and space
_ADDRESS_FIELDS = frozenset((b"from", b"to", b"cc", b"bcc", b"sender", b"reply-to"))
_MISSING = (b"MISSING_MAILBOX", b".MISSING-HOST-NAME.")  # parse_addresses' stand-ins


def address_text(value: bytes) -> str:
    """An address field as a reader sees it: ``Name <local@host>, group: ...``.

    Comments go (a lone one is the name, ``a@b (Name)``), quoted strings lose
    their quotes and quoted-pairs, words are spaced by one space (RFC 5322
    §3.4), and encoded words are decoded, so that FROM "user@domain" finds
    ``<user (comment)@ (comment) domain>`` and FROM "Name" finds ``"Name"``.
    """
    out: list[str] = []
    group = ""  # "name: " of a group whose first member is still to come
    for name, _adl, mailbox, host in parse_addresses(value):
        if host is None:  # a group's start (mailbox is its name) or end (None)
            if group:
                out.append(group.rstrip())
            group = "" if mailbox is None else decode_header_value(mailbox) + ": "
            continue
        missing = mailbox is None or mailbox in _MISSING or host in _MISSING
        spec = b"" if missing or mailbox is None else mailbox + b"@" + host
        shown = decode_header_value(name).strip() if name else ""
        if spec:
            address = spec.decode("utf-8", "replace")
            shown = f"{shown} <{address}>" if shown else address
        if shown:
            out.append(group + shown)
            group = ""
    if group:
        out.append(group.rstrip())
    return ", ".join(out)


# --- the slow path: MIME ---------------------------------------------------------


def _field_text(name: str, value: bytes) -> str:
    return name + ": " + decode_header_value(value.replace(b"\r", b"").replace(b"\n", b"").strip())


def _part_header(part: email.message.Message) -> str:
    # compat32 keeps raw octets as surrogate escapes; undo that to decode them ourselves.
    return "\n".join(
        _field_text(name, str(value).encode("utf-8", "surrogateescape"))
        for name, value in part.raw_items()
    )


def decode_message(raw: bytes) -> tuple[str, str]:
    """(header, body) of a message as casefolded text, for BODY and TEXT.

    The body holds the headers of nested parts and the decoded content of
    every text part (RFC 2045 §6 transfer encodings, the part's charset);
    other parts contribute only their headers.
    """
    try:
        split = body_offset(raw)
        header = "\n".join(
            _field_text(name.decode("latin-1"), value)
            for name, values in parse_fields(raw[:split]).items()
            for value in values
        )
        top = email.message_from_bytes(raw, policy=email.policy.compat32)
        body: list[str] = []
        for part in top.walk():
            if part is not top:
                body.append(_part_header(part))
            if part.is_multipart():
                continue
            if part.get_content_maintype() != "text":
                continue
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                body.append(decode_bytes(payload, part.get_content_charset()))
        return header.casefold(), "\n".join(body).casefold()
    except Exception:  # malformed beyond the parser's leniency: search the raw text
        split = body_offset(raw)
        return (
            decode_bytes(raw[:split], None).casefold(),
            decode_bytes(raw[split:], None).casefold(),
        )
