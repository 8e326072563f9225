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

import functools
import logging
import ssl
from concurrent.futures import Executor

from mailstead import logs
from mailstead.addresses import AddressError, canonical_address
from mailstead.events import EventSink
from mailstead.limits import ConnectionPolicy, POP3Limits
from mailstead.net.auth_penalty import AuthPenalty
from mailstead.net.listener import ConnectionGate
from mailstead.net.stream import DEFAULT_POLICY, Ended, StreamSession, implicit_tls
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
from mailstead.proto.pop3.server import COMMAND_NAMES, POP3Server, POP3Settings

log = logging.getLogger("mailstead.pop3")

# Octets taken from the protocol per transport write of a multi-line response.
_WRITE_PIECE = 64 * 1024


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
        policy: ConnectionPolicy = DEFAULT_POLICY,
        penalty: AuthPenalty | None = None,
        events: EventSink | None = None,
    ) -> None:
        self.settings = settings
        self.policy = policy
        self.penalty = penalty
        # auth.succeeded / auth.failed go here (net/stream.py check_login).
        self.events = events
        self.limits: POP3Limits = settings.limits
        self.authenticate = authenticate
        self.open_maildrop = open_maildrop
        self.tls_context = tls_context
        self.implicit_tls = implicit_tls(
            settings.secure, tls_context, self.limits.tls_handshake_timeout
        )
        self.gate = gate or ConnectionGate(
            self.limits.connections_per_ip, self.limits.connections_total
        )
        self.executor = executor  # None: the loop's default executor
        self.sessions: set[StreamSession] = set()
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


class POP3Session(StreamSession):
    """One POP3 connection: I/O, timeouts, TLS and the maildrop around the
    sans-IO state machine."""

    refusal = "-ERR [SYS/TEMP] {reason}, try again later\r\n"
    protocol_name = "POP3"
    command_names = COMMAND_NAMES
    # Commands are short; more than this unprocessed is a client not waiting.
    read_high_water = 64 * 1024

    def __init__(self, service: POP3Service) -> None:
        super().__init__(service)
        self.service = service
        self.listener = "pop3s" if service.settings.secure else "pop3"
        self.conn = POP3Server(service.settings)
        self.maildrop: Maildrop | None = None

    @property
    def authenticated(self) -> bool:
        return self.conn.user is not None

    def feed(self, data: bytes) -> None:
        self.conn.receive_data(data)

    async def failed(self) -> None:
        self.conn.close("Internal error")
        await self._flush()

    async def finished(self) -> None:
        maildrop, self.maildrop = self.maildrop, None
        if maildrop is not None:
            # RFC 1939 §6: a session that ends without QUIT deletes nothing,
            # but the lock is always released.
            try:
                await self.loop.run_in_executor(self.service.executor, logs.carry(maildrop.close))
            except Exception:
                log.exception("closing the maildrop of %s failed", self.conn.user)

    async def serve(self) -> None:
        conn = self.conn
        while True:
            self.fresh = False
            event = conn.next_event()
            if event is NEED_DATA:
                self.consumed()
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
                await self._flush()
                limits = self.service.limits
                early = await self.upgrade_tls(
                    self.service.tls_context, limits.tls_handshake_timeout
                )
                if early is None:
                    return
                # Plaintext before this point was dropped by the protocol
                # (RFC 2595 §4); what comes from now on is decrypted.
                conn.tls_started()
                for data in early:
                    self.feed(data)
            elif isinstance(event, Closing):
                await self._flush()
                return
            elif event is PAUSED:  # pragma: no cover - every event above answers
                raise RuntimeError("protocol paused with no answer pending")

    async def _wait_for_input(self) -> bool:
        """Wait for bytes; False when the peer left, timed out or we shut down.

        Whatever the reason, a session that ends without QUIT updates
        nothing (RFC 1939 §6).
        """
        ended = await self.wait_for_input(self.service.limits.idle_timeout)
        if ended is None:
            return True
        if ended in (Ended.LOST, Ended.EVICTED, Ended.IDLE):
            # RFC 1939 §3: the autologout timer closes without a response.
            self.conn.close(None)
        else:
            self.conn.close(ended.value)
            await self._flush()
        return False

    async def _flush(self) -> None:
        """Write everything the protocol has to say, piece by piece, waiting
        whenever the transport's buffer is full (so a 100,000-line LIST or a
        big RETR never sits in memory whole)."""
        while not self.lost:
            data = self.conn.data_to_send(_WRITE_PIECE)
            if not data:
                return
            await self.write(data, self.service.limits.idle_timeout)

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
                data = await self.loop.run_in_executor(self.service.executor, logs.carry(read))
        except Exception:
            log.exception("reading message %d of %s failed", event.index + 1, self.conn.user)
            self.conn.retrieve_failed()
            return
        self.conn.retrieved(data)

    async def _login(self, event: AuthRequest) -> None:
        creds = event.credentials
        executor = self.service.executor

        def check() -> str | None:
            user = self.service.authenticate(creds.authcid, creds.password)
            if user is not None and creds.authzid:
                # RFC 4616 §2: acting as somebody else is not allowed here.
                try:
                    if canonical_address(creds.authzid) != user:
                        return None
                except AddressError:
                    return None
            return user

        user, blocked = await self.check_login(
            check,
            executor=executor,
            failure_delay=self.service.limits.auth_failure_delay,
            mechanism=event.mechanism,
            authcid=creds.authcid,
        )
        self.conn.auth_result(user, blocked=blocked)
        if user is None:
            return
        if not self.service.login_allowed(user, self.loop.time()):
            self.conn.login_too_soon()
            return
        try:
            maildrop = await self.loop.run_in_executor(
                executor, logs.carry(self.service.open_maildrop, user)
            )
        except MaildropInUse:
            self.conn.maildrop_in_use()
            return
        except Exception:
            log.exception("opening the maildrop of %s failed", user)
            self.conn.maildrop_failed()
            return
        self.maildrop = maildrop  # closed in _run's finally, whatever happens next
        try:
            listing = await self.loop.run_in_executor(executor, logs.carry(maildrop.listing))
        except Exception:
            log.exception("listing the maildrop of %s failed", user)
            self.maildrop = None
            await self.loop.run_in_executor(executor, logs.carry(maildrop.close))
            self.conn.maildrop_failed()
            return
        log.info("maildrop opened", extra=logs.fields(user=user, messages=len(listing)))
        self.conn.maildrop_opened(listing)

    async def _update(self, event: Update) -> None:
        maildrop = self.maildrop
        assert maildrop is not None
        executor = self.service.executor
        try:
            if event.seen:
                await self.loop.run_in_executor(
                    executor, logs.carry(maildrop.mark_seen, event.seen)
                )
            if event.deleted:
                await self.loop.run_in_executor(
                    executor, logs.carry(maildrop.delete, event.deleted)
                )
            done = True
        except Exception:
            log.exception("UPDATE of the maildrop of %s failed", self.conn.user)
            done = False
        # RFC 1939 §6: the lock goes whatever the outcome; before the reply,
        # so a client that logs in again on reading +OK finds it free (with
        # the cluster's lease, releasing is a database round trip).
        self.maildrop = None
        try:
            await self.loop.run_in_executor(executor, logs.carry(maildrop.close))
        except Exception:
            log.exception("closing the maildrop of %s failed", self.conn.user)
        self.conn.update_done(done)
