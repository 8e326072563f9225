"""Building a message from its parts: the headers and a text and/or HTML body.

From, To, Subject, Date, a Message-ID in the sender's domain, and a text
part, an HTML part or both as ``multipart/alternative``. Bodies use 7-bit
transfer encodings, so a remote server needs no 8BITMIME; only non-ASCII
addresses need SMTPUTF8 (RFC 6531).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy as email_policy
from email.message import EmailMessage
from email.utils import format_datetime, localtime, make_msgid

from mailstead.addresses import AddressError, normalize_domain, split_address
from mailstead.proto.smtp.address import PathError, validate_mailbox

__all__ = ["Body", "ComposeError", "build_message", "check_addresses"]


class ComposeError(Exception):
    """The message cannot be built as asked; the text is one line for the sender."""


@dataclass(frozen=True, slots=True)
class Body:
    """The text and/or HTML content of a message to build (at least one of them)."""

    text: str | None = None
    html: str | None = None


def build_message(
    sender: str,
    recipients: Sequence[str],
    subject: str | None,
    body: Body,
    *,
    now: float | None = None,
) -> bytes:
    """The message as it goes on the wire: CRLF line endings, 7-bit bodies.

    Headers use RFC 2047 encoded words for non-ASCII text, unless an address
    is non-ASCII: then the message needs SMTPUTF8 anyway and headers are
    UTF-8 (RFC 6532).
    """
    if body.text is None and body.html is None:
        raise ComposeError("give a body: --text, --html or --template")
    check_addresses(sender, recipients)
    utf8 = not all(a.isascii() for a in (sender, *recipients))
    base = email_policy.SMTPUTF8 if utf8 else email_policy.SMTP
    # 7bit: non-ASCII bodies become quoted-printable or base64, so any
    # server takes them, 8BITMIME or not (RFC 6152).
    policy = base.clone(cte_type="7bit")
    _, domain = split_address(sender)
    msg = EmailMessage(policy=policy)
    try:
        msg["From"] = sender
        msg["To"] = ", ".join(recipients)
        if subject is not None:
            msg["Subject"] = subject
        when = localtime() if now is None else localtime(datetime.fromtimestamp(now, UTC))
        msg["Date"] = format_datetime(when)
        msg["Message-ID"] = make_msgid(domain=_msgid_domain(domain))
    except (ValueError, TypeError) as exc:
        # CR/LF in --subject: a header must not be able to add another.
        raise ComposeError(f"bad header: {exc}") from None
    if body.text is not None:
        msg.set_content(_crlf_free(body.text), subtype="plain")
        if body.html is not None:
            msg.add_alternative(_crlf_free(body.html), subtype="html")
            for part in msg.iter_parts():
                del part["MIME-Version"]  # only the top level carries it (RFC 2045 §4)
    elif body.html is not None:
        msg.set_content(_crlf_free(body.html), subtype="html")
    content = msg.as_bytes()
    return content if content.endswith(b"\r\n") else content + b"\r\n"


def _msgid_domain(domain: str) -> str:
    try:
        return normalize_domain(domain)
    except AddressError:
        raise ComposeError(f"bad sender domain {domain!r}") from None


def _crlf_free(text: str) -> str:
    # The email package writes CRLF itself; a CR of our own would double it.
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _check_syntax(address: str, what: str) -> None:
    try:
        validate_mailbox(address, utf8=True, enhanced="5.1.3")
    except PathError as exc:
        shown = address.encode("unicode_escape").decode("ascii")
        raise ComposeError(f"{shown}: bad {what} address: {exc.text}") from None


def check_addresses(sender: str, recipients: Sequence[str]) -> None:
    """RFC 5321 §4.1.2 syntax (RFC 6531 UTF-8 allowed) of the envelope, or ComposeError."""
    _check_syntax(sender, "sender")
    for rcpt in recipients:
        _check_syntax(rcpt, "recipient")
