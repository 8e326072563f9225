"""Events the SMTP server protocol yields, named after RFC 5321's nouns."""

from __future__ import annotations

from dataclasses import dataclass

# Re-exported: a session imports the sentinels with its protocol's events.
from mailstead.proto.events import NEED_DATA as NEED_DATA
from mailstead.proto.events import PAUSED as PAUSED
from mailstead.proto.events import Event as Event
from mailstead.proto.sasl import Credentials


@dataclass(frozen=True, slots=True)
class MailParams:
    """ESMTP parameters of MAIL FROM that the server understood."""

    size: int | None = None  # RFC 1870 SIZE=, the client's estimate
    body: str | None = None  # RFC 6152 BODY=7BIT|8BITMIME
    smtputf8: bool = False  # RFC 6531 §3.4
    ret: str | None = None  # RFC 3461 §4.3 RET=FULL|HDRS
    envid: str | None = None  # RFC 3461 §4.4 ENVID=, xtext decoded


@dataclass(frozen=True, slots=True)
class RcptParams:
    """ESMTP parameters of RCPT TO that the server understood (RFC 3461 §4.1, §4.2)."""

    notify: tuple[str, ...] | None = None  # ("NEVER",) or some of SUCCESS/FAILURE/DELAY
    orcpt: str | None = None  # "rfc822;user@example", xtext decoded


@dataclass(frozen=True, slots=True)
class Recipient:
    """A recipient the application accepted for the current transaction."""

    address: str
    params: RcptParams


@dataclass(frozen=True, slots=True)
class Hello(Event):
    """EHLO or HELO; already answered by the protocol."""

    name: str
    extended: bool


@dataclass(frozen=True, slots=True)
class StartTLS(Event):
    """The client asked for TLS and got 220: flush, then call ``tls_started()``."""


@dataclass(frozen=True, slots=True)
class AuthRequest(Event):
    """A finished SASL exchange: verify and call ``auth_result()``."""

    mechanism: str
    credentials: Credentials


@dataclass(frozen=True, slots=True)
class MailFrom(Event):
    """MAIL FROM: answer with ``reply()``; a 2xx starts the transaction."""

    sender: str  # "" is the null reverse-path <>
    params: MailParams


@dataclass(frozen=True, slots=True)
class RcptTo(Event):
    """RCPT TO: answer with ``reply()``; a 2xx adds the recipient."""

    recipient: str  # "postmaster" alone is allowed (RFC 5321 §4.5.1)
    params: RcptParams


@dataclass(frozen=True, slots=True)
class Message(Event):
    """A complete message after DATA or the last BDAT: ``reply()`` 250 once stored."""

    sender: str
    mail_params: MailParams
    recipients: tuple[Recipient, ...]
    content: bytes  # dot-stuffing undone, CRLF line endings


@dataclass(frozen=True, slots=True)
class Reset(Event):
    """RSET; already answered."""


@dataclass(frozen=True, slots=True)
class Closing(Event):
    """The protocol has sent its last reply (221 or 421): flush and close."""

    reason: str
