"""Delivery status notifications: the bounce and the delay warning (RFC 3464).

:func:`build_dsn` turns the envelope of a queued message and a report per
recipient into a complete ``multipart/report`` message (bytes, CRLF line
endings) addressed to the envelope sender, ready to be queued with the null
reverse-path (``MAIL FROM:<>``, RFC 5321 §4.5.5) — so nobody ever answers a
DSN with another DSN. It reads no clock and does no I/O: ``now`` is passed in.

The policy helpers say *whether* to send one: :func:`is_bounce` (never a DSN
for a message with the null sender) and :func:`should_notify` (the
submitter's RFC 3461 NOTIFY choice, or the default: failures and delays).

Every value that reaches a header comes from somewhere else — the remote
server's reply text above all, and the submitter's ENVID and ORCPT — so each
one is cleaned of control characters (CR and LF included, by
:func:`mailstead.peertext.header_text`) and folded here; nothing a peer sends
can add a header field or a MIME part to the report. See
docs/specifications.md (RFC 3461, 3463, 3464, 3834, 6522, 6533).
"""

from __future__ import annotations

import hashlib
import re
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Literal

from mailstead.peertext import header_text
from mailstead.proto.smtp.replies import Reply

__all__ = [
    "DEFAULT_MAX_ORIGINAL",
    "DSN_SENDER",
    "EXPIRED_STATUS",
    "DsnAction",
    "DsnKind",
    "OriginalEnvelope",
    "RecipientReport",
    "build_dsn",
    "is_bounce",
    "should_notify",
    "smtp_diagnostic",
    "status_from_reply",
]

#: The kind of report: the three RFC 3461 §4.1 NOTIFY conditions.
DsnKind = Literal["failed", "delayed", "delivered"]
#: RFC 3464 §2.3.3 action-value.
DsnAction = Literal["failed", "delayed", "delivered", "relayed", "expanded"]

#: Envelope sender of every DSN: the null reverse-path (RFC 5321 §4.5.5,
#: RFC 3461 §6.1), so a DSN that cannot be delivered is dropped, not bounced.
DSN_SENDER = ""

#: Largest original returned in full; a bigger one comes back as its header
#: section only (text/rfc822-headers), as Postfix does past bounce_size_limit.
DEFAULT_MAX_ORIGINAL = 1024 * 1024

#: RFC 3463 §3.5 "Delivery time expired": the status of a recipient whose
#: message outlived max_lifetime without a more specific error.
EXPIRED_STATUS = "4.4.7"

_KINDS: tuple[str, ...] = ("failed", "delayed", "delivered")
_ACTIONS: tuple[str, ...] = ("failed", "delayed", "delivered", "relayed", "expanded")
# RFC 3463 §2: class "." subject "." detail, subject and detail 1-3 digits.
_STATUS_RE = re.compile(r"\A[245]\.[0-9]{1,3}\.[0-9]{1,3}\Z")
# A single header value is cut at this many characters before folding.
_MAX_VALUE = 1000
# Folding aims at 78 characters per line (RFC 5322 §2.1.1); a word longer
# than _MAX_WORD is split so that no line passes the 998 hard limit.
_FOLD_AT = 78
_MAX_WORD = 900

_SUBJECTS = {
    "failed": "Undelivered Mail Returned to Sender",
    "delayed": "Delayed Mail (still being retried)",
    "delivered": "Successful Mail Delivery Report",
}


@dataclass(frozen=True, slots=True)
class OriginalEnvelope:
    """The queued message a DSN reports on: its envelope as the submitter gave it.

    ``envid`` and ``ret`` are the RFC 3461 §4.4 ENVID and §4.3 RET (``FULL``
    or ``HDRS``) parameters of MAIL FROM, None when not given.
    """

    sender: str
    queue_id: str
    received_at: float
    envid: str | None = None
    ret: str | None = None


@dataclass(frozen=True, slots=True)
class RecipientReport:
    """The per-recipient fields of one DSN (RFC 3464 §2.3).

    ``original_recipient`` is the ORCPT parameter as the queue stores it
    (``"rfc822;user@example.org"``, xtext already decoded);
    ``diagnostic_code`` is ``"type; text"``, e.g. from :func:`smtp_diagnostic`;
    ``remote_mta`` is the host name (or ``[address]``) of the server that
    answered; times are Unix seconds.
    """

    final_recipient: str
    action: DsnAction
    status: str
    original_recipient: str | None = None
    remote_mta: str | None = None
    diagnostic_code: str | None = None
    last_attempt: float | None = None
    will_retry_until: float | None = None


