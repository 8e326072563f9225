"""Binds the sans-IO :class:`SMTPServer` to an asyncio connection.

One :class:`SMTPSession` per TCP connection: it feeds received bytes to
the protocol, turns the protocol's events into calls on the
:class:`Receiver` (policy and storage) and writes replies back, one batch per
read so pipelined commands get pipelined replies. It also owns the things
only I/O can know: timeouts, TLS upgrades, flow control, slow AUTH failures.
"""

from __future__ import annotations

import functools
import logging
import ssl
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import replace

from mailstead import logs
from mailstead.events import EventSink
from mailstead.limits import ConnectionPolicy, SMTPLimits
from mailstead.mta.receiver import Delivery, Peer, Receiver, Refused
from mailstead.net.auth_penalty import AuthPenalty
from mailstead.net.listener import ConnectionGate
from mailstead.net.stream import DEFAULT_POLICY, Ended, StreamSession, implicit_tls
from mailstead.peertext import log_text
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
from mailstead.proto.smtp.replies import Reply
from mailstead.proto.smtp.server import COMMAND_NAMES, ServerSettings, SMTPServer

log = logging.getLogger("mailstead.smtp")

# The credential check: (authcid, password, authzid) -> canonical user or None.
AuthFunc = Callable[[str, str, str], str | None]


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
        policy: ConnectionPolicy = DEFAULT_POLICY,
        penalty: AuthPenalty | None = None,
        events: EventSink | None = None,
    ) -> None:
        self.settings = settings
        self.policy = policy
        self.penalty = penalty
        # auth.succeeded / auth.failed go here (net/stream.py check_login).
        self.events = events
        self.limits: SMTPLimits = settings.limits
        self.receiver = receiver
        self.executor = executor
        self.authenticate = authenticate
        self.tls_context = tls_context
        self.implicit_tls = implicit_tls(
            settings.secure, tls_context, self.limits.tls_handshake_timeout
        )
        self.gate = gate
        self.sessions: set[StreamSession] = set()

    def protocol_factory(self) -> SMTPSession:
        return SMTPSession(self)


