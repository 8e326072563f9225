"""What every line-protocol session shares: admission, reading, deadlines, writing, TLS.

:class:`StreamSession` is the asyncio side of one connection for the SMTP,
IMAP and POP3 sessions: it admits or refuses the peer at the connection
gate (making room by closing the oldest session that has not logged in
when the listener is full), hands received bytes to the protocol, lets the
session wait for input until the nearest deadline (with a timer, much
cheaper per read than ``asyncio.wait_for``), waits for the client to read
when the transport's buffer is full, and upgrades the connection to TLS
keeping the bytes that arrive with the handshake's last flight. Implicit
TLS is done here too, after admission, so a handshake holds a counted slot
and has a deadline like everything else. The subclass runs the protocol in
:meth:`serve`.

Behind a load balancer ([listen] proxy_protocol), a connection from a
listed network is admitted only after its PROXY header (proto/proxy.py,
read by net/proxy_header.py) has named the client, before TLS and before
any protocol byte: from then on ``ip`` is the client's, for the gate, the
penalty, the logs and the subclass (:meth:`peer_known`).

Deadlines (limits.ConnectionPolicy): the idle timeout restarts with each
read, the others do not: a command line must end within ``line_timeout``
of its first byte, a login must succeed within ``login_timeout`` of the
connect, an SMTP transaction within ``transaction_timeout``; under stress
the idle, line and login deadlines of sessions not logged in shrink to
``stress_timeout``.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import logging
import ssl
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from typing import Protocol

from mailstead import logs, metrics
from mailstead.events import Event, EventSink, domain_of
from mailstead.limits import ConnectionPolicy
from mailstead.net import watchdog
from mailstead.net.auth_penalty import BLOCKED, AuthPenalty
from mailstead.net.flow import FlowProtocol
from mailstead.net.listener import Admission, ConnectionGate
from mailstead.net.proxy_header import ProxyHeaderReader
from mailstead.peertext import log_text
from mailstead.proto.proxy import ProxyHeader, ProxyHeaderError

log = logging.getLogger("mailstead.net")

# Stop reading from a client while this much input waits unprocessed.
READ_HIGH_WATER = 256 * 1024

DEFAULT_POLICY = ConnectionPolicy()

# A TLS context and its handshake timeout, for a listener with implicit TLS.
ImplicitTLS = tuple[ssl.SSLContext, float]


def implicit_tls(
    secure: bool, context: ssl.SSLContext | None, handshake_timeout: float
) -> ImplicitTLS | None:
    """What a listener's sessions need to start with a handshake; None for plain ones."""
    return (context, handshake_timeout) if secure and context is not None else None


class ListenerService(Protocol):
    """What every session takes from the service of its listener."""

    @property
    def gate(self) -> ConnectionGate | None: ...
    @property
    def sessions(self) -> set[StreamSession]: ...
    @property
    def policy(self) -> ConnectionPolicy: ...
    @property
    def penalty(self) -> AuthPenalty | None: ...
    @property
    def implicit_tls(self) -> ImplicitTLS | None: ...
    @property
    def events(self) -> EventSink | None: ...


# auth.failed carries the name tried, cut to this many characters.
_MAX_USERNAME = 256


def _log_failure(stored: asyncio.Future[None]) -> None:
    if not stored.cancelled() and stored.exception() is not None:
        log.error("storing an auth event failed: %s", stored.exception())


class Ended(enum.Enum):
    """Why waiting for input stopped without input: the session should end."""

    LOST = "The peer closed the connection"
    SHUTDOWN = "Server shutting down"
    IDLE = "Idle for too long"
    LINE = "Command line not completed in time"
    LOGIN = "Login not completed in time"
    TRANSACTION = "Transaction not completed in time"
    EVICTED = "Server busy, closing to make room for another client"