# --------------------------------------------------------------------------- policy


def is_bounce(sender: str) -> bool:
    """True for the null reverse-path: a DSN (or other bounce) must not be answered.

    RFC 5321 §4.5.5 and RFC 3461 §6.1: no notification is ever sent for a
    message whose envelope sender is ``<>``.
    """
    return sender.strip() in ("", "<>")


def should_notify(kind: DsnKind, notify: Sequence[str] | None) -> bool:
    """Whether the submitter asked for a ``kind`` DSN (RFC 3461 §4.1).

    ``notify`` is the NOTIFY parameter of the recipient's RCPT TO, or None
    if it was not given. Without one, failures and delays are reported and
    successes are not (RFC 3461 §4.1 allows ``FAILURE`` or ``FAILURE,DELAY``
    as the default; we take the latter, as Postfix does). ``NEVER`` turns
    every report off.
    """
    if not notify:
        return kind in ("failed", "delayed")
    wanted = {n.strip().upper() for n in notify}
    if "NEVER" in wanted:
        return False
    condition = {"failed": "FAILURE", "delayed": "DELAY", "delivered": "SUCCESS"}[kind]
    return condition in wanted


def status_from_reply(reply: Reply) -> str:
    """The RFC 3463 status for an SMTP reply: its enhanced code, or ``X.0.0``.

    RFC 3463 §3.1: when the server gave no (or an inconsistent) enhanced
    code, the class of the basic code with "other undefined status".
    """
    cls = str(reply.code // 100)
    if _STATUS_RE.match(reply.enhanced) and reply.enhanced[0] == cls:
        return reply.enhanced
    return f"{cls}.0.0" if cls in ("2", "4", "5") else "5.0.0"


def smtp_diagnostic(reply: Reply) -> str:
    """``Diagnostic-Code`` value for a remote reply: ``smtp; 550 5.1.1 text``.

    RFC 3464 §2.3.6 with diagnostic-type ``smtp`` (RFC 3464 §9.3); the
    lines of a multi-line reply are joined with spaces.
    """
    prefix = f"{reply.code} {reply.enhanced}".strip()
    text = " ".join(line.strip() for line in reply.lines if line.strip())
    return f"smtp; {prefix} {text}".rstrip()


def local_diagnostic(reply: Reply) -> str:
    """``Diagnostic-Code`` value for a failure this server decided: ``X-Mailstead; text``.

    No remote host answered (the DNS had no mail host, a connection was
    refused): RFC 3464 §2.3.6 lets the reporting MTA name a diagnostic-type
    of its own, as Postfix does with ``X-Postfix``; the text is the reason
    in words ("Host or domain name not found. Name service error for …").
    """
    text = " ".join(line.strip() for line in reply.lines if line.strip())
    return f"X-Mailstead; {text or status_from_reply(reply)}"


# --------------------------------------------------------------------------- building


def build_dsn(
    kind: DsnKind,
    *,
    reporting_mta: str,
    original_envelope: OriginalEnvelope,
    recipients: Sequence[RecipientReport],
    original_message: bytes,
    now: float,
    max_original: int = DEFAULT_MAX_ORIGINAL,
) -> bytes:
    """A complete RFC 3464 DSN message about ``recipients``, CRLF line endings.

    Structure (RFC 6522 §3, RFC 3464 §2): ``multipart/report;
    report-type=delivery-status`` with a human-readable ``text/plain`` part,
    a ``message/delivery-status`` part and the original message. For a
    ``failed`` report the original comes back whole (``message/rfc822``)
    unless the sender said RET=HDRS (RFC 3461 §4.3) or it is larger than
    ``max_original``; then, and always for ``delayed`` and ``delivered``
    reports, only its header section is returned (``text/rfc822-headers``).

    Raises ValueError for a null envelope sender (:func:`is_bounce`), no
    recipients, an unknown ``kind`` or action, or a malformed status code.
    """
    if kind not in _KINDS:
        raise ValueError(f"unknown DSN kind {kind!r}")
    env = original_envelope
    if is_bounce(env.sender):
        raise ValueError("no DSN is ever sent to the null reverse-path (RFC 3461 §6.1)")
    if not recipients:
        raise ValueError("a DSN reports on at least one recipient")
    for r in recipients:
        if r.action not in _ACTIONS:
            raise ValueError(f"unknown DSN action {r.action!r}")
        if not _STATUS_RE.match(r.status):
            raise ValueError(f"malformed RFC 3463 status {r.status!r}")

    host = _clean(reporting_mta) or "localhost"
    sender = _clean(env.sender)

    human = _human_text(kind, host, env, recipients, now)
    human_8bit = not human.isascii()
    status = _delivery_status(host, env, recipients)

    headers_only = kind != "failed" or env.ret == "HDRS" or len(original_message) > max_original
    original = _original_part(original_message, headers_only=headers_only, limit=max_original)

    bodies = [human.encode(), status, original[1]]
    boundary = _boundary(env.queue_id, now, bodies)
    eight_bit = human_8bit or original[2]

    out: list[str | bytes] = [
        _header("From", f"Mail Delivery System <MAILER-DAEMON@{host}>"),
        _header("To", f"<{sender}>"),
        _header("Subject", _SUBJECTS[kind]),
        _header("Date", _date(now)),
        _header("Message-ID", f"<{_message_id_left(env.queue_id, kind, now)}@{host}>"),
        # RFC 3834 §5: an automatic response; RFC 3464 §5 wants DSNs to be
        # recognisable so that they are never answered automatically.
        _header("Auto-Submitted", "auto-replied"),
        _header("MIME-Version", "1.0"),
        # RFC 6522 §3: multipart/report with the report-type parameter.
        "Content-Type: multipart/report; report-type=delivery-status;\r\n"
        f'\tboundary="{boundary}"\r\n',
    ]
    if eight_bit:
        out.append("Content-Transfer-Encoding: 8bit\r\n")
    out.append("\r\nThis is a MIME-encapsulated message.\r\n\r\n")

    # Part 1: for people (RFC 6522 §3, first part).
    out.append(f"--{boundary}\r\n")
    out.append("Content-Description: Notification\r\n")
    if human_8bit:
        out.append("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n")
    else:
        out.append("Content-Type: text/plain; charset=us-ascii\r\n")
    out.append("\r\n")
    out.append(human)

    # Part 2: for programs (RFC 3464 §2, message/delivery-status).
    out.append(f"\r\n--{boundary}\r\n")
    out.append("Content-Description: Delivery report\r\n")
    out.append("Content-Type: message/delivery-status\r\n\r\n")
    out.append(status)

    # Part 3: the original, or its header section (RFC 6522 §3, third part).
    out.append(f"\r\n--{boundary}\r\n")
    out.append(original[0])
    out.append("\r\n")
    out.append(original[1])
    out.append(f"\r\n--{boundary}--\r\n")
    return b"".join(p.encode() if isinstance(p, str) else p for p in out)


def _delivery_status(
    host: str, env: OriginalEnvelope, recipients: Sequence[RecipientReport]
) -> bytes:
    """The message/delivery-status body: per-message fields, then one block per recipient."""
    # RFC 3464 §2.2, in the order of its grammar.
    fields: list[str] = []
    if env.envid is not None:
        fields.append(_header("Original-Envelope-Id", _ascii(env.envid)))  # §2.2.1
    fields.append(_header("Reporting-MTA", f"dns; {_ascii(host)}"))  # §2.2.2
    fields.append(_header("X-Mailstead-Queue-ID", _ascii(env.queue_id)))  # §2.4 extension
    fields.append(_header("X-Mailstead-Sender", _address_type(env.sender)))
    fields.append(_header("Arrival-Date", _date(env.received_at)))  # §2.2.5
    blocks = ["".join(fields)]
    for r in recipients:
        # RFC 3464 §2.3, in the order of its grammar.
        f: list[str] = []
        if r.original_recipient:
            f.append(_header("Original-Recipient", _orcpt(r.original_recipient)))  # §2.3.1
        f.append(_header("Final-Recipient", _address_type(r.final_recipient)))  # §2.3.2
        f.append(_header("Action", r.action))  # §2.3.3
        f.append(_header("Status", r.status))  # §2.3.4, RFC 3463
        if r.remote_mta:
            f.append(_header("Remote-MTA", f"dns; {_ascii(r.remote_mta)}"))  # §2.3.5
        if r.diagnostic_code:
            f.append(_header("Diagnostic-Code", _diagnostic(r.diagnostic_code)))  # §2.3.6
        if r.last_attempt is not None:
            f.append(_header("Last-Attempt-Date", _date(r.last_attempt)))  # §2.3.7
        if r.will_retry_until is not None and r.action == "delayed":
            # §2.3.8: only meaningful for "delayed".
            f.append(_header("Will-Retry-Until", _date(r.will_retry_until)))
        blocks.append("".join(f))
    return "\r\n".join(blocks).encode("ascii")


def _original_part(message: bytes, *, headers_only: bool, limit: int) -> tuple[str, bytes, bool]:
    """(MIME headers, body, is 8bit) of the returned original (RFC 6522 §3, RFC 6533 §6)."""
    if not headers_only:
        body = message if message.endswith(b"\r\n") or not message else message + b"\r\n"
        eight_bit = not body.isascii()
        # RFC 6533 §6.5: a message with UTF-8 header fields is message/global.
        ctype = "message/global" if eight_bit and not _header_section(body).isascii() else None
        head = (
            "Content-Description: Undelivered Message\r\n"
            f"Content-Type: {ctype or 'message/rfc822'}\r\n"
        )
        if eight_bit:
            head += "Content-Transfer-Encoding: 8bit\r\n"
        return head, body, eight_bit
    body = _header_section(message)
    if len(body) > limit:
        # Cut at a line boundary so no header field is left half-written.
        cut = body.rfind(b"\r\n", 0, limit)
        body = body[: cut + 2] if cut >= 0 else b""
    eight_bit = not body.isascii()
    # RFC 6522 §4 text/rfc822-headers; RFC 6533 §6.3 message/global-headers for UTF-8.
    ctype = "message/global-headers" if eight_bit else "text/rfc822-headers"
    head = f"Content-Description: Undelivered Message Headers\r\nContent-Type: {ctype}\r\n"
    if eight_bit:
        head += "Content-Transfer-Encoding: 8bit\r\n"
    return head, body, eight_bit


def _header_section(message: bytes) -> bytes:
    """The header fields of ``message`` (up to the empty line), CRLF-terminated."""
    if message.startswith((b"\r\n", b"\n")):
        return b""
    end = message.find(b"\r\n\r\n")
    if end >= 0:
        return message[: end + 2]
    end = message.find(b"\n\n")
    if end >= 0:
        return message[: end + 1].replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return message if message.endswith(b"\r\n") or not message else message + b"\r\n"


def _human_text(
    kind: DsnKind,
    host: str,
    env: OriginalEnvelope,
    recipients: Sequence[RecipientReport],
    now: float,
) -> str:
    lines = [f"This is the mail system at host {host}.", ""]
    if kind == "failed":
        lines += _wrap(
            "Your message could not be delivered to one or more recipients. "
            "The reason for each is given below; the message, or its header "
            "section, is attached."
        )
        lines += ["", "For help, write to the postmaster of this host and include this report."]
    elif kind == "delayed":
        hours = max(0.0, now - env.received_at) / 3600
        lines += _wrap(
            "THIS IS A WARNING ONLY. YOU DO NOT NEED TO RESEND YOUR MESSAGE. "
            f"Your message could not be delivered for {hours:.1f} hours. "
            "It is still in the queue and the mail system will keep trying."
        )
    else:
        lines += _wrap("Your message was delivered to the recipients below, as you asked.")
    lines.append("")
    for r in recipients:
        what = _clean(r.diagnostic_code or "").partition(";")[2].strip() or r.status
        if r.remote_mta:
            what = f"host {_clean(r.remote_mta)} said: {what}"
        lines += _wrap(f"<{_clean(r.final_recipient)}>: {what}", indent="    ")
        if r.action == "delayed" and r.will_retry_until is not None:
            lines += _wrap(
                f"Retrying until {_date(r.will_retry_until)}.", indent="    ", first=True
            )
        lines.append("")
    return "\r\n".join(lines) + "\r\n"


# --------------------------------------------------------------------------- field values


def _clean(value: str) -> str:
    """``value`` on one line: every run of control characters becomes one space."""
    return header_text(value).strip()[:_MAX_VALUE]


def _ascii(value: str) -> str:
    """:func:`_clean`, and non-ASCII replaced by ``?`` (message/delivery-status is ASCII)."""
    return "".join(c if c.isascii() else "?" for c in _clean(value))


def _unitext(address: str) -> str:
    r"""Non-ASCII characters as ``\x{HEX}`` (RFC 6533 §3 EmbeddedUnicodeChar)."""
    return "".join(c if c.isascii() else f"\\x{{{ord(c):X}}}" for c in address)


def _address_type(address: str) -> str:
    """``rfc822; a@b`` (RFC 3464 §2.3.2), or ``utf-8; …`` for a non-ASCII address.

    RFC 6533 §3: the utf-8 address type; inside the ASCII-only
    message/delivery-status its non-ASCII characters are written as
    ``\\x{HEX}`` (utf-8-addr-unitext).
    """
    address = _clean(address)
    if address.isascii():
        return f"rfc822; {address}"
    return f"utf-8; {_unitext(address)}"


def _orcpt(orcpt: str) -> str:
    """The ORCPT parameter (``type;address``) as an Original-Recipient value (§2.3.1)."""
    addr_type, semi, address = _clean(orcpt).partition(";")
    addr_type, address = addr_type.strip(), address.strip()
    if not semi or not addr_type:
        return _address_type(orcpt)
    if addr_type.lower() == "rfc822" and not address.isascii():
        addr_type = "utf-8"  # RFC 6533 §3
    return f"{_ascii(addr_type)}; {_unitext(address)}"


def _diagnostic(value: str) -> str:
    """``type; text`` (RFC 3464 §2.3.6), ASCII; a value without a type gets ``X-Mailstead``."""
    value = _ascii(value)
    diag_type, semi, text = value.partition(";")
    if not semi or not diag_type.strip() or " " in diag_type.strip():
        return f"X-Mailstead; {value}"
    return f"{diag_type.strip()}; {text.strip()}"


def _date(when: float) -> str:
    """RFC 5322 §3.3 date-time in UTC (RFC 3464 §2.2.5 uses this format)."""
    return format_datetime(datetime.fromtimestamp(when, UTC))


def _header(name: str, value: str) -> str:
    """``Name: value`` folded at spaces (RFC 5322 §2.2.3), CRLF-terminated.

    ``value`` is cleaned first, so no CR or LF from it reaches the output
    except the folds made here, each followed by a space.
    """
    words: list[str] = []
    for word in _clean(value).split(" "):
        if not word:
            continue
        while len(word) > _MAX_WORD:
            words.append(word[:_MAX_WORD])
            word = word[_MAX_WORD:]
        words.append(word)
    lines: list[str] = []
    current = f"{name}:"
    has_word = False  # current holds at least one word (never fold before the first)
    for word in words:
        if has_word and len(current) + 1 + len(word) > _FOLD_AT:
            lines.append(current)
            current = ""
        current += f" {word}"
        has_word = True
    lines.append(current)
    return "\r\n".join(lines) + "\r\n"


def _wrap(text: str, indent: str = "", *, first: bool = False) -> list[str]:
    """Human-readable text wrapped at 76 columns, long words broken (no line over 998).

    Continuation lines (and the first too with ``first``) are indented by
    ``indent``, so text quoted from a remote server never starts a line.
    """
    lead = indent if first else ""
    wrapped = textwrap.wrap(_clean(text), width=76, initial_indent=lead, subsequent_indent=indent)
    return wrapped or [""]


def _message_id_left(queue_id: str, kind: str, now: float) -> str:
    safe = re.sub(r"[^A-Za-z0-9]", "", queue_id)[:64] or "dsn"
    return f"{int(now * 1000)}.{safe}.{kind}"


def _boundary(queue_id: str, now: float, bodies: Sequence[bytes]) -> str:
    """A boundary that occurs in no part (RFC 2046 §5.1.1), reproducible for tests."""
    seed = f"{queue_id}/{now}".encode()
    for counter in range(1000):
        token = hashlib.sha256(seed + counter.to_bytes(4, "big")).hexdigest()[:24]
        boundary = f"=_mailstead_{token}"
        marker = f"--{boundary}".encode()
        if not any(marker in body for body in bodies):
            return boundary
    raise RuntimeError("no free MIME boundary")  # pragma: no cover - 1000 hash collisions
