"""Binds the sans-IO :class:`POP3Server` to an asyncio connection.

One :class:`POP3Session` per TCP connection: it feeds received bytes to the
protocol, checks passwords and reads the maildrop in worker threads (both
block), and writes responses back, one batch per read so pipelined commands
(RFC 2449 §6.6) get pipelined responses. Big multi-line responses go out in
pieces, paced by the transport's flow control. It also owns what only I/O
can know: the autologout timer, the STLS upgrade, slow login failures and
the maildrop lock, released exactly once whatever happens.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
import ssl
from collections.abc import Sequence
from concurrent.futures import Executor

from mailstead.addresses import AddressError, canonical_address
from mailstead.limits import POP3Limits
from mailstead.net.listener import ConnectionGate
from mailstead.proto.pop3.events import (
    NEED_DATA,
    PAUSED,
    AuthRequest,
    Closing,
    Retrieve,
    StartTLS,
    Update,
)
from mailstead.proto.pop3.maildrop import Authenticate, Maildrop, MaildropInUse, OpenMaildrop
from mailstead.proto.pop3.server import POP3Server, POP3Settings

log = logging.getLogger("mailstead.pop3")

# Octets taken from the protocol per transport write of a multi-line response.
_WRITE_PIECE = 64 * 1024
# Stop reading from a client while this much input waits unprocessed.
_READ_HIGH_WATER = 64 * 1024


# Messages up to this size are read on the event loop (see _retrieve).
_INLINE_READ = 256 * 1024


class POP3Service:
    """Everything the sessions of one POP3 listener share: settings, the
    credential check, the maildrop opener, TLS, the connection gate and the
    time of each user's last login (for LOGIN-DELAY, per process)."""

    def __init__(
        self,
        settings: POP3Settings,
        authenticate: Authenticate,
        open_maildrop: OpenMaildrop,
        tls_context: ssl.SSLContext | None,
        gate: ConnectionGate | None = None,
        executor: Executor | None = None,
    ) -> None:
        self.settings = settings
        self.limits: POP3Limits = settings.limits
        self.authenticate = authenticate
        self.open_maildrop = open_maildrop
        self.tls_context = tls_context
        self.gate = gate or ConnectionGate(
            self.limits.connections_per_ip, self.limits.connections_total
        )
        self.executor = executor  # None: the loop's default executor
        self.sessions: set[POP3Session] = set()
        self.last_login: dict[str, float] = {}

    def protocol_factory(self) -> POP3Session:
        return POP3Session(self)

    def login_allowed(self, user: str, now: float) -> bool:
        """RFC 2449 §6.5 LOGIN-DELAY: no second login within the delay."""
        delay = self.settings.login_delay
        if delay is None:
            return True
        if len(self.last_login) > 10_000:  # forget logins older than the delay
            self.last_login = {u: t for u, t in self.last_login.items() if now - t < delay}
        last = self.last_login.get(user)
        if last is not None and now - last < delay:
            return False
        self.last_login[user] = now
        return True


async def start_pop3_servers(
    service: POP3Service, sockets: Sequence[socket.socket], *, implicit_tls: bool
) -> list[asyncio.Server]:
    """Serve ``service`` on listening ``sockets`` (pop3: STLS; pop3s: TLS at once)."""
    if implicit_tls and service.tls_context is None:
        raise ValueError("implicit TLS needs a TLS context")
    loop = asyncio.get_running_loop()
    servers = []
    for sock in sockets:
        servers.append(
            await loop.create_server(
                service.protocol_factory,
                sock=sock,
                ssl=service.tls_context if implicit_tls else None,
                ssl_handshake_timeout=(
                    service.limits.tls_handshake_timeout if implicit_tls else None
                ),
            )
        )
    return servers


