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
class SessionPolicy:
    """How we open a session: the EHLO name, the local address, whether TLS is a must."""

    helo_name: str
    source_ip: str | None = None
    # Defer rather than send in clear text to a host without STARTTLS.
    require_tls: bool = False


@dataclass(frozen=True, slots=True)
class HostResult:
    """What one connection achieved.

    ``results`` has one entry per message the session got to, in order;
    messages after a session failure have none. ``failure`` says why the
    session ended early (None after a clean QUIT); ``connected`` is False
    when no SMTP conversation took place at all.
    """

    results: tuple[MessageResult, ...]
    failure: SessionFailed | None
    connected: bool


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
