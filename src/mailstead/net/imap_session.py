"""Binds the sans-IO :class:`IMAPServer` to an asyncio connection.

One :class:`IMAPSession` per TCP connection. It feeds the client's bytes to
the protocol, writes the responses of each batch in one write, and does
what only I/O can: check passwords off the event loop (and slowly when they
are wrong), run a command's slow storage I/O (APPEND's fsyncs) in the
thread pool while the worker's other sessions go on, upgrade to TLS, time
out idle clients, and, while a client is in
IDLE, look for changes every ``idle_poll_interval`` seconds so that a new
delivery reaches it within a second. After COMPRESS DEFLATE (RFC 4978) it
inflates what it reads, a bounded chunk at a time (net/deflate.py), and
deflates what it writes.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl
from collections.abc import Callable
from concurrent.futures import Executor

from mailstead.events import EventSink
from mailstead.limits import ConnectionPolicy, IMAPLimits
from mailstead.net.auth_penalty import AuthPenalty
from mailstead.net.deflate import CorruptStream, DeflateStreams
from mailstead.net.listener import ConnectionGate
from mailstead.net.stream import DEFAULT_POLICY, Ended, StreamSession, implicit_tls
from mailstead.proto.imap.events import (
    NEED_DATA,
    PAUSED,
    AuthRequest,
    Closing,
    Idling,
    StartCompression,
    StartTLS,
    StorageWork,
)
from mailstead.proto.imap.quota_limits import LimitsLookup
from mailstead.proto.imap.server import COMMAND_NAMES, IMAPServer, IMAPSettings
from mailstead.proto.imap.storage import AccountLike

log = logging.getLogger("mailstead.imap")

# (authcid, password, authzid) -> canonical user, or None.
AuthFunc = Callable[[str, str, str], str | None]


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
        policy: ConnectionPolicy = DEFAULT_POLICY,
        penalty: AuthPenalty | None = None,
        events: EventSink | None = None,
        quota_limits: LimitsLookup | None = None,
    ) -> None:
        self.settings = settings
        # RFC 9208: each user's limits (None: no quotas offered).
        self.quota_limits = quota_limits
        self.policy = policy
        self.penalty = penalty
        # auth.succeeded / auth.failed go here (net/stream.py check_login).
        self.events = events
        self.limits = limits
        self.open_account = open_account
        self.authenticate = authenticate
        self.executor = executor
        self.tls_context = tls_context
        self.implicit_tls = implicit_tls(
            settings.secure, tls_context, self.limits.tls_handshake_timeout
        )
        self.gate = gate
        self.sessions: set[StreamSession] = set()

    def protocol_factory(self) -> IMAPSession:
        return IMAPSession(self)


class IMAPSession(StreamSession):
    """One IMAP connection: timers, password checks and TLS around the sans-IO state machine."""

    refusal = "* BYE {reason}\r\n"
    protocol_name = "IMAP"
    command_names = COMMAND_NAMES
    command_word = 1  # after the tag

    def __init__(self, service: IMAPService) -> None:
        super().__init__(service)
        self.service = service
        self.listener = "imaps" if service.settings.secure else "imap"
        self.conn = IMAPServer(
            service.settings, service.limits, service.open_account, service.quota_limits
        )
        self._deflate: DeflateStreams | None = None  # after COMPRESS DEFLATE

    async def write(self, data: bytes, timeout: float) -> None:
        if self._deflate is not None and data:
            data = self._deflate.compress(data)  # RFC 4978 §4: flushed per burst
        await super().write(data, timeout)

    def track_lines(self, data: bytes) -> None:
        if self._deflate is None:
            super().track_lines(data)
        # else: the inflated bytes are looked at, in _inflate

    @property
    def authenticated(self) -> bool:
        return self.conn.authenticated

    def reading_lines(self) -> bool:
        return not self.conn.in_literal

    def feed(self, data: bytes) -> None:
        if self._deflate is None:
            self.conn.receive_data(data)
            return
        # Inflated by the serve loop, a chunk each time the protocol is done
        # with the last: never more than one chunk ahead of it.
        self._deflate.add_input(data)

    def _inflate(self) -> None:
        """Give the protocol the next chunk of the client's inflated input."""
        assert self._deflate is not None
        try:
            data = self._deflate.inflate()
        except CorruptStream as exc:
            log.info("IMAP compressed input is corrupt: %s", exc)
            self.conn.timeout(b"Compressed input is corrupt")
            return
        if data:
            super().track_lines(data)
            self.conn.receive_data(data)

    async def failed(self) -> None:
        await self.write(b"* BYE Internal server error\r\n", self.service.limits.idle_timeout)

    async def serve(self) -> None:
        conn = self.conn
        await self._flush()  # the greeting
        while True:
            self.fresh = False
            event = conn.next_event()
            if event is NEED_DATA or isinstance(event, Idling):
                if self._deflate is not None and self._deflate.pending:
                    # The protocol took the last chunk: answer it, let the
                    # other sessions run, then the next.
                    await self._flush()
                    await asyncio.sleep(0)
                    self._inflate()
                    continue
                self.consumed()
                await self._flush()
                if not await self._wait_for_input(idling=event is not NEED_DATA):
                    return
            elif isinstance(event, StorageWork):
                await self._storage_work(event)
            elif isinstance(event, AuthRequest):
                await self._flush()
                await self._authenticate(event)
            elif isinstance(event, StartTLS):
                await self._flush()
                limits = self.service.limits
                early = await self.upgrade_tls(
                    self.service.tls_context, limits.tls_handshake_timeout
                )
                if early is None:
                    return
                # RFC 9051 §6.2.1: input pipelined behind STARTTLS is discarded.
                conn.tls_started()
                for data in early:
                    self.feed(data)
                    self.fresh = True
            elif isinstance(event, StartCompression):
                await self._flush()  # the tagged OK, as it is
                self._deflate = DeflateStreams()
                self.feed(event.unread)
            elif isinstance(event, Closing):
                await self._flush()
                return
            elif event is PAUSED:  # pragma: no cover - every event above answers
                raise RuntimeError("protocol paused with no answer pending")

    async def _wait_for_input(self, *, idling: bool) -> bool:
        """Wait for bytes (looking for changes while in IDLE); False to close."""
        limits = self.service.limits
        ended = await self.wait_for_input(
            limits.idle_timeout,
            poll=limits.idle_poll_interval if idling else None,
            on_poll=self._poll if idling else None,
        )
        if ended is None:
            return True
        if ended is Ended.SHUTDOWN:
            await self.write(b"* BYE Server shutting down\r\n", limits.idle_timeout)
        elif ended is Ended.IDLE:
            self.conn.timeout()  # RFC 9051 §5.4 autologout
            await self._flush()
        elif ended not in (Ended.LOST, Ended.EVICTED):
            self.conn.timeout(ended.value.encode())
            await self._flush()
        return False

    async def _poll(self) -> None:
        """In IDLE: report changes made by other sessions (RFC 2177)."""
        self.conn.poll()
        await self._flush()

    async def _flush(self) -> None:
        await self.write(self.conn.data_to_send(), self.service.limits.idle_timeout)

    async def _storage_work(self, event: StorageWork) -> None:
        """Run the step in the thread pool; the engine waits, the loop does not."""
        error: Exception | None = None
        try:
            await asyncio.get_running_loop().run_in_executor(self.service.executor, event.run)
        except Exception as exc:  # the engine answers it (NO, and the traceback logged)
            error = exc
        self.conn.storage_done(error)

    async def _authenticate(self, event: AuthRequest) -> None:
        creds = event.credentials
        # RFC 9051 §11.5 suggests slowing down password guessing.
        user, blocked = await self.check_login(
            functools.partial(
                self.service.authenticate, creds.authcid, creds.password, creds.authzid
            ),
            executor=self.service.executor,
            failure_delay=self.service.limits.auth_failure_delay,
            mechanism=event.mechanism,
            authcid=creds.authcid,
        )
        self.conn.auth_result(user, blocked=blocked)