class POP3Session(asyncio.Protocol):
    """One POP3 connection: I/O, timeouts, TLS and the maildrop around the
    sans-IO state machine."""

    def __init__(self, service: POP3Service) -> None:
        self.service = service
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.conn = POP3Server(service.settings)
        self.ip = "unknown"
        self.maildrop: Maildrop | None = None
        self._readable: asyncio.Future[None] | None = None
        self._writable: asyncio.Future[None] | None = None
        self._reading_paused = False
        self._lost = False
        self._fresh = False
        self._timed_out = False
        self._shutting_down = False
        self._admitted = False
        self._task: asyncio.Task[None] | None = None
        # Decrypted bytes that arrive with the client's TLS Finished, before
        # start_tls() returns; they are the first command under TLS.
        self._tls_early: list[bytes] | None = None

    def shutdown(self) -> None:
        """Ask the session to say -ERR and close at its next wait for input."""
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
        self.ip = peername[0] if peername else "unknown"
        if not self.service.gate.admit(self.ip):
            transport.write(b"-ERR [SYS/TEMP] Too many connections, try again later\r\n")
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
        if (
            not self._reading_paused
            and self.conn.buffered > _READ_HIGH_WATER
            and self.transport is not None
        ):
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
            self.service.gate.release(self.ip)
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
            log.exception("POP3 session with [%s] failed", self.ip)
            self.conn.close("Internal error")
            await self._flush()
        finally:
            if self.transport is not None:
                self.transport.close()
            maildrop, self.maildrop = self.maildrop, None
            if maildrop is not None:
                # RFC 1939 §6: a session that ends without QUIT deletes nothing,
                # but the lock is always released.
                try:
                    await self.loop.run_in_executor(self.service.executor, maildrop.close)
                except Exception:
                    log.exception("closing the maildrop of %s failed", self.conn.user)

    async def _serve(self) -> None:
        conn = self.conn
        while True:
            self._fresh = False
            event = conn.next_event()
            if event is NEED_DATA:
                await self._flush()
                if conn.closing or not await self._wait_for_input():
                    return
            elif isinstance(event, Retrieve):
                await self._retrieve(event)
            elif isinstance(event, AuthRequest):
                await self._login(event)
            elif isinstance(event, Update):
                await self._update(event)
            elif isinstance(event, StartTLS):
                if not await self._start_tls():
                    return
            elif isinstance(event, Closing):
                await self._flush()
                return
            elif event is PAUSED:  # pragma: no cover - every event above answers
                raise RuntimeError("protocol paused with no answer pending")

    async def _wait_for_input(self) -> bool:
        """Wait for bytes; False when the peer left, timed out or we shut down."""
        if self._lost:
            return False
        if self._shutting_down:
            self.conn.close("Server shutting down")
            await self._flush()
            return False
        if self._reading_paused and self.transport is not None:
            self._reading_paused = False
            self.transport.resume_reading()
        if not self._fresh:
            readable = self._readable = self.loop.create_future()
            timer = self.loop.call_later(self.service.limits.idle_timeout, self._time_out, readable)
            try:
                await readable
            finally:
                timer.cancel()
                self._readable = None
            if self._timed_out:
                # RFC 1939 §3: the autologout timer closes without a response
                # and without entering the UPDATE state.
                self.conn.close(None)
                return False
        if self._shutting_down and not self.conn.buffered:
            self.conn.close("Server shutting down")
            await self._flush()
            return False
        return not self._lost or self.conn.buffered > 0

    async def _flush(self) -> None:
        """Write everything the protocol has to say, piece by piece, waiting
        whenever the transport's buffer is full (so a 100,000-line LIST or a
        big RETR never sits in memory whole)."""
        while not self._lost:
            data = self.conn.data_to_send(_WRITE_PIECE)
            if not data:
                return
            if self.transport is None or self.transport.is_closing():
                return
            self.transport.write(data)
            if self._writable is not None and not self._writable.done():
                # The client is not reading; give it the idle timeout.
                try:
                    await asyncio.wait_for(self._writable, self.service.limits.idle_timeout)
                except TimeoutError:
                    if self.transport is not None:
                        self.transport.abort()
                    self._lost = True

    async def _retrieve(self, event: Retrieve) -> None:
        # Send what earlier pipelined commands produced first, so at most one
        # message is held at a time.
        await self._flush()
        maildrop = self.maildrop
        assert maildrop is not None
        try:
            if event.body_lines is None:
                read = functools.partial(maildrop.read, event.index)
            else:
                read = functools.partial(maildrop.read_head, event.index, event.body_lines)
            if self.conn.message_size(event.index) <= _INLINE_READ:
                # A small file comes from the page cache in microseconds; a
                # trip through the thread pool would cost more than the read
                # (bench/mail_access.py: RETR of 10,000 3 KB messages).
                data = read()
            else:
                data = await self.loop.run_in_executor(self.service.executor, read)
        except Exception:
            log.exception("reading message %d of %s failed", event.index + 1, self.conn.user)
            self.conn.retrieve_failed()
            return
        self.conn.retrieved(data)

    async def _login(self, event: AuthRequest) -> None:
        creds = event.credentials
        executor = self.service.executor
        user = await self.loop.run_in_executor(
            executor, self.service.authenticate, creds.authcid, creds.password
        )
        if user is not None and creds.authzid:
            # RFC 4616 §2: acting as somebody else is not allowed here.
            try:
                if canonical_address(creds.authzid) != user:
                    user = None
            except AddressError:
                user = None
        if user is None:
            # Slow down password guessing; the session keeps its slot meanwhile.
            await asyncio.sleep(self.service.limits.auth_failure_delay)
            log.info(
                "POP3 %s login failed for %r from [%s]", event.mechanism, creds.authcid, self.ip
            )
            self.conn.auth_failed()
            return
        if not self.service.login_allowed(user, self.loop.time()):
            self.conn.login_too_soon()
            return
        try:
            maildrop = await self.loop.run_in_executor(executor, self.service.open_maildrop, user)
        except MaildropInUse:
            self.conn.maildrop_in_use()
            return
        except Exception:
            log.exception("opening the maildrop of %s failed", user)
            self.conn.maildrop_failed()
            return
        self.maildrop = maildrop  # closed in _run's finally, whatever happens next
        try:
            listing = await self.loop.run_in_executor(executor, maildrop.listing)
        except Exception:
            log.exception("listing the maildrop of %s failed", user)
            self.maildrop = None
            await self.loop.run_in_executor(executor, maildrop.close)
            self.conn.maildrop_failed()
            return
        log.info("POP3 login %s from [%s], %d messages", user, self.ip, len(listing))
        self.conn.logged_in(user, listing)

    async def _update(self, event: Update) -> None:
        maildrop = self.maildrop
        assert maildrop is not None
        executor = self.service.executor
        try:
            if event.seen:
                await self.loop.run_in_executor(executor, maildrop.mark_seen, event.seen)
            if event.deleted:
                await self.loop.run_in_executor(executor, maildrop.delete, event.deleted)
        except Exception:
            log.exception("UPDATE of the maildrop of %s failed", self.conn.user)
            self.conn.update_done(False)
            return
        self.conn.update_done(True)

    async def _start_tls(self) -> bool:
        await self._flush()
        context = self.service.tls_context
        if context is None or self.transport is None or self._lost:
            return False
        # Plaintext that came before this point was dropped by the protocol
        # (RFC 2595 §4); what comes from now on is decrypted.
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
            log.info("STLS with [%s] failed: %s", self.ip, exc)
            self._lost = True
            return False
        finally:
            early, self._tls_early = self._tls_early, None
        if transport is None:
            return False
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.conn.tls_started()
        for data in early:
            self.conn.receive_data(data)
        return True
