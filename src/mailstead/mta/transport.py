"""What the outbound MTA needs from whatever carries mail to a remote host.

:class:`~mailstead.mta.outbound.Outbound` decides where mail goes and what
each answer means; a :class:`HostTransport` holds the one conversation with
one address of one host. The SMTP client over TCP
(:class:`mailstead.net.smtp_client.SMTPTransport`) is the real one, wired in
``app.py``; :class:`mailstead.testing.transport.MemoryTransport` answers from
a script, for tests of the engine's decisions.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from mailstead.proto.smtp.client_events import MessageResult, SessionFailed
from mailstead.proto.smtp.events import MailParams, Recipient


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """One message to hand over: envelope and content (CRLF)."""

    sender: str
    recipients: tuple[Recipient, ...]
    content: bytes
    params: MailParams


@dataclass(frozen=True, slots=True)
class TLSCheck:
    """Authenticated TLS a destination's MTA-STS policy asks for (RFC 8461 §4.2).

    The session must use STARTTLS with a certificate that chains to a
    trusted root (``ca_file``, or the system's) and is valid for the MX
    host name. ``enforce``: otherwise nothing is sent (deferral);
    ``testing``: a failure is reported and the mail goes as usual.
    """

    policy_domain: str
    enforce: bool
    ca_file: Path | None = None


@dataclass(frozen=True, slots=True)
class TLSFailure:
    """Why a session did not meet its :class:`TLSCheck`.

    ``result_type`` is the RFC 8460 §4.3 name (``starttls-not-supported``,
    ``certificate-host-mismatch``, ``certificate-expired``,
    ``certificate-not-trusted``, ``validation-failure``); ``detail`` the
    words for the log and the deferral reason.
    """

    result_type: str
    detail: str


@dataclass(frozen=True, slots=True)
class SessionPolicy:
    """How we open a session: the EHLO name, the local address, whether TLS is a must."""

    helo_name: str
    source_ip: str | None = None
    # Defer rather than send in clear text to a host without STARTTLS.
    require_tls: bool = False
    # The destination's MTA-STS requirement, if it has a policy.
    tls_check: TLSCheck | None = None


@dataclass(frozen=True, slots=True)
class HostResult:
    """What one connection achieved.

    ``results`` has one entry per message the session got to, in order;
    messages after a session failure have none. ``failure`` says why the
    session ended early (None after a clean QUIT); ``connected`` is False
    when no SMTP conversation took place at all. Transports that check no
    certificates (the one in memory) leave the TLS fields as they are.
    """

    results: tuple[MessageResult, ...]
    failure: SessionFailed | None
    connected: bool
    # Under a TLSCheck: how the session failed it (None: met it, or never got
    # as far as TLS), and whether the host's certificate was verified.
    tls_failure: TLSFailure | None = None
    tls_verified: bool = False


#: Awaited with (index in the batch, result) as soon as the host has answered
#: for one message, before the next goes out.
OnResult = Callable[[int, MessageResult], Awaitable[None]]


class HostTransport(Protocol):
    """Hands a batch of messages to one address of one mail host, over one session."""

    async def deliver(
        self,
        host: str,
        address: str,
        port: int,
        messages: Sequence[OutboundMessage],
        policy: SessionPolicy,
        on_result: OnResult,
    ) -> HostResult:
        """Deliver ``messages`` to ``address`` (an IP of MX ``host``) on ``port``.

        ``on_result`` lets the caller make each outcome durable while the
        session goes on; a failure to connect or a refused session is a
        :class:`HostResult` with a ``failure``, never an exception.
        """
        ...
