"""The MIME structure of one stored message, as FETCH sees it.

A hand-written splitter over byte offsets (RFC 2045/2046): nothing is copied
or rewritten until a section is asked for, parts are found lazily, and no
input makes it raise. The message comes in with CRLF line endings; a stray
bare LF still ends a line. Nesting is bounded (``MAX_DEPTH``, ``MAX_PARTS``):
a part past the bounds is served as an opaque application/octet-stream.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass

from mailstead.proto.imap.encode import nstring, quoted_or_literal
from mailstead.proto.imap.mimeheader import (
    ContentType,
    envelope,
    extension_tail,
    param_list,
    parse_content_type,
    strip_comments,
    unfold,
)

MAX_DEPTH = 32
MAX_PARTS = 10_000

_TEXT_PLAIN = ContentType(b"TEXT", b"PLAIN", ((b"CHARSET", b"US-ASCII"),), False)
# RFC 2046 §5.1.5: in a multipart/digest a part without Content-Type is a message.
_DIGEST_DEFAULT = ContentType(b"MESSAGE", b"RFC822", (), False)
_OPAQUE = ContentType(b"APPLICATION", b"OCTET-STREAM", (), False)
_IDENTITY_CTE = frozenset((b"", b"7bit", b"8bit", b"binary"))
_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_B64_JUNK = bytes(b for b in range(256) if b not in _B64_ALPHABET)

# RFC 9051 §6.4.5 section-text keywords.
HEADER = "HEADER"
HEADER_FIELDS = "HEADER.FIELDS"
HEADER_FIELDS_NOT = "HEADER.FIELDS.NOT"
TEXT = "TEXT"
MIME = "MIME"


class UnknownCTE(Exception):
    """BINARY met a Content-Transfer-Encoding it cannot undo (RFC 3516 §4.3).

    The server answers the command ``NO [UNKNOWN-CTE]``.
    """


@dataclass(frozen=True, slots=True)
class Section:
    """A FETCH section spec (RFC 9051 §6.4.5): part numbers, then an optional keyword.

    ``text`` is "" (the part itself, or the whole message when ``part`` is
    empty), HEADER, HEADER.FIELDS, HEADER.FIELDS.NOT, TEXT or MIME; ``fields``
    holds the header names of the HEADER.FIELDS forms, as the client sent them.
    """

    part: tuple[int, ...] = ()
    text: str = ""
    fields: tuple[bytes, ...] = ()


def _header_end(data: bytes, start: int, end: int) -> tuple[int, int]:
    """(end of the header fields, end of the header block incl. the blank line)."""
    if data.startswith(b"\r\n", start, end):
        return start, start + 2
    if data.startswith(b"\n", start, end):
        return start, start + 1
    crlf = data.find(b"\n\r\n", start, end)
    lf = data.find(b"\n\n", start, end if crlf < 0 else crlf + 1)
    if lf >= 0:
        return lf + 1, lf + 2
    if crlf >= 0:
        return crlf + 1, crlf + 3
    return end, end  # no blank line: everything is header, the body is empty


def _lines(data: bytes, start: int, end: int) -> int:
    """RFC 9051 §7.5.2 body-fld-lines: the lines of the encoded body."""
    if start >= end:
        return 0
    n = data.count(b"\n", start, end)
    return n if data[end - 1] == 0x0A else n + 1


class MimePart:
    """One entity: a header block, a body, and (found on demand) its sub-parts.

    Owns only offsets into the message bytes; a multipart knows its parts, a
    message/rfc822 part knows the message it encloses.
    """

    __slots__ = (
        "_ctype",
        "_enclosed",
        "_fields",
        "_parts",
        "body_start",
        "default_type",
        "depth",
        "end",
        "fields_end",
        "msg",
        "opaque",
        "start",
    )

    def __init__(
        self,
        msg: ParsedMessage,
        start: int,
        end: int,
        depth: int,
        default_type: ContentType = _TEXT_PLAIN,
    ) -> None:
        self.msg = msg
        self.start = start
        self.end = end
        self.depth = depth
        self.default_type = default_type
        self.fields_end, self.body_start = _header_end(msg.data, start, end)
        self.opaque = False
        self._fields: dict[bytes, bytes] | None = None
        self._ctype: ContentType | None = None
        self._parts: list[MimePart] | None = None
        self._enclosed: MimePart | None = None

    # -- header ------------------------------------------------------------

    def header_bytes(self) -> bytes:
        """The header block, including the blank line that ends it."""
        return self.msg.data[self.start : self.body_start]

    def body_bytes(self) -> bytes:
        """The body as stored (still transfer-encoded)."""
        return self.msg.data[self.body_start : self.end]

    def field_spans(self) -> list[tuple[bytes, int, int]]:
        """(lower-case name, start, end) of every field; end includes its line break."""
        data = self.msg.data
        spans: list[tuple[bytes, int, int]] = []
        pos = self.start
        stop = self.fields_end
        while pos < stop:
            eol = data.find(b"\n", pos, stop)
            nxt = stop if eol < 0 else eol + 1
            if spans and data[pos] in b" \t":  # RFC 5322 §2.2.3 folded line
                name, s, _ = spans[-1]
                spans[-1] = (name, s, nxt)
            else:
                colon = data.find(b":", pos, nxt)
                name = data[pos:colon].rstrip(b" \t").lower() if colon >= 0 else b""
                spans.append((name, pos, nxt))
            pos = nxt
        return spans

    def fields(self) -> dict[bytes, bytes]:
        """The first value of each field, unfolded, by lower-case name."""
        if self._fields is None:
            data = self.msg.data
            found: dict[bytes, bytes] = {}
            for name, s, e in self.field_spans():
                if name and name not in found:
                    found[name] = unfold(data[data.find(b":", s, e) + 1 : e])
            self._fields = found
        return self._fields

    def header_values(self, name: bytes) -> list[bytes]:
        """Every value of field ``name`` (case-insensitive), unfolded, in order."""
        data = self.msg.data
        want = name.lower()
        return [
            unfold(data[data.find(b":", s, e) + 1 : e])
            for n, s, e in self.field_spans()
            if n == want
        ]

    def filtered_header(self, names: tuple[bytes, ...], exclude: bool) -> bytes:
        """HEADER.FIELDS / HEADER.FIELDS.NOT: the matching fields and the blank line."""
        want = {n.lower() for n in names}
        data = self.msg.data
        out = [data[s:e] for n, s, e in self.field_spans() if (n in want) != exclude]
        # RFC 9051 §6.4.5: the blank line is always included, if there was one.
        out.append(data[self.fields_end : self.body_start])
        return b"".join(out)

    # -- type --------------------------------------------------------------

    @property
    def content_type(self) -> ContentType:
        """The Content-Type, the RFC 2045 §5.2 default when absent or broken."""
        if self._ctype is None:
            if self.opaque:
                self._ctype = _OPAQUE
            else:
                raw = self.fields().get(b"content-type")
                self._ctype = parse_content_type(raw, self.default_type)
        return self._ctype

    @property
    def encoding(self) -> bytes:
        """The Content-Transfer-Encoding as sent, "" when absent."""
        raw = self.fields().get(b"content-transfer-encoding")
        return b"" if raw is None else strip_comments(raw).strip()

    @property
    def is_multipart(self) -> bool:
        return self.content_type.type.lower() == b"multipart"

    def parts(self) -> list[MimePart]:
        """The sub-parts of a multipart (RFC 2046 §5.1.1); [] for any other part."""
        if self._parts is None:
            self._parts = self._split() if self.is_multipart else []
            if not self._parts and self.is_multipart:
                self._make_opaque()
        return self._parts

    def _make_opaque(self) -> None:
        """Past MAX_DEPTH / MAX_PARTS, or an encoded message: serve this part as one opaque leaf."""
        self.opaque = True
        self._ctype = _OPAQUE

    def enclosed(self) -> MimePart | None:
        """The message inside a message/rfc822 (or message/global) part, else None."""
        if self._enclosed is None:
            ct = self.content_type
            if ct.type.lower() != b"message" or ct.subtype.lower() not in (b"rfc822", b"global"):
                return None
            # RFC 2046 §5.2.1: only 7bit, 8bit and binary; an encoded message is
            # not parsed, and is served as an opaque leaf because BODYSTRUCTURE's
            # body-type-msg (RFC 9051 §9) must carry an envelope and a body.
            encoded = self.encoding.lower() not in _IDENTITY_CTE
            if encoded or not self.msg.take_part(self.depth + 1):
                self._make_opaque()
                return None
            self._enclosed = MimePart(self.msg, self.body_start, self.end, self.depth + 1)
        return self._enclosed

    def _split(self) -> list[MimePart]:
        data = self.msg.data
        start, end = self.body_start, self.end
        boundary = self.content_type.param(b"boundary")
        parts: list[MimePart] = []
        child_default = (
            _DIGEST_DEFAULT if self.content_type.subtype.lower() == b"digest" else _TEXT_PLAIN
        )
        if boundary:
            delim = b"--" + boundary
            part_start = -1
            pos = start
            while pos < end:
                if pos == start and data.startswith(delim, start, end):
                    at = start
                else:
                    hit = data.find(b"\n" + delim, pos, end)
                    if hit < 0:
                        break
                    at = hit + 1
                after = at + len(delim)
                close = data.startswith(b"--", after, end)
                eol = data.find(b"\n", after, end)
                line_end = end if eol < 0 else eol + 1
                pos = line_end
                if not close and data[after:line_end].strip(b" \t\r\n"):
                    continue  # "--boundaryXYZ": not a delimiter line (RFC 2046 §5.1.1)
                if part_start >= 0:
                    # The CRLF before a delimiter belongs to the delimiter.
                    part_end = at
                    if part_end > part_start and data[part_end - 1] == 0x0A:
                        part_end -= 1
                        if part_end > part_start and data[part_end - 1] == 0x0D:
                            part_end -= 1
                    if not self._add_part(parts, part_start, part_end, child_default):
                        return parts
                if close:
                    return parts
                part_start = line_end
            if part_start >= 0:  # unterminated: the last part runs to the end
                self._add_part(parts, part_start, end, child_default)
        if not parts and self.msg.take_part(self.depth + 1):
            # RFC 9051 §7.5.2 needs at least one body in a multipart.
            parts.append(MimePart(self.msg, end, end, self.depth + 1))
        return parts

    def _add_part(self, parts: list[MimePart], s: int, e: int, default: ContentType) -> bool:
        if not self.msg.take_part(self.depth + 1):
            return False
        parts.append(MimePart(self.msg, s, e, self.depth + 1, default))
        return True

    # -- BODYSTRUCTURE -----------------------------------------------------

    def bodystructure(self, extended: bool, utf8: bool) -> bytes:
        """RFC 9051 §7.5.2 BODYSTRUCTURE (``extended``) or BODY of this part."""
        fields = self.fields()
        if self.is_multipart and self.parts():
            ct = self.content_type
            # body-type-mpart = 1*body SP media-subtype [SP body-ext-mpart]
            out = b"".join(p.bodystructure(extended, utf8) for p in self.parts())
            out += b" " + quoted_or_literal(ct.subtype, utf8=utf8)
            if extended:
                out += b" " + param_list(ct.params, utf8) + extension_tail(fields, utf8)
            return b"(" + out + b")"
        inner = self.enclosed()
        ct = self.content_type
        params = ct.params
        if ct.type.lower() == b"text" and ct.param(b"charset") is None:
            params = (*params, (b"CHARSET", b"US-ASCII"))  # RFC 2045 §5.2 default
        # body-fields = param SP id SP desc SP enc SP octets
        out = b" ".join(
            (
                quoted_or_literal(ct.type, utf8=utf8),
                quoted_or_literal(ct.subtype, utf8=utf8),
                param_list(params, utf8),
                nstring(fields.get(b"content-id"), utf8=utf8),
                nstring(fields.get(b"content-description"), utf8=utf8),
                quoted_or_literal(self.encoding or b"7BIT", utf8=utf8),
                b"%d" % (self.end - self.body_start),
            )
        )
        if inner is not None:
            # body-type-msg: ... SP envelope SP body SP body-fld-lines
            out += b" " + inner.envelope(utf8) + b" " + inner.bodystructure(extended, utf8)
            out += b" %d" % _lines(self.msg.data, self.body_start, self.end)
        elif ct.type.lower() == b"text":
            out += b" %d" % _lines(self.msg.data, self.body_start, self.end)
        if extended:
            # body-ext-1part = md5 SP dsp SP lang SP loc
            out += b" " + nstring(fields.get(b"content-md5"), utf8=utf8)
            out += extension_tail(fields, utf8)
        return b"(" + out + b")"

    def envelope(self, utf8: bool) -> bytes:
        """RFC 9051 §7.5.2 ENVELOPE of the message whose header this part has."""
        return envelope(self.fields(), utf8)

    # -- BINARY ------------------------------------------------------------

    def decoded(self) -> bytes:
        """The body with its transfer encoding undone (RFC 3516 §4.2)."""
        body = self.body_bytes()
        if self.is_multipart or self.enclosed() is not None:
            return body
        cte = self.encoding.lower()
        if cte in _IDENTITY_CTE:
            return body
        if cte == b"base64":
            clean = body.translate(None, _B64_JUNK)
            cut = len(clean) % 4
            if cut == 1:
                clean = clean[:-1]
            elif cut:
                clean += b"=" * (4 - cut)
            try:
                return binascii.a2b_base64(clean)
            except binascii.Error:  # pragma: no cover - cleaned input always decodes
                return b""
        if cte == b"quoted-printable":
            return decode_qp(body)
        raise UnknownCTE(cte.decode("ascii", "replace"))


# RFC 2045 §6.7 rule 3: white space ending a line is transport padding. The
# lookbehind starts a match only at the start of a run, so a long run of
# blanks is scanned once (linear).
_QP_PADDING = re.compile(rb"(?<![ \t])[ \t]++(?=\r\n|\Z)")
# Octets a2b_qp reads its own way: "==" as one "=", and "=" CR as a soft
# break up to the next LF. Both "=" are stray, so escaped first (note 2).
_QP_STRAY = re.compile(rb"=(?==|\r(?!\n))")


def decode_qp(body: bytes) -> bytes:
    """Quoted-printable undone (RFC 2045 §6.7).

    Every line break is CRLF (rule 4), whatever the stored line ending;
    padding goes (rule 3), also between a soft break's "=" and the line end
    (rule 5). ``a2b_qp`` does the rest in one pass: soft breaks, "=XX" in
    either case, and "=" before anything else kept as it is (note 2).
    """
    if b"\n" in body:
        body = body.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if b" \r\n" in body or b"\t\r\n" in body or body.endswith((b" ", b"\t")):
        body = _QP_PADDING.sub(b"", body)
    if b"==" in body or body.count(b"=\r") != body.count(b"=\r\n"):
        body = _QP_STRAY.sub(b"=3D", body)
    return binascii.a2b_qp(body)


class ParsedMessage:
    """One message as bytes with CRLF line endings, and its lazily found MIME tree.

    RFC 822.SIZE is ``len(data)``. Section numbering follows RFC 9051 §6.4.5:
    a non-multipart message's part 1 is its body, and a message/rfc822 part's
    sub-parts are those of the message it encloses.
    """

    __slots__ = ("_budget", "_root", "data")

    def __init__(self, data: bytes) -> None:
        self.data = bytes(data)
        self._budget = MAX_PARTS
        self._root: MimePart | None = None

    @property
    def root(self) -> MimePart:
        """The top-level entity (the message's header and body)."""
        if self._root is None:
            self._root = MimePart(self, 0, len(self.data), 0)
        return self._root

    @property
    def size(self) -> int:
        return len(self.data)

    def take_part(self, depth: int) -> bool:
        """Count one more part against the bounds; False when past them."""
        if depth > MAX_DEPTH or self._budget <= 0:
            return False
        self._budget -= 1
        return True

    def header_bytes(self) -> bytes:
        """RFC822.HEADER / BODY[HEADER]: the header block incl. the blank line."""
        return self.root.header_bytes()

    def text_bytes(self) -> bytes:
        """RFC822.TEXT / BODY[TEXT]: everything after the header block."""
        return self.root.body_bytes()

    def header_values(self, name: bytes) -> list[bytes]:
        """Every value of top-level header field ``name``, unfolded, not decoded."""
        return self.root.header_values(name)

    def envelope(self, utf8: bool = False) -> bytes:
        """The ENVELOPE of the message (RFC 9051 §7.5.2)."""
        return self.root.envelope(utf8)

    def bodystructure(self, extended: bool, utf8: bool = False) -> bytes:
        """BODYSTRUCTURE (``extended``) or BODY (RFC 9051 §7.5.2)."""
        return self.root.bodystructure(extended, utf8)

    def part(self, numbers: tuple[int, ...]) -> MimePart | None:
        """The part at section numbers ``numbers`` (RFC 9051 §6.4.5), or None."""
        node = self.root
        for i, n in enumerate(numbers):
            if i == 0:
                sub = _message_part(node, n)
            elif node.is_multipart:
                sub = _nth(node.parts(), n)
            else:
                inner = node.enclosed()
                sub = None if inner is None else _message_part(inner, n)
            if sub is None:
                return None
            node = sub
        return node

    def section(self, section: Section) -> bytes | None:
        """The octets of BODY[section], or None when the section does not exist."""
        text = section.text
        if not section.part:
            if not text:
                return self.data
            target: MimePart | None = self.root
        else:
            node = self.part(section.part)
            if node is None:
                return None
            if not text:
                return node.body_bytes()
            if text == MIME:
                return node.header_bytes()
            # RFC 9051 §6.4.5: HEADER/TEXT after a part number need message/rfc822.
            target = node.enclosed()
        if target is None:
            return None
        if text == HEADER:
            return target.header_bytes()
        if text == TEXT:
            return target.body_bytes()
        if text in (HEADER_FIELDS, HEADER_FIELDS_NOT):
            return target.filtered_header(section.fields, text == HEADER_FIELDS_NOT)
        return None

    def binary(self, numbers: tuple[int, ...]) -> bytes | None:
        """BINARY[numbers] (RFC 3516): the decoded part; None if it does not exist.

        Raises UnknownCTE for a transfer encoding it cannot decode.
        """
        if not numbers:
            return self.data
        node = self.part(numbers)
        return None if node is None else node.decoded()

    def binary_size(self, numbers: tuple[int, ...]) -> int | None:
        """BINARY.SIZE[numbers] (RFC 3516 §4.2): octets of the decoded part."""
        data = self.binary(numbers)
        return None if data is None else len(data)


def _nth(parts: list[MimePart], n: int) -> MimePart | None:
    return parts[n - 1] if 1 <= n <= len(parts) else None


def _message_part(msg: MimePart, n: int) -> MimePart | None:
    """Part ``n`` of a message: of its multipart body, or part 1 = the body itself."""
    if msg.is_multipart:
        return _nth(msg.parts(), n)
    return msg if n == 1 else None
