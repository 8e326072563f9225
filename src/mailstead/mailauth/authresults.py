"""Authentication-Results (RFC 8601): writing ours, removing forged ones.

:func:`header` builds the one field we prepend; :func:`remove_ours` drops
every field already in a message that claims our authserv-id — a sender
could otherwise write ``Authentication-Results: mx.example.test; dmarc=pass``
and have mail clients believe it (RFC 8601 §5).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["from_values", "header", "header_fields", "remove_ours", "value"]

_TOKEN = re.compile(r"[A-Za-z0-9!#$%&'*+\-.^_`{|}~@]+")  # RFC 2045 token, plus "@" (§2.2)
_LINE_LIMIT = 78


def value(text: str) -> str:
    """A property value: as it is when a token, else a quoted-string (RFC 8601 §2.2)."""
    if not (text.isascii() and text.isprintable()):  # printable ASCII: nothing to drop
        text = "".join(ch for ch in text if ch >= " " and ch != "\x7f")
    text = text[:256]
    if text and _TOKEN.fullmatch(text) and text.count("@") <= 1:
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def header(authserv_id: str, results: Sequence[str]) -> bytes:
    """The field (CRLF-terminated, folded one result a line); ``none`` when no results."""
    parts = list(results) or ["none"]
    lines = [f"Authentication-Results: {authserv_id};"]
    for i, part in enumerate(parts):
        lines.append(f"\t{part}" + (";" if i < len(parts) - 1 else ""))
    return ("\r\n".join(lines) + "\r\n").encode("utf-8", "replace")


def _split_header(content: bytes) -> tuple[bytes, bytes]:
    """The header section (with its final CRLF) and the rest (blank line and body)."""
    if content.startswith(b"\r\n"):
        return b"", content
    end = content.find(b"\r\n\r\n")
    if end < 0:
        return content, b""
    return content[: end + 2], content[end + 2 :]


def header_fields(content: bytes) -> list[bytes]:
    """The header fields of ``content`` (CRLF), each with its folded lines and final CRLF."""
    head, _ = _split_header(content)
    fields: list[bytes] = []
    for line in head.split(b"\r\n")[:-1] if head.endswith(b"\r\n") else head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += line + b"\r\n"
        else:
            fields.append(line + b"\r\n")
    return fields


def _authserv_id(field: bytes) -> str:
    _, _, rest = field.partition(b":")
    text = rest.decode("utf-8", "replace")
    # Comments (RFC 5322 CFWS) may surround the id; drop simple ones.
    text = re.sub(r"\([^()]*\)", " ", text)
    ident = text.split(";", 1)[0].strip().split()
    return ident[0].lower().rstrip(".") if ident else ""


def remove_ours(content: bytes, authserv_id: str) -> tuple[bytes, int]:
    """``content`` without the Authentication-Results fields naming ``authserv_id``,
    and how many were removed."""
    head, rest = _split_header(content)
    if b"authentication-results" not in head.lower():
        return content, 0  # most mail carries none: no fields to look at
    ours = authserv_id.lower().rstrip(".")
    kept: list[bytes] = []
    removed = 0
    for field in header_fields(content):
        name = field.split(b":", 1)[0].strip().lower()
        if name == b"authentication-results" and _authserv_id(field) == ours:
            removed += 1
            continue
        kept.append(field)
    if not removed:
        return content, 0
    return b"".join(kept) + rest, removed


def from_values(content: bytes, fields: Sequence[bytes] | None = None) -> list[str]:
    """The values of every From field (unfolded), for DMARC's author check.

    ``fields``: :func:`header_fields` of ``content`` when the caller has them.
    """
    out = []
    for field in header_fields(content) if fields is None else fields:
        name, _, text = field.partition(b":")
        if name.strip().lower() == b"from":
            unfolded = text.replace(b"\r\n", b"").strip()
            out.append(unfolded.decode("utf-8", "replace"))
    return out
