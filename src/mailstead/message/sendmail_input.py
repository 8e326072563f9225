"""A message handed to ``sendmail`` on standard input, made ready for the queue.

What cron, mailx, git send-email and PHP's ``mail()`` expect of a
``sendmail`` (Postfix's and Sendmail's behaviour where they agree):

* Line endings become CRLF (RFC 5322 §2.3); a leading mbox ``From `` line
  is dropped. Unless ``-i``/``-oi`` was given, a line with a single dot ends
  the input, as in Sendmail.
* ``-t`` takes the recipients from To, Cc and Bcc (from Resent-To,
  Resent-Cc and Resent-Bcc when the message has any Resent- recipient,
  RFC 5322 §3.6.6), in addition to those on the command line, as Postfix does.
* Bcc and Resent-Bcc are always removed (RFC 5322 §3.6.3: their recipients
  must not be shown to the others).
* From, Date and Message-ID are added when missing (RFC 5322 §3.6: From and
  Date are required; §3.6.4: Message-ID should be present).

Everything here works on bytes in memory; reading standard input is the
command line's.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, formataddr, getaddresses, localtime, make_msgid

__all__ = ["InputError", "Prepared", "prepare", "to_crlf"]

# RFC 5322 §2.2: a field name is printable US-ASCII but the colon.
_FIELD_RE = re.compile(rb"\A[\x21-\x39\x3b-\x7e]+:")
_RECIPIENT_FIELDS = (b"to", b"cc", b"bcc")
_RESENT_FIELDS = (b"resent-to", b"resent-cc", b"resent-bcc")
_HIDDEN_FIELDS = (b"bcc", b"resent-bcc")


class InputError(Exception):
    """The input is not a message we can send (one line, EX_DATAERR)."""


@dataclass(frozen=True, slots=True)
class Prepared:
    """The message as it goes into the queue (CRLF) and the recipients its headers named."""

    content: bytes
    header_recipients: tuple[str, ...]


def to_crlf(data: bytes, *, dot_ends: bool) -> bytes:
    """``data`` with CRLF line endings, cut at a lone-dot line when ``dot_ends``."""
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the final line ending, not an empty line
    out = []
    for i, line in enumerate(lines):
        line = line.removesuffix(b"\r")
        if dot_ends and line == b".":
            break
        if i == 0 and line.startswith(b"From "):
            continue  # an mbox separator, not a header (Postfix drops it too)
        out.append(line)
    return b"".join(line + b"\r\n" for line in out)


def _fields(content: bytes) -> tuple[list[bytes], bytes, bool]:
    """Header fields (each with its folded lines, CRLF-ended), the body, and
    whether an empty line separated them."""
    fields: list[bytes] = []
    pos = 0
    while pos < len(content):
        end = content.find(b"\r\n", pos) + 2
        line = content[pos:end]
        if line == b"\r\n":
            return fields, content[end:], True
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += line  # RFC 5322 §2.2.3: a folded line continues the field
        elif _FIELD_RE.match(line):
            fields.append(line)
        else:
            return fields, content[pos:], False  # no header section: body from here
        pos = end
    return fields, b"", False


def _name(field: bytes) -> bytes:
    return field.split(b":", 1)[0].strip().lower()


def _addresses(fields: Sequence[bytes], names: Sequence[bytes]) -> list[str]:
    values = [
        f.split(b":", 1)[1].decode("utf-8", "replace").replace("\r\n", "")
        for f in fields
        if _name(f) in names
    ]
    return [address for _, address in getaddresses(values) if address]


def _one_line(text: str) -> str:
    return " ".join(text.split())


def prepare(
    content: bytes,
    *,
    extract: bool,
    sender: str,
    full_name: str | None,
    hostname: str,
    now: float,
) -> Prepared:
    """Make ``content`` (CRLF) ready: recipients taken (``extract``), Bcc removed,
    From/Date/Message-ID added when missing. ``sender`` and ``full_name`` make
    the From field; ``hostname`` the right side of the Message-ID."""
    fields, body, separated = _fields(content)
    names = {_name(f) for f in fields}
    recipients: list[str] = []
    if extract:
        resent = any(n in names for n in _RESENT_FIELDS)
        recipients = _addresses(fields, _RESENT_FIELDS if resent else _RECIPIENT_FIELDS)
    kept = [f for f in fields if _name(f) not in _HIDDEN_FIELDS]
    added = []
    if b"from" not in names:
        try:
            value = formataddr((_one_line(full_name or ""), sender), charset="utf-8")
        except (UnicodeError, ValueError) as exc:
            raise InputError(f"cannot write a From field for {sender!r}: {exc}") from None
        added.append(f"From: {value}")
    if b"date" not in names:
        added.append(f"Date: {format_datetime(localtime(datetime.fromtimestamp(now, UTC)))}")
    if b"message-id" not in names:
        added.append(f"Message-ID: {make_msgid(domain=hostname)}")
    header = b"".join(kept) + b"".join(line.encode("utf-8") + b"\r\n" for line in added)
    if separated or body or added:
        header += b"\r\n"
    return Prepared(header + body, tuple(recipients))
