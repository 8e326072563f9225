"""Text out of header octets: charsets (RFC 2046 §4.1.2) and encoded words (RFC 2047).

One decoder for every reader of header text: SEARCH matches it, the
message summary shows it. Nothing here raises on malformed input, and
charset labels are looked up only among the codecs Python knows, so a
hostile label neither runs a slow or non-text codec nor grows the codec
module's cache.
"""

from __future__ import annotations

import binascii
import codecs
import encodings
import pkgutil
import re
from functools import lru_cache

__all__ = ["charset_codec", "decode_text", "decode_words", "lenient_base64"]

# RFC 2047 §2: encoded-word = "=?" charset "?" encoding "?" encoded-text "?=".
# Each group stops at "?" or white space, so the scan is linear.
_ENCODED_WORD = re.compile(rb"=\?([^?\s]+)\?([BbQq])\?([^?\s]*)\?=")
_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_B64_JUNK = bytes(b for b in range(256) if b not in _B64_ALPHABET)

# Python codecs that are no mail charset: slow (punycode is quadratic),
# strict-only, or turning escapes into arbitrary code points.
_NOT_CHARSETS = frozenset(("punycode", "idna", "undefined", "unicode-escape", "raw-unicode-escape"))
# Labels that mail gets wrong in one direction, read as their superset the way
# WHATWG Encoding §4.2 reads them on the web.
_SUPERSETS = {"ascii": "utf-8", "iso8859-1": "cp1252"}
# Every name Python's codec search could resolve: looking up anything else
# would leave an entry in the encodings module's cache for each new label.
_KNOWN_LABELS = frozenset(
    (
        *encodings.aliases.aliases,
        *encodings.aliases.aliases.values(),
        *(m.name for m in pkgutil.iter_modules(encodings.__path__)),
    )
)


@lru_cache(maxsize=64)
def charset_codec(label: str) -> str | None:
    """The Python codec for a MIME charset label, or None when there is none to use."""
    key = encodings.normalize_encoding(label.lower())
    if len(key) > 40 or (key not in _KNOWN_LABELS and key.replace(".", "_") not in _KNOWN_LABELS):
        return None
    try:
        info = codecs.lookup(key)
    except LookupError:
        return None
    if not getattr(info, "_is_text_encoding", True) or info.name in _NOT_CHARSETS:
        return None
    return _SUPERSETS.get(info.name, info.name)


def decode_text(
    octets: bytes, label: str | None, final: bool = True, *, latin1: bool = False
) -> str:
    """``octets`` in charset ``label``; U+FFFD for what does not decode.

    Without a usable label the octets are UTF-8 (RFC 6532 §3.2); ``latin1``:
    octets that are not UTF-8 are read as ISO-8859-1 instead, so that a
    search still finds a word in an unlabelled 8-bit header. ``final`` False
    decodes a prefix: a character cut at its end is left out.
    """
    codec = charset_codec(label) if label else None
    if codec is None and latin1:
        try:
            return octets.decode("utf-8")
        except UnicodeDecodeError:
            return octets.decode("latin-1")
    try:
        return codecs.getincrementaldecoder(codec or "utf-8")(errors="replace").decode(
            octets, final
        )
    except (UnicodeError, LookupError, ValueError, TypeError):
        return octets.decode("utf-8", "replace")


def lenient_base64(data: bytes) -> bytes:
    """Base64 as MUAs read it: stray octets skipped, missing padding forgiven."""
    clean = data.translate(None, _B64_JUNK)
    if len(clean) % 4 == 1:  # a lone sextet holds no whole octet
        clean = clean[:-1]
    try:
        return binascii.a2b_base64(clean + b"=" * (-len(clean) % 4))
    except binascii.Error:  # pragma: no cover - cleaned input always decodes
        return b""


def decode_words(value: bytes, *, latin1: bool = False) -> str:
    """A header value with RFC 2047 encoded words decoded; raw octets as :func:`decode_text`.

    Adjacent words in one charset are joined before decoding, so a character
    split across two words survives; the white space between adjacent words
    is dropped (RFC 2047 §6.2).
    """
    pieces: list[tuple[str | None, bytes]] = []  # (charset, octets); None: raw text
    pos = 0
    for m in _ENCODED_WORD.finditer(value):
        between = value[pos : m.start()]
        if between and not (pieces and pieces[-1][0] is not None and not between.strip()):
            pieces.append((None, between))
        # RFC 2231 §5: charset*language
        charset = m[1].split(b"*", 1)[0].decode("ascii", "replace").lower()
        # RFC 2047 §4.2: in Q, "_" is a space and "=XX" an octet.
        octets = lenient_base64(m[3]) if m[2] in b"Bb" else binascii.a2b_qp(m[3], header=True)
        if pieces and pieces[-1][0] == charset:
            pieces[-1] = (charset, pieces[-1][1] + octets)
        else:
            pieces.append((charset, octets))
        pos = m.end()
    if pos < len(value):
        pieces.append((None, value[pos:]))
    return "".join(decode_text(octets, charset, latin1=latin1) for charset, octets in pieces)
