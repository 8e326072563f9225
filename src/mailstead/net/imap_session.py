"""Binds the sans-IO :class:`IMAPServer` to an asyncio connection.

One :class:`IMAPSession` per TCP connection. It feeds the client's bytes to
the protocol, writes the responses of each batch in one write, and does
what only I/O can: check passwords off the event loop (and slowly when they
are wrong), upgrade to TLS, time out idle clients, and, while a client is in
IDLE, look for changes every ``idle_poll_interval`` seconds so that a new
delivery reaches it within a second.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable
from concurrent.futures import Executor

from mailstead.limits import IMAPLimits
from mailstead.net.listener import ConnectionGate
from mailstead.proto.imap.server import AuthRequest, Closed, IMAPServer, IMAPSettings, StartTLS
from mailstead.proto.imap.storage import AccountLike

log = logging.getLogger("mailstead.imap")

# (authcid, password, authzid) -> canonical user, or None.
AuthFunc = Callable[[str, str, str], str | None]
# Unprocessed input beyond this pauses reading (the parser bounds one command).
_READ_HIGH_WATER = 256 * 1024


class IMAPService:
    """What the sessions of one IMAP listener share: settings, storage, TLS, limits."""

    def __init__(
        self,
        settings: IMAPSettings,
        limits: IMAPLimits,
        open_account: Callable[[str], AccountLike],
        authenticate: AuthFunc,
        executor: Executor | None,
        tls_context: ssl.SSLContext | None,
        gate: ConnectionGate | None = None,
    ) -> None:
        self.settings = settings
        self.limits = limits
        self.open_account = open_account
        self.authenticate = authenticate
        self.executor = executor
        self.tls_context = tls_context
        self.gate = gate
        self.sessions: set[IMAPSession] = set()

    def protocol_factory(self) -> IMAPSession:
        return IMAPSession(self)


class IMAPSession(asyncio.Protocol):
    """One IMAP connection: I/O, timers and TLS around the sans-IO state machine."""

    def __init__(self, service: IMAPService) -> None:
        self.service = service
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.conn = IMAPServer(service.settings, service.limits, service.open_account)
        self.ip = "unknown"
        self._readable: asyncio.Future[None] | None = None
        self._writable: asyncio.Future[None] | None = None
        self._lost = False
        self._fresh = False
        self._unread = 0
        self._reading_paused = False
        self._admitted = False
        self._shutting_down = False
        self._task: asyncio.Task[None] | None = None
        self._tls_early: list[bytes] | None = None

    def shutdown(self) -> None:
        self._shutting_down = True
        self._wake()

    async def wait_closed(self) -> None:
        if self._task is not None:
            await asyncio.shield(self._task)

    # -- asyncio.Protocol ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.ip = peer[0] if peer else "unknown"
        gate = self.service.gate
        if gate is not None and not gate.admit(self.ip):
            transport.write(b"* BYE Too many connections from your address\r\n")
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
        self._unread += len(data)
        if self._unread > _READ_HIGH_WATER and not self._reading_paused and self.transport:
            self.transport.pause_reading()
            self._reading_paused = True
        self._wake()

    def eof_received(self) -> bool | None:
        self._lost = True
        self._wake()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._wake()
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        if self._admitted:
            self._admitted = False
            if self.service.gate is not None:
                self.service.gate.release(self.ip)
            self.service.sessions.discard(self)

    def pause_writing(self) -> None:
        if self._writable is None or self._writable.done():
            self._writable = self.loop.create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    def _wake(self) -> None:
        if self._readable is not None and not self._readable.done():
            self._readable.set_result(None)

    # -- the session -----------------------------------------------------------------

    async def _run(self) -> None:
        try:
            await self._serve()
        except Exception:
            log.exception("IMAP session with %s failed", self.ip)
            if self.transport is not None and not self.transport.is_closing():
                self.transport.write(b"* BYE Internal server error\r\n")
        finally:
            if self.transport is not None:
                self.transport.close()

    async def _serve(self) -> None:
        conn = self.conn
        await self._flush()  # the greeting
        while True:
            self._fresh = False
            event = conn.process()
            if event is None:
                self._unread = 0
                await self._flush()
                if not await self._wait_for_input():
                    return
            elif isinstance(event, AuthRequest):
                await self._flush()
                await self._authenticate(event)
            elif isinstance(event, StartTLS):
                if not await self._start_tls():
                    return
            elif isinstance(event, Closed):
                await self._flush()
                return

    async def _wait_for_input(self) -> bool:
        """Wait for bytes (polling for changes in IDLE); False to close."""
        if self._lost:
            return False
        if self._shutting_down:
            if self.transport is not None:
                self.transport.write(b"* BYE Server shutting down\r\n")
            return False
        if self._reading_paused and self.transport is not None:
            self._reading_paused = False
            self.transport.resume_reading()
        limits = self.service.limits
        deadline = time.monotonic() + limits.idle_timeout
        while not self._fresh:
            wait = deadline - time.monotonic()
            if wait <= 0:
                self.conn.timeout()
                await self._flush()
                return False
            if self.conn.idling:
                wait = min(wait, limits.idle_poll_interval)
            readable = self._readable = self.loop.create_future()
            timer = self.loop.call_later(wait, _settle, readable)
            try:
                await readable
            finally:
                timer.cancel()
                self._readable = None
            if self._lost or self._shutting_down:
                return self._fresh and not self._shutting_down
            if not self._fresh and self.conn.idling:
                self.conn.poll()
                await self._flush()
        return True

    async def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)
        if self._writable is not None and not self._writable.done():
            try:
                await asyncio.wait_for(self._writable, self.service.limits.idle_timeout)
            except TimeoutError:
                if self.transport is not None:
                    self.transport.abort()
                self._lost = True

    async def _authenticate(self, event: AuthRequest) -> None:
        creds = event.credentials
        user = await self.loop.run_in_executor(
            self.service.executor,
            self.service.authenticate,
            creds.authcid,
            creds.password,
            creds.authzid,
        )
        if user is None:
            # Slow down password guessing (RFC 9051 §11.5 suggests it).
            await asyncio.sleep(self.service.limits.auth_failure_delay)
            log.info("IMAP login failed for %r from [%s]", creds.authcid, self.ip)
        self.conn.auth_done(user)

    async def _start_tls(self) -> bool:
        await self._flush()
        context = self.service.tls_context
        if context is None or self.transport is None or self._lost:
            return False
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
            log.info("STARTTLS with [%s] failed: %s", self.ip, exc)
            return False
        finally:
            early, self._tls_early = self._tls_early, None
        if transport is None:
            return False
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        # RFC 9051 §6.2.1: input pipelined behind STARTTLS is discarded.
        self.conn.tls_started()
        for data in early:
            self.conn.receive_data(data)
            self._fresh = True
        return True


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
