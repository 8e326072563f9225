"""Binds the sans-IO :class:`SMTPClient` to one outbound TCP connection.

:func:`deliver_to_host` connects to one address of one MX host, hands it
every message of a batch over that one connection (the client sends RSET
between them when needed), and returns what became of each. It owns the
things only I/O can know: the connect timeout, the source address, the
per-reply timeouts the client asks for, TLS, and flow control.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from mailstead.limits import SMTPClientLimits
from mailstead.net.flow import FlowProtocol
from mailstead.proto.smtp.client import SMTPClient
from mailstead.proto.smtp.client_events import (
    Closed,
    MessageResult,
    Ready,
    SessionFailed,
    StartTLSRequested,
)
from mailstead.proto.smtp.events import NEED_DATA, PAUSED, MailParams, Recipient
from mailstead.proto.smtp.replies import Reply

# RFC 5321 §4.5.3.2 gives no connect timeout; Postfix uses 30 s.
CONNECT_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """One message to hand over: envelope and content (CRLF)."""

    sender: str
    recipients: tuple[Recipient, ...]
    content: bytes
    params: MailParams


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


class _Pipe(FlowProtocol):
    """Received bytes and connection state, for one awaiting reader."""

    def __init__(self) -> None:
        super().__init__()
        self.buffer = bytearray()
        self.eof = False

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._wake()

    def eof_received(self) -> bool | None:
        self.eof = True
        self._wake()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self._ended()

    async def read(self, timeout: float) -> bytes | None:
        """Buffered bytes, ``b""`` at end of stream, None on timeout."""
        if not self.buffer and not self.eof:
            self._readable = self.loop.create_future()
            try:
                await asyncio.wait_for(self._readable, timeout)
            except TimeoutError:
                return None
            finally:
                self._readable = None
        data = bytes(self.buffer)
        self.buffer.clear()
        return data

    async def drain(self, timeout: float) -> bool:
        if self._writable is None or self._writable.done():
            return True
        try:
            await asyncio.wait_for(asyncio.shield(self._writable), timeout)
        except TimeoutError:
            return False
        return True


async def deliver_to_host(
    host: str,
    address: str,
    port: int,
    messages: Sequence[OutboundMessage],
    *,
    helo_name: str,
    source_ip: str | None = None,
    tls_context: ssl.SSLContext | None = None,
    require_tls: bool = False,
    limits: SMTPClientLimits | None = None,
    connect_timeout: float = CONNECT_TIMEOUT,
    on_result: Callable[[int, MessageResult], Awaitable[None]] | None = None,
) -> HostResult:
    """Deliver ``messages`` to ``address`` (an IP of MX ``host``) over one session.

    ``on_result(i, result)`` is awaited as soon as the host has answered for
    message ``i``, before the next one goes out, so the caller can make the
    outcome durable while the session goes on.
    """
    loop = asyncio.get_running_loop()
    client = SMTPClient(
        helo_name, require_tls=require_tls, tls_available=tls_context is not None, limits=limits
    )
    try:
        transport, pipe = await asyncio.wait_for(
            loop.create_connection(
                _Pipe, address, port, local_addr=(source_ip, 0) if source_ip else None
            ),
            connect_timeout,
        )
    except (OSError, TimeoutError) as exc:
        reason = getattr(exc, "strerror", None) or "timed out"
        reply = Reply(451, "4.4.1", f"Connection to {host} [{address}] failed: {reason}")
        return HostResult((), SessionFailed(reply, remote=False), connected=False)

    pending = list(messages)
    results: list[MessageResult] = []
    failure: SessionFailed | None = None
    try:
        while True:
            event = client.next_event()
            # Whatever the client has to say goes out before we wait on the host.
            out = client.data_to_send()
            if out and not transport.is_closing():
                transport.write(out)
                if not await pipe.drain(client.write_timeout):
                    client.timed_out()
                    continue
            if event is NEED_DATA:
                data = await pipe.read(client.timeout or client.limits.command_timeout)
                if data is None:
                    client.timed_out()
                else:
                    client.receive_data(data)
            elif event is PAUSED:
                if pending:
                    m = pending.pop(0)
                    client.send_message(m.sender, m.recipients, m.content, m.params)
                else:
                    client.quit()
            elif isinstance(event, MessageResult):
                results.append(event)
                if on_result is not None:
                    await on_result(len(results) - 1, event)
            elif isinstance(event, StartTLSRequested):
                assert tls_context is not None
                # Plaintext already read behind the 220 went to the client,
                # which aborts on it; from here the SSL layer owns the socket.
                if pipe.buffer:
                    client.receive_data(bytes(pipe.buffer))
                    pipe.buffer.clear()
                    continue
                try:
                    new = await asyncio.wait_for(
                        loop.start_tls(transport, pipe, tls_context, server_hostname=host or None),
                        client.limits.tls_handshake_timeout,
                    )
                except (OSError, ssl.SSLError, TimeoutError, ConnectionError) as exc:
                    client.connection_lost(f"TLS handshake with {host} failed: {exc}")
                    continue
                if new is None:
                    client.connection_lost("Connection lost during TLS handshake")
                    continue
                assert isinstance(new, asyncio.Transport)
                transport = new
                client.tls_started()
            elif isinstance(event, SessionFailed):
                failure = event
            elif isinstance(event, Closed):
                break
            elif isinstance(event, Ready):
                continue
    finally:
        transport.close()
    return HostResult(tuple(results), failure, connected=True)
