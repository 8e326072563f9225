"""Events and results the SMTP client yields (see :mod:`mailstead.proto.smtp.client`)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from mailstead.proto.smtp.events import Event
from mailstead.proto.smtp.replies import Reply


class Outcome(StrEnum):
    """What became of one recipient."""

    DELIVERED = "delivered"  # 2xx to the end of data: the host took it
    DEFERRED = "deferred"  # 4xx, or the session died: try again later
    FAILED = "failed"  # 5xx: bounce now


def outcome_of(reply: Reply) -> Outcome:
    """2xx delivered, 5xx failed, anything else (4xx, odd codes) deferred."""
    if reply.is_success:
        return Outcome.DELIVERED
    return Outcome.FAILED if 500 <= reply.code < 600 else Outcome.DEFERRED


@dataclass(frozen=True, slots=True)
class RecipientResult:
    """One recipient's outcome and the reply that decided it."""

    address: str
    outcome: Outcome
    reply: Reply
    # The reply came from the host (RFC 3464 Remote-MTA / Diagnostic-Code),
    # not from this client (size, 8BITMIME, SMTPUTF8, TLS, lost connection).
    remote: bool


class ClientEvent(Event):
    """Base of the events only the client yields."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class StartTLSRequested(ClientEvent):
    """The host said 220 to STARTTLS: flush, handshake, then call ``tls_started()``."""


@dataclass(frozen=True, slots=True)
class Ready(ClientEvent):
    """The session is established: ``send_message()`` or ``quit()``."""

    secure: bool
    extensions: frozenset[str]  # EHLO keywords, upper-case; empty after HELO
    max_size: int | None  # RFC 1870 SIZE, None when the host states no limit


@dataclass(frozen=True, slots=True)
class MessageResult(ClientEvent):
    """The end of one ``send_message()``: every recipient's outcome, in order."""

    recipients: tuple[RecipientResult, ...]
    # The reply that decided the message as a whole (refused MAIL, the reply
    # to the end of data, a local refusal, the session's end), or None when
    # each recipient's RCPT reply decided it.
    reply: Reply | None
    # RFC 3461 §5.2.1: without DSN at the host, NOTIFY=SUCCESS asks us for a
    # "relayed" DSN.
    dsn_passed: bool
    # The session was encrypted (STARTTLS) when the message went.
    tls: bool = False


@dataclass(frozen=True, slots=True)
class SessionFailed(ClientEvent):
    """The session is over before QUIT: flush the output (maybe a QUIT), close.

    ``permanent`` is true only when the host refused the session itself with
    a 5xx (greeting, or EHLO and HELO both), so its messages may bounce
    once every other MX host has refused too.
    """

    reply: Reply
    remote: bool
    permanent: bool = False


@dataclass(frozen=True, slots=True)
class Closed(ClientEvent):
    """Nothing more will happen: close the transport."""


CLOSED = Closed()