class SMTPSession(StreamSession):
    """One SMTP connection: I/O, timeouts and TLS around the sans-IO state machine."""

    refusal = "421 4.7.0 {reason}, try again later\r\n"
    protocol_name = "SMTP"
    command_names = COMMAND_NAMES

    def __init__(self, service: SMTPService) -> None:
        super().__init__(service)
        settings = service.settings
        self.service = service
        self.listener = service.receiver.role.value
        self.login_required = settings.auth_required
        self.conn = SMTPServer(settings)
        self.peer = Peer(ip="unknown", tls=settings.secure)
        # The transaction MAIL FROM started (None outside one).
        self._delivery: Delivery | None = None
        self._transaction_since: float | None = None

    @property
    def authenticated(self) -> bool:
        return self.conn.authenticated_user is not None

    def transaction_since(self) -> float | None:
        if not self.conn.in_transaction:
            self._transaction_since = None
        elif self._transaction_since is None:
            self._transaction_since = self.loop.time()
        return self._transaction_since

    def reading_lines(self) -> bool:
        return not self.conn.in_data

    def peer_known(self) -> None:
        self.peer = Peer(ip=self.ip, tls=self.service.settings.secure)

    def feed(self, data: bytes) -> None:
        self.conn.receive_data(data)

    async def failed(self) -> None:
        self.conn.close(R.LOCAL_ERROR)
        await self._flush()

    async def serve(self) -> None:
        await self._serve()

    async def _serve(self) -> None:
        conn = self.conn
        receiver = self.service.receiver
        while True:
            # Bytes that arrive while we flush or wait below set `fresh` again,
            # so they are never left unread in the buffer.
            self.fresh = False
            event = conn.next_event()
            if event is NEED_DATA:
                self.consumed()
                await self._flush()
                if conn.closing or not await self._wait_for_input():
                    return
            elif isinstance(event, MailFrom):
                try:
                    self._delivery = receiver.start(self.peer, event.sender, event.params)
                    conn.reply(R.SENDER_OK)
                except Refused as refused:
                    self._delivery = None
                    self._log_refusal("MAIL", refused, event.sender, None)
                    conn.reply(refused.reply)
            elif isinstance(event, RcptTo):
                conn.reply(self._add_rcpt(event))
            elif isinstance(event, Message):
                conn.reply(await self._deliver(event))
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

    def _add_rcpt(self, event: RcptTo) -> Reply:
        if self._delivery is None:  # pragma: no cover - the protocol orders MAIL before RCPT
            raise RuntimeError("RCPT outside a transaction")
        try:
            self._delivery.add_rcpt(event.recipient, event.params)
        except Refused as refused:
            self._log_refusal("RCPT", refused, self._delivery.sender, event.recipient)
            return refused.reply
        return R.RECIPIENT_OK

    async def _deliver(self, event: Message) -> Reply:
        delivery, self._delivery = self._delivery, None
        if delivery is None:  # pragma: no cover - the protocol orders MAIL before DATA
            raise RuntimeError("DATA outside a transaction")
        finished = await self.loop.run_in_executor(
            self.service.executor, logs.carry(_finish, delivery, event.content)
        )
        if isinstance(finished, Refused):
            self._log_refusal("DATA", finished, delivery.sender, None)
            return finished.reply
        return finished

    def _log_refusal(
        self, stage: str, refused: Refused, sender: str, recipient: str | None
    ) -> None:
        """A refused transaction, as Postfix's smtpd logs it (``NOQUEUE: reject: RCPT from …``)."""
        peer = self.peer
        reply = refused.reply
        about = recipient if recipient is not None else sender
        text = " ".join(reply.lines)
        # Addresses and the EHLO name are the peer's text: escaped by log_text.
        line = (
            f"NOQUEUE: reject: {stage} from unknown[{peer.ip}]: {reply.code} {reply.enhanced} "
            f"<{log_text(about)}>: {_REJECTED[stage]}: {text}; from=<{log_text(sender)}>"
        )
        if recipient is not None:
            line += f" to=<{log_text(recipient)}>"
        line += f" proto={'ESMTP' if peer.esmtp else 'SMTP'} helo=<{log_text(peer.helo)}>"
        log.info(line, extra=logs.fields(status="reject", cause=refused.cause))

    async def _wait_for_input(self) -> bool:
        """Wait for bytes; False when the session ends (after a 421 saying why)."""
        limits = self.service.limits
        ended = await self.wait_for_input(
            limits.data_timeout if self.conn.in_data else limits.idle_timeout
        )
        if ended is None:
            return True
        if ended not in (Ended.LOST, Ended.EVICTED):
            self.conn.close(_ENDED_REPLIES[ended])
            await self._flush()
        return False

    async def _flush(self) -> None:
        await self.write(self.conn.data_to_send(), self.service.limits.idle_timeout)

    async def _authenticate(self, event: AuthRequest) -> None:
        creds = event.credentials
        check = self.service.authenticate
        if check is None:  # pragma: no cover - AUTH is only offered with a check
            self.conn.auth_result(None)
            return
        user, blocked = await self.check_login(
            functools.partial(check, creds.authcid, creds.password, creds.authzid),
            executor=self.service.executor,
            failure_delay=self.service.limits.auth_failure_delay,
            mechanism=event.mechanism,
            authcid=creds.authcid,
        )
        if user is not None:
            self.peer = replace(self.peer, user=user)
        self.conn.auth_result(user, blocked=blocked)

    async def _start_tls(self) -> bool:
        await self._flush()
        limits = self.service.limits
        # Plaintext that came before this point was dropped by the protocol
        # (RFC 3207 §4.2); what comes from now on is decrypted.
        early = await self.upgrade_tls(self.service.tls_context, limits.tls_handshake_timeout)
        if early is None:
            return False
        self.conn.tls_started()
        self.peer = replace(self.peer, tls=True, helo="", user=None)
        for data in early:
            self.feed(data)
        return True


def _finish(delivery: Delivery, content: bytes) -> Reply | Refused:
    """Stage and commit the message (in a worker thread): the 250, or the refusal."""
    try:
        delivery.body(content)
        return delivery.commit().reply
    except Refused as refused:
        delivery.abort()
        return refused


# What Postfix's smtpd says a refusal at each stage was about.
_REJECTED = {
    "MAIL": "Sender address rejected",
    "RCPT": "Recipient address rejected",
    "DATA": "Message content rejected",
}


# The last word to a session that ends without input (limits.ConnectionPolicy).
_ENDED_REPLIES = {
    Ended.SHUTDOWN: R.SHUTTING_DOWN,
    Ended.IDLE: R.TIMEOUT,
    Ended.LINE: R.LINE_TIMEOUT,
    Ended.LOGIN: R.LOGIN_TIMEOUT,
    Ended.TRANSACTION: R.TRANSACTION_TIMEOUT,
}
