"""Binds the sans-IO :class:`SMTPServer` to an asyncio connection.

One :class:`SMTPSession` per TCP connection: it feeds received bytes to
the protocol, turns the protocol's events into calls on the
:class:`Receiver` (policy and storage) and writes replies back, one batch per
read so pipelined commands get pipelined replies. It also owns the things
only I/O can know: timeouts, TLS upgrades, flow control, slow AUTH failures.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import replace

from mailstead.directory import Resolution
from mailstead.limits import SMTPLimits
from mailstead.mta.receiver import Peer, Receiver
from mailstead.net.listener import ConnectionGate
from mailstead.proto.smtp import replies as R
from mailstead.proto.smtp.events import (
    NEED_DATA,
    PAUSED,
    AuthRequest,
    Closing,
    Hello,
    MailFrom,
    Message,
    RcptTo,
    StartTLS,
)
from mailstead.proto.smtp.server import ServerSettings, SMTPServer

log = logging.getLogger("mailstead.smtp")

# The credential check: (authcid, password, authzid) -> canonical user or None.
AuthFunc = Callable[[str, str, str], str | None]

# Stop reading from a client while this much input waits unprocessed
# (outside DATA, where the message itself is bounded by message_size).
_READ_HIGH_WATER = 256 * 1024


class SMTPService:
    """Everything sessions of one listener share: role, policy, TLS, limits."""

    def __init__(
        self,
        settings: ServerSettings,
        receiver: Receiver,
        executor: Executor,
        authenticate: AuthFunc | None,
        tls_context: ssl.SSLContext | None,
        gate: ConnectionGate,
    ) -> None:
        self.settings = settings
        self.limits: SMTPLimits = settings.limits
        self.receiver = receiver
        self.executor = executor
        self.authenticate = authenticate
        self.tls_context = tls_context
        self.gate = gate
        self.sessions: set[SMTPSession] = set()

    def protocol_factory(self) -> SMTPSession:
        return SMTPSession(self)


class SMTPSession(asyncio.Protocol):
    """One SMTP connection: I/O, timeouts and TLS around the sans-IO state machine."""

    def __init__(self, service: SMTPService) -> None:
        self.service = service
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.conn = SMTPServer(service.settings)
        self.peer = Peer(ip="unknown", tls=service.settings.secure)
        self._readable: asyncio.Future[None] | None = None
        self._writable: asyncio.Future[None] | None = None
        self._reading_paused = False
        self._lost = False
        self._task: asyncio.Task[None] | None = None
        self._admitted = False
        self._shutting_down = False
        # Where each recipient accepted in this transaction goes (from RCPT).
        self._routes: dict[str, Resolution] = {}
        self._fresh = False  # bytes arrived since the protocol last asked for more
        self._timed_out = False
        # Decrypted bytes that arrive with the client's TLS Finished, before
        # start_tls() returns; they are the first command under TLS.
        self._tls_early: list[bytes] | None = None

    def shutdown(self) -> None:
        """Ask the session to say 421 and close at its next wait for input.

        A message being committed finishes first, so its 250 still goes out.
        """
        self._shutting_down = True
        self._wake_reader()

    async def wait_closed(self) -> None:
        if self._task is not None:
            await asyncio.shield(self._task)

    # -- asyncio.Protocol callbacks ----------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peername = transport.get_extra_info("peername")
        ip = peername[0] if peername else "unknown"
        self.peer = Peer(ip=ip, tls=self.service.settings.secure)
        if not self.service.gate.admit(ip):
            # RFC 5321 §3.1: a server that cannot serve now may say 421 at once.
            transport.write(R.TOO_MANY_CONNECTIONS.encode())
            transport.close()
            return
        self._admitted = True
        self.service.sessions.add(self)
        self._task = self.loop.create_task(self._run())

    def data_received(self, data: bytes) -> None:
        if self._tls_early is not None:
            self._tls_early.append(data)
            return
        self.conn.receive_data(data)
        self._fresh = True
        self._wake_reader()
        if not self._reading_paused and self.conn.awaiting is not None:
            buffered = self.conn.buffered
            if buffered > _READ_HIGH_WATER and self.transport is not None:
                self.transport.pause_reading()
                self._reading_paused = True

    def eof_received(self) -> bool | None:
        self._lost = True
        self._wake_reader()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._wake_reader()
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        if self._admitted:
            self._admitted = False
            self.service.gate.release(self.peer.ip)
            self.service.sessions.discard(self)

    def pause_writing(self) -> None:
        if self._writable is None or self._writable.done():
            self._writable = self.loop.create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    def _time_out(self, readable: asyncio.Future[None]) -> None:
        self._timed_out = True
        if not readable.done():
            readable.set_result(None)

    def _wake_reader(self) -> None:
        if self._readable is not None and not self._readable.done():
            self._readable.set_result(None)

    # -- the session --------------------------------------------------------------

    async def _run(self) -> None:
        try:
            await self._serve()
        except Exception:
            log.exception("session with %s failed", self.peer.ip)
            self.conn.close(R.LOCAL_ERROR)
            await self._flush()
        finally:
            if self.transport is not None:
                self.transport.close()

    async def _serve(self) -> None:
        conn = self.conn
        receiver = self.service.receiver
        while True:
            # Bytes that arrive while we flush or wait below set _fresh again,
            # so they are never left unread in the buffer.
            self._fresh = False
            event = conn.next_event()
            if event is NEED_DATA:
                if conn.closing:
                    await self._flush()
                    return
                await self._flush()
                if not await self._wait_for_input():
                    return
            elif isinstance(event, MailFrom):
                self._routes = {}
                conn.reply(receiver.sender_reply(self.peer, event.sender, event.params))
            elif isinstance(event, RcptTo):
                reply, route = receiver.route(self.peer, event.recipient)
                if route is not None:
                    self._routes[event.recipient] = route
                conn.reply(reply)
            elif isinstance(event, Message):
                reply = await self.loop.run_in_executor(
                    self.service.executor, receiver.commit, self.peer, event, self._routes
                )
                conn.reply(reply)
            elif isinstance(event, Hello):
                self.peer = replace(self.peer, helo=event.name, esmtp=event.extended)
            elif isinstance(event, AuthRequest):
                await self._authenticate(event)
            elif isinstance(event, StartTLS):
                if not await self._start_tls():
                    return
            elif isinstance(event, Closing):
                await self._flush()
                return
            elif event is PAUSED:  # pragma: no cover - every event above answers
                raise RuntimeError("protocol paused with no answer pending")

    async def _wait_for_input(self) -> bool:
        """Wait for bytes; False when the peer left or timed out (after a 421)."""
        if self._lost:
            return False
        if self._shutting_down:
            self.conn.close(R.SHUTTING_DOWN)
            await self._flush()
            return False
        if self._reading_paused and self.transport is not None:
            self._reading_paused = False
            self.transport.resume_reading()
        limits = self.service.limits
        timeout = limits.data_timeout if self.conn.in_data else limits.idle_timeout
        if not self._fresh:
            # A plain timer is much cheaper per read than asyncio.wait_for.
            readable = self._readable = self.loop.create_future()
            timer = self.loop.call_later(timeout, self._time_out, readable)
            try:
                await readable
            finally:
                timer.cancel()
                self._readable = None
            if self._timed_out:
                self.conn.close(R.TIMEOUT)
                await self._flush()
                return False
        if self._shutting_down and not self.conn.buffered:
            self.conn.close(R.SHUTTING_DOWN)
            await self._flush()
            return False
        return not self._lost or self.conn.buffered > 0

    async def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)
        if self._writable is not None and not self._writable.done():
            # The client is not reading our replies; give it the idle timeout.
            try:
                await asyncio.wait_for(self._writable, self.service.limits.idle_timeout)
            except TimeoutError:
                if self.transport is not None:
                    self.transport.abort()
                self._lost = True

    async def _authenticate(self, event: AuthRequest) -> None:
        creds = event.credentials
        check = self.service.authenticate
        user = None
        if check is not None:
            user = await self.loop.run_in_executor(
                self.service.executor, check, creds.authcid, creds.password, creds.authzid
            )
        if user is None:
            # Slow down password guessing; the session keeps its slot meanwhile.
            await asyncio.sleep(self.service.limits.auth_failure_delay)
            log.info(
                "AUTH %s failed for %r from [%s]", event.mechanism, creds.authcid, self.peer.ip
            )
        else:
            self.peer = replace(self.peer, user=user)
        self.conn.auth_result(user)

    async def _start_tls(self) -> bool:
        await self._flush()
        context = self.service.tls_context
        if context is None or self.transport is None or self._lost:
            return False
        # Plaintext that came before this point was dropped by the protocol
        # (RFC 3207 §4.2); what comes from now on is decrypted.
        self._tls_early = []
        try:
            transport = await self.loop.start_tls(
                self.transport,
                self,
                context,
                server_side=True,
                ssl_handshake_timeout=self.service.limits.tls_handshake_timeout,
            )
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError) as exc:
            log.info("STARTTLS with [%s] failed: %s", self.peer.ip, exc)
            self._lost = True
            return False
        finally:
            early, self._tls_early = self._tls_early, None
        if transport is None:
            return False
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.conn.tls_started()
        self.peer = replace(self.peer, tls=True, helo="", user=None)
        for data in early:
            self.conn.receive_data(data)
        return True
