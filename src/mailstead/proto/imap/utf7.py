"""Modified UTF-7, the mailbox name encoding of IMAP4rev1 (RFC 3501 §5.1.3).

Printable US-ASCII (0x20-0x7E) stands for itself, except "&" which is
written "&-". Any other run of characters is "&", the modified BASE64 of
their UTF-16BE form ("," instead of "/", no "=" padding), then "-".

Decoding is strict, so that every name has exactly one spelling: a
printable ASCII character that was encoded, two encoded runs side by side,
non-zero padding bits, a bad BASE64 length or a lone surrogate are all
``ValueError`` (RFC 3501 §5.1.3: "&" must be "&-", printable US-ASCII
"MUST" represent itself, and runs are as long as possible).
"""

from __future__ import annotations

import base64
import re

_BASE64 = re.compile(r"[A-Za-z0-9+,]+")


def _printable(ch: str) -> bool:
    return "\x20" <= ch <= "\x7e"


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii").rstrip("=").replace("/", ",")


def encode_mutf7(name: str) -> str:
    """``name`` in modified UTF-7; ``ValueError`` for a lone surrogate."""
    if name.isascii() and name.isprintable() and "&" not in name:
        return name  # the usual name, spelled as it is (LIST of 200 folders asks often)
    out: list[str] = []
    run: list[str] = []

    def flush() -> None:
        if run:
            out.append("&" + _b64("".join(run).encode("utf-16-be")) + "-")
            run.clear()

    for ch in name:
        if _printable(ch):
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            run.append(ch)
    flush()
    return "".join(out)


def decode_mutf7(text: str) -> str:
    """The name ``text`` spells in modified UTF-7; ``ValueError`` unless canonical."""
    if text.isascii() and text.isprintable() and "&" not in text:
        return text
    out: list[str] = []
    i = 0
    run_end = -1  # where the last encoded run ended: another may not start there
    while i < len(text):
        ch = text[i]
        if not _printable(ch):
            raise ValueError("modified UTF-7 holds printable US-ASCII only")
        if ch != "&":
            out.append(ch)
            i += 1
            continue
        end = text.find("-", i + 1)
        if end < 0:
            raise ValueError("unterminated '&' shift in modified UTF-7")
        chunk = text[i + 1 : end]
        if not chunk:
            out.append("&")  # "&-"
            i = end + 1
            continue
        if i == run_end:
            raise ValueError("adjacent encoded runs in modified UTF-7")
        # 16-bit units in 6-bit digits: 3 digits per unit, 8 per three units.
        if not _BASE64.fullmatch(chunk) or len(chunk) % 8 not in (0, 3, 6):
            raise ValueError("bad modified BASE64 in modified UTF-7")
        raw = base64.b64decode(chunk.replace(",", "/") + "=" * (-len(chunk) % 4))
        if _b64(raw) != chunk:
            raise ValueError("non-zero padding bits in modified UTF-7")
        decoded = raw.decode("utf-16-be")  # strict: a lone surrogate is an error
        if any(_printable(c) for c in decoded):
            raise ValueError("printable US-ASCII must not be encoded in modified UTF-7")
        out.append(decoded)
        i = run_end = end + 1
    return "".join(out)
