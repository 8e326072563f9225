"""The text of a message as the full-text index keeps it.

Two columns, each holding (casefolded) every string the exact matcher of
:mod:`mailstead.proto.imap.search_match` compares a needle with, so that a
needle the matcher finds is always in the column (the index may let through
more; the matcher then says no):

* ``fields``: each header field's value unfolded with RFC 2047 encoded
  words decoded, and the address fields also as a reader sees them
  (:func:`address_text`) — for FROM, TO, CC, BCC, SUBJECT and HEADER;
* ``text``: for BODY and TEXT. A message with no transfer encoding and no
  encoded word is matched in its raw octets, so those go in whole; a message
  with either is matched in its decoded header and text parts (RFC 2045 §6
  transfer encodings, charsets), so those do; a raw 8-bit message in both.

Hostile input is bounded: a message above :data:`MAX_DECODED_OCTETS` is not
parsed at all, and a column above :data:`MAX_INDEXED_CHARS` is cut; either
way the message is marked incomplete and every search reads it.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailstead.proto.imap.search_match import (
    _ADDRESS_FIELDS,
    address_text,
    body_offset,
    decode_bytes,
    decode_header_value,
    decode_message,
    parse_fields,
)

MAX_DECODED_OCTETS = 16 << 20
"""Messages larger than this (CRLF octets) are not decoded for the index:
each search reads them instead, as before there was an index."""
MAX_INDEXED_CHARS = 1 << 20
"""Characters of one column of one message that go into the index."""


@dataclass(frozen=True, slots=True)
class IndexedText:
    """What the index keeps of one message; ``complete`` False: search it by reading."""

    fields: str
    text: str
    complete: bool


def indexed_text(message: bytes) -> IndexedText:
    """The columns of ``message`` (its bytes with CRLF line ends, as SEARCH reads them)."""
    if len(message) > MAX_DECODED_OCTETS:
        return IndexedText("", "", complete=False)
    fields = _fields_text(message)
    lowered = message.lower()
    # The same test as the matcher's fast path (search_match._text_matcher).
    encoded = b"=?" in lowered or b"base64" in lowered or b"quoted-printable" in lowered
    pieces = []
    if not encoded:
        pieces.append(decode_bytes(lowered, None))
    if encoded or not lowered.isascii():
        header, body = decode_message(message)
        pieces += (header, body)
    text = "\n".join(pieces)
    complete = len(fields) <= MAX_INDEXED_CHARS and len(text) <= MAX_INDEXED_CHARS
    return IndexedText(
        _storable(fields[:MAX_INDEXED_CHARS]), _storable(text[:MAX_INDEXED_CHARS]), complete
    )


def _fields_text(message: bytes) -> str:
    lines = []
    for name, values in parse_fields(message[: body_offset(message)]).items():
        for value in values:
            decoded = decode_header_value(value)
            lines.append(decoded.casefold())
            if value.isascii() and decoded != value.decode("ascii"):
                lines.append(value.decode("ascii").lower())  # the matcher's raw look
            if name in _ADDRESS_FIELDS:
                lines.append(address_text(value).casefold())
    return "\n".join(lines)


def _storable(text: str) -> str:
    """``text`` without lone surrogates, which SQLite cannot store as UTF-8.

    A needle never holds one (it is decoded UTF-8), so replacing them loses
    no match.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text
