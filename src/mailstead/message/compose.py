"""Building a message from its parts: the headers and a text and/or HTML body.

From, To, Cc, Subject, Date, a Message-ID in the sender's domain, and a
text part, an HTML part or both as ``multipart/alternative``; the HTML and
the images it refers to by ``cid:`` travel together as ``multipart/related``
(RFC 2387); attached files make the whole ``multipart/mixed`` (RFC 2046
§5.1.3) with ``Content-Disposition: attachment`` (RFC 2183). Bcc recipients
are never written in the message (RFC 5322 §3.6.3); they are only in the
envelope, which the caller makes. Bodies use 7-bit
transfer encodings, so a remote server needs no 8BITMIME; only non-ASCII
addresses need SMTPUTF8 (RFC 6531).
"""

from __future__ import annotations

import mimetypes
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy as email_policy
from email.message import EmailMessage
from email.utils import format_datetime, localtime, make_msgid
from pathlib import Path

from mailstead.addresses import AddressError, normalize_domain, split_address
from mailstead.proto.smtp.address import PathError, validate_mailbox

__all__ = [
    "Attachment",
    "Body",
    "ComposeError",
    "Related",
    "attachment_from_file",
    "build_message",
    "check_addresses",
]


class ComposeError(Exception):
    """The message cannot be built as asked; the text is one line for the sender."""


@dataclass(frozen=True, slots=True)
class Related:
    """A part the HTML refers to by a ``cid:`` URL (RFC 2392), such as an inline image."""

    content_id: str  # an addr-spec, without the angle brackets
    content: bytes
    maintype: str
    subtype: str
    filename: str


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file that travels with the message as ``Content-Disposition: attachment``."""

    filename: str
    content: bytes
    maintype: str
    subtype: str


def attachment_from_file(path: Path) -> Attachment:
    """``path`` as an attachment; its MIME type guessed from its name
    (``application/octet-stream`` when the name says nothing)."""
    guessed, encoding = mimetypes.guess_type(path.name)
    if guessed is None or encoding is not None:
        # A .gz or .bz2 is sent as the bytes it is, not as what it unpacks to.
        guessed = "application/octet-stream"
    maintype, subtype = guessed.split("/", 1)
    return Attachment(path.name, path.read_bytes(), maintype, subtype)


@dataclass(frozen=True, slots=True)
class Body:
    """The text and/or HTML content of a message to build (at least one of them),
    and the parts the HTML refers to."""

    text: str | None = None
    html: str | None = None
    related: tuple[Related, ...] = ()


def build_message(
    sender: str,
    recipients: Sequence[str],
    subject: str | None,
    body: Body,
    *,
    cc: Sequence[str] = (),
    attachments: Sequence[Attachment] = (),
    now: float | None = None,
) -> bytes:
    """The message as it goes on the wire: CRLF line endings, 7-bit bodies.

    Headers use RFC 2047 encoded words for non-ASCII text, unless an address
    is non-ASCII: then the message needs SMTPUTF8 anyway and headers are
    UTF-8 (RFC 6532).
    """
    if body.text is None and body.html is None:
        raise ComposeError("give a body: --text, --html or --template")
    check_addresses(sender, [*recipients, *cc])
    utf8 = not all(a.isascii() for a in (sender, *recipients, *cc))
    base = email_policy.SMTPUTF8 if utf8 else email_policy.SMTP
    # 7bit: non-ASCII bodies become quoted-printable or base64, so any
    # server takes them, 8BITMIME or not (RFC 6152).
    policy = base.clone(cte_type="7bit")
    _, domain = split_address(sender)
    msg = EmailMessage(policy=policy)
    try:
        msg["From"] = sender
        if recipients:
            msg["To"] = ", ".join(recipients)
        if cc:
            msg["Cc"] = ", ".join(cc)
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
    elif body.html is not None:
        msg.set_content(_crlf_free(body.html), subtype="html")
    if body.html is not None and body.related:
        _add_related(msg, body.related)
    for attached in attachments:
        msg.add_attachment(
            attached.content,
            maintype=attached.maintype,
            subtype=attached.subtype,
            filename=attached.filename,
        )
    for part in msg.walk():
        if part is not msg:
            del part["MIME-Version"]  # only the top level carries it (RFC 2045 §4)
    content = msg.as_bytes()
    return content if content.endswith(b"\r\n") else content + b"\r\n"


def _add_related(msg: EmailMessage, related: Sequence[Related]) -> None:
    html = msg
    for candidate in msg.iter_parts():
        if candidate.get_content_type() == "text/html" and isinstance(candidate, EmailMessage):
            html = candidate
    for part in related:
        html.add_related(
            part.content,
            maintype=part.maintype,
            subtype=part.subtype,
            cid=f"<{part.content_id}>",
            filename=part.filename,
            disposition="inline",
        )
    # RFC 2387 §3.1: the type parameter names the root part's type.
    html.set_param("type", "text/html")


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