class StreamSession(FlowProtocol):
    """Owns one connection's transport, its deadlines and the futures its session waits on."""

    #: Written to a peer the gate refuses, before closing; {reason} is the
    #: gate's Admission text.
    refusal = ""
    #: Name in log lines ("IMAP", "POP3").
    protocol_name = ""
    #: The listener's [listen] key ("smtp", "imaps" …): the metrics' protocol label.
    listener = ""
    #: Unprocessed input that pauses reading until the protocol catches up.
    read_high_water = READ_HIGH_WATER
    #: The protocol's command names, and which word of a line is the name
    #: (1 for IMAP, after the tag), for the watchdog's note.
    command_names: frozenset[bytes] = frozenset()
    command_word = 0
    #: Whether a client must log in (IMAP, POP3, submission): the login
    #: deadline applies until it has.
    login_required = True

    def __init__(self, service: ListenerService) -> None:
        super().__init__()
        self.transport: asyncio.Transport | None = None
        self.ip = "unknown"
        self.policy = service.policy
        #: Failed logins of every worker, by address and network (None: no penalty).
        self.penalty = service.penalty
        self._gate = service.gate
        self._sessions = service.sessions
        self._implicit_tls = service.implicit_tls
        self._events = service.events
        self._reading_paused = False
        self._unread = 0
        self.lost = False
        self.fresh = False  # bytes arrived since the session last asked for more
        self.shutting_down = False
        self._admitted = False
        self._task: asyncio.Task[None] | None = None
        self._input_head = b""  # the start of the first bytes since the last wait
        self.connected_at = self.loop.time()
        # When the first byte after the last line feed arrived (None: the
        # input so far ends with a complete line).
        self._line_since: float | None = None
        self.evicted = False
        # Decrypted bytes that arrive with the client's TLS Finished, before
        # start_tls() returns; they are the first command under TLS.
        self._tls_early: list[bytes] | None = None

    # -- for the subclass ---------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Give received bytes to the protocol."""
        raise NotImplementedError

    async def serve(self) -> None:
        """Run the protocol until the connection ends."""
        raise NotImplementedError

    async def failed(self) -> None:
        """Tell the peer about an internal error (``serve`` raised)."""

    async def finished(self) -> None:
        """Release what the session holds; runs once, however it ended."""

    def consumed(self) -> None:
        """The protocol processed everything it was given: reading may go on."""
        self._unread = 0
        if self._reading_paused and self.transport is not None:
            self._reading_paused = False
            self.transport.resume_reading()

    @property
    def authenticated(self) -> bool:
        """The client has logged in: no login deadline, untouched by stress."""
        return False

    async def check_login(
        self,
        check: Callable[[], str | None],
        *,
        executor: Executor | None,
        failure_delay: float,
        mechanism: str,
        authcid: str,
    ) -> tuple[str | None, bool]:
        """Run a blocking credential ``check`` under the address's penalty: (user, blocked).

        An address that failed before waits first (net/auth_penalty.py);
        a blocked one is refused without a check. A failure waits
        ``failure_delay`` more before its reply and is logged, with the
        name tried but never the password.
        """
        penalty = self.penalty
        failures = 0
        if penalty is not None:
            wait = penalty.attempt(self.ip)
            failures = penalty.failures(self.ip)
            if wait == BLOCKED:
                metrics.auth_failed(self.listener, blocked=True)
                self._auth_event(executor, mechanism, authcid, None, blocked=True)
                login = self._login_fields(mechanism, failures=failures)
                log.info("login refused for '%s': blocked", log_text(authcid), extra=login)
                return None, True
            if wait:
                await asyncio.sleep(wait)
        user = await self.loop.run_in_executor(executor, logs.carry(check))
        self._auth_event(executor, mechanism, authcid, user, blocked=False)
        if user is not None:
            if penalty is not None:
                penalty.succeeded(self.ip)
            log.info("login", extra=self._login_fields(mechanism, user=user))
            return user, False
        metrics.auth_failed(self.listener, blocked=False)
        # Slow down password guessing; the session keeps its slot meanwhile.
        await asyncio.sleep(failure_delay)
        login = self._login_fields(mechanism, failures=failures)
        log.info("login failed for '%s'", log_text(authcid), extra=login)
        return None, False

    def _login_fields(self, mechanism: str, **more: object) -> dict[str, object]:
        """A login line's fields; the name tried is in its text, escaped, and never a password."""
        return logs.fields(protocol=self.protocol_name.lower(), mechanism=mechanism, **more)

    def _auth_event(
        self,
        executor: Executor | None,
        mechanism: str,
        authcid: str,
        user: str | None,
        *,
        blocked: bool,
    ) -> None:
        """auth.succeeded or auth.failed, stored in the background: a login never waits for it."""
        sink = self._events
        event_type = "auth.succeeded" if user is not None else "auth.failed"
        if sink is None or not sink.wants(event_type):
            return
        data: dict[str, object] = {
            "protocol": self.protocol_name.lower(),
            "mechanism": mechanism,
            "remote_ip": self.ip,
        }
        if user is not None:
            data["user"] = user
        else:
            # The name tried is the peer's text, never the password.
            data.update(
                username=authcid[:_MAX_USERNAME], reason="blocked" if blocked else "invalid"
            )
        account = user if user is not None else authcid.lower()[:_MAX_USERNAME]
        event = Event(event_type, data, account=account, domain=domain_of(account))
        stored = self.loop.run_in_executor(executor, logs.carry(sink.emit, [event]))
        stored.add_done_callback(_log_failure)

    def transaction_since(self) -> float | None:
        """Loop time the current transaction began (SMTP MAIL FROM), or None."""
        return None

    def reading_lines(self) -> bool:
        """The protocol is reading command lines, not message data or a literal."""
        return True

    async def wait_for_input(
        self,
        idle_timeout: float,
        *,
        poll: float | None = None,
        on_poll: Callable[[], Awaitable[None]] | None = None,
    ) -> Ended | None:
        """Wait for input the protocol has not seen: None when some came, else why to end.

        The serve loops call this when the protocol needs more bytes, so each
        turn of a loop either had fresh input or waited here. The peer's end
        of input (``Ended.LOST``) ends the session even with an unfinished
        line buffered: nothing can finish it any more, and a loop that went
        on would spin without awaiting (a POP3 ``CAPA`` without CRLF, then
        EOF, did). ``on_poll`` runs every ``poll`` seconds without input
        (IMAP IDLE looks for changes made elsewhere).
        """
        waiting_since = self.loop.time()
        while not self.fresh:
            if self.lost:
                return Ended.EVICTED if self.evicted else Ended.LOST
            if self.shutting_down:
                return Ended.SHUTDOWN
            now = self.loop.time()
            deadline, reason = self._nearest_deadline(waiting_since, idle_timeout)
            wait = deadline - now
            if wait <= 0:
                return reason
            if not self.authenticated:
                # Stress may begin meanwhile and shorten the deadlines: look again.
                wait = min(wait, self.policy.stress_timeout)
            if poll is not None:
                wait = min(wait, poll)
            readable = self._readable = self.loop.create_future()
            timer = self.loop.call_later(wait, _settle, readable)
            try:
                await readable
            finally:
                timer.cancel()
                self._readable = None
            if on_poll is not None and not self.fresh and not self.lost:
                await on_poll()
        self._note_input()
        return None

    def _nearest_deadline(self, waiting_since: float, idle_timeout: float) -> tuple[float, Ended]:
        policy = self.policy
        authenticated = self.authenticated
        stressed = not authenticated and self._gate is not None and self._gate.stressed
        short = policy.stress_timeout
        nearest = waiting_since + (min(idle_timeout, short) if stressed else idle_timeout)
        reason = Ended.IDLE
        if self._line_since is not None and self.reading_lines():
            limit = min(policy.line_timeout, short) if stressed else policy.line_timeout
            if self._line_since + limit < nearest:
                nearest, reason = self._line_since + limit, Ended.LINE
        if self.login_required and not authenticated:
            limit = min(policy.login_timeout, short) if stressed else policy.login_timeout
            if self.connected_at + limit < nearest:
                nearest, reason = self.connected_at + limit, Ended.LOGIN
        began = self.transaction_since()
        if began is not None and began + policy.transaction_timeout < nearest:
            nearest, reason = began + policy.transaction_timeout, Ended.TRANSACTION
        return nearest, reason

    def _note_input(self) -> None:
        """Tell the watchdog which command this loop is about to work on."""
        command = watchdog.command_name(self._input_head, self.command_word, self.command_names)
        watchdog.note(self.protocol_name, self.ip, command)

    async def write(self, data: bytes, timeout: float) -> None:
        """Write ``data``; if the peer does not read, wait up to ``timeout`` then abort."""
        if not data or self.transport is None or self.transport.is_closing():
            return
        self.transport.write(data)
        if self._writable is not None and not self._writable.done():
            try:
                await asyncio.wait_for(self._writable, timeout)
            except TimeoutError:
                self.transport.abort()
                self.lost = True

    async def upgrade_tls(
        self, context: ssl.SSLContext | None, timeout: float
    ) -> list[bytes] | None:
        """Do the server side of a TLS handshake; the bytes that came with it, or None."""
        if context is None or self.transport is None or self.lost:
            return None
        self._tls_early = []
        try:
            transport = await self.loop.start_tls(
                self.transport, self, context, server_side=True, ssl_handshake_timeout=timeout
            )
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError) as exc:
            reason = str(exc) or type(exc).__name__  # a bare close says nothing
            log.info("TLS handshake failed: %s", reason)
            metrics.tls_failed(self.listener)
            self.lost = True
            return None
        finally:
            early, self._tls_early = self._tls_early, None
        if transport is None:
            return None
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        tls = transport.get_extra_info("ssl_object")
        metrics.tls_negotiated(self.listener, tls.version() if tls is not None else None)
        return early

    def shutdown(self) -> None:
        """Ask the session to end at its next wait for input."""
        self.shutting_down = True
        self._wake()

    async def wait_closed(self) -> None:
        if self._task is not None:
            await asyncio.shield(self._task)

    # -- asyncio.Protocol -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.ip = peer[0] if peer else "unknown"
        if self._gate is not None and self._gate.expects_proxy_header(self.ip):
            # A load balancer's connection: nothing is read for the protocol
            # (or TLS) until its PROXY header says whose it is.
            transport.pause_reading()
            self._sessions.add(self)  # so that shutdown() reaches it
            self._task = self.loop.create_task(self._run_proxied(self.ip))
            return
        if not self._enter():
            return
        if self._implicit_tls is not None:
            # The ClientHello is for the TLS layer start_tls() puts in between,
            # not for the protocol: read nothing until it is there.
            transport.pause_reading()
        self._task = self.loop.create_task(self._run())

    def peer_known(self) -> None:
        """``self.ip`` is the client's address for good (after any PROXY header),
        and the gate admitted it: a subclass may record it."""

    def _enter(self) -> bool:
        """Admit ``self.ip`` at the gate (making room if the listener is full); False:
        refused, told so and closed."""
        transport = self.transport
        assert transport is not None
        if self._gate is not None:
            admission = self._gate.admit(self.ip)
            # Another worker may take the slot just freed: a few tries.
            for _ in range(3):
                if admission is not Admission.LISTENER_FULL or not self._make_room():
                    break
                admission = self._gate.admit(self.ip)
            if not admission:
                if self._implicit_tls is None:  # no words before a TLS handshake
                    transport.write(self.refusal.format(reason=admission.value).encode())
                transport.close()
                self._sessions.discard(self)
                return False
        self._admitted = True
        self._sessions.add(self)
        metrics.session_started(self.listener)
        self.peer_known()
        return True

    async def _run_proxied(self, balancer: str) -> None:
        """Read the PROXY header, then go on as any session, as the client it names."""
        logs.new_session(balancer, self.protocol_name[:1].lower())
        try:
            header = await self._read_proxy_header()
            if header is None or self.lost or self.shutting_down:
                return
            if header.source is not None:
                self.ip = header.source.address
            if not self._enter():
                return
        finally:
            if not self._admitted:  # refused, or a bug: nothing may stay open
                self._sessions.discard(self)
                if self.transport is not None:
                    self.transport.close()
        assert self.transport is not None
        if self._implicit_tls is None:
            # The octets after the header are the protocol's (with implicit
            # TLS, the handshake's: start_tls() resumes reading itself).
            self.transport.resume_reading()
        await self._run(via=balancer)

    async def _read_proxy_header(self) -> ProxyHeader | None:
        """The connection's PROXY header; None (one line logged) if it is bad, late or absent.

        The connection holds no slot meanwhile (the gate counts clients,
        not the balancer), so the header's deadline is what bounds it.
        """
        assert self._gate is not None and self.transport is not None
        limits = self._gate.proxy_limits
        deadline = self.loop.time() + limits.header_timeout
        reader: ProxyHeaderReader | None = None
        try:
            reader = ProxyHeaderReader(self.transport, limits.max_v2_payload)
            while True:
                header = reader.step()
                if header is not None:
                    return header
                if self.lost or self.shutting_down:
                    return None
                wait = deadline - self.loop.time()
                if wait <= 0:
                    raise ProxyHeaderError(
                        f"no complete PROXY header within {limits.header_timeout:g} s"
                    )
                readable = self._readable = self.loop.create_future()
                timer = self.loop.call_later(wait, _settle, readable)
                reader.watch(functools.partial(_settle, readable))
                try:
                    await readable
                finally:
                    timer.cancel()
                    reader.unwatch()
                    self._readable = None
        except ProxyHeaderError as exc:
            # proxy-protocol.txt §2.1: abort "as soon as possible so that the
            # sender gets a chance to notice the anomaly and log it".
            fields = logs.fields(protocol=self.protocol_name.lower())
            log.info("PROXY header refused: %s", exc.text, extra=fields)
            return None
        finally:
            if reader is not None:
                reader.close()

    def _make_room(self) -> bool:
        """Close this worker's oldest session of the listener that has not logged in
        and is not in a transaction (the slow-drip sockets, in an attack)."""
        idle = [
            s
            for s in self._sessions
            if s._admitted and not (s.authenticated or s.evicted) and s.transaction_since() is None
        ]
        if not idle:
            return False
        min(idle, key=lambda s: s.connected_at).evict()
        return True

    def evict(self) -> None:
        """Say why and close at once, freeing the slot now, not when the close completes."""
        self.evicted = True
        self.lost = True
        if self.transport is not None and not self.transport.is_closing():
            if self._tls_early is None:  # no plain text in the middle of a handshake
                self.transport.write(self.refusal.format(reason=Ended.EVICTED.value).encode())
            self.transport.close()
        self._release_slot()
        self._ended()

    def _release_slot(self) -> None:
        if self._admitted:
            self._admitted = False
            metrics.session_ended(self.listener)
            if self._gate is not None:
                self._gate.release(self.ip)
            self._sessions.discard(self)

    def data_received(self, data: bytes) -> None:
        if self._tls_early is not None:
            self._tls_early.append(data)
            return
        if not self.fresh:
            self._input_head = data[:64]
        self.track_lines(data)
        self.feed(data)
        self.fresh = True
        self._unread += len(data)
        if self._unread > self.read_high_water and not self._reading_paused and self.transport:
            self.transport.pause_reading()
            self._reading_paused = True
        self._wake()

    def track_lines(self, data: bytes) -> None:
        """Note where the input stands against the line deadline, which runs
        from the first byte after the last line feed. (A session whose bytes
        are compressed (IMAP COMPRESS) calls this with the inflated ones.)"""
        if data.endswith(b"\n"):
            self._line_since = None
        elif self._line_since is None or b"\n" in data:
            self._line_since = self.loop.time()

    def eof_received(self) -> bool | None:
        self.lost = True
        self._wake()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._ended()
        self._release_slot()

    async def _run(self, via: str | None = None) -> None:
        # This task's context: every line logged for the session, here or in
        # the threads it hands work to (logs.carry), names it and the peer.
        logs.new_session(self.ip, self.protocol_name[:1].lower())
        # proxy=: the load balancer whose PROXY header named the peer (None: left out).
        log.info("connect", extra=logs.fields(protocol=self.protocol_name.lower(), proxy=via))
        try:
            if self._implicit_tls is not None:
                context, timeout = self._implicit_tls
                if self._gate is not None and self._gate.stressed:
                    timeout = min(timeout, self.policy.stress_timeout)
                early = await self.upgrade_tls(context, timeout)
                if early is None:
                    return
                for data in early:
                    self.data_received(data)
            await self.serve()
        except Exception:
            log.exception("%s session with [%s] failed", self.protocol_name, self.ip)
            await self.failed()
        finally:
            if self.transport is not None:
                self.transport.close()
            await self.finished()
            log.info("disconnect", extra=logs.fields(protocol=self.protocol_name.lower()))


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
