"""What an SMTP listener decides: who may send, to whom, and where mail goes.

The protocol object knows the grammar; this module knows the directory,
the relay rules of each listener role, and the durable hand-off of an
accepted message to the local mailboxes (MDA) and the outbound queue.

One SMTP transaction is one :class:`Delivery`, after maddy's delivery
target: :meth:`Receiver.start` at MAIL FROM, :meth:`Delivery.add_rcpt` per
RCPT TO, :meth:`Delivery.body` when the message is in, then
:meth:`Delivery.commit` or :meth:`Delivery.abort`. The contract:

* ``start`` and ``add_rcpt`` decide and store nothing; a refusal is a
  :class:`Refused` carrying the reply for the client.
* ``body`` makes no visible change: it writes and fsyncs every copy where no
  reader looks (Maildir ``tmp/``, a queue file without its rows, mbox bytes
  in memory). A failure there discards what was staged: the 451 leaves
  nothing behind that a retry would duplicate.
* ``commit`` publishes every copy (queue rows, message.received events,
  links into ``new/``, mbox appends under their locks) or, if one fails,
  takes the others back. When it returns, every accepted recipient's copy
  is durable: that is what the 250 to DATA/BDAT promises
  (docs/durability.md). Its events are published with it, before any copy
  a reader could see: a crash may leave an event of a message that got no
  250 (the client's retry brings it again), never a message without its
  event.
* ``abort`` drops whatever ``body`` staged; calling it twice, or after
  ``commit``, does nothing.

``body`` and ``commit`` block on disk writes: sessions run them in a worker
thread, never on the event loop.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from mailstead import logs, metrics
from mailstead.addresses import AddressError, split_address
from mailstead.directory import Directory, DirectoryError, Resolution
from mailstead.durable import Staged, discard, publish_all
from mailstead.events import Event, stored_at
from mailstead.limits import SMTPLimits, WebhookLimits
from mailstead.mailauth.hook import BodyOutcome, Checks, Client, Verdict
from mailstead.mailauth.junk import JUNK, stage_junk
from mailstead.message import trace
from mailstead.mta import mail_events
from mailstead.mta.envelope import QueuedRecipient, new_queue_id
from mailstead.mta.queue import Queue
from mailstead.mta.quota import MAILBOX_FULL, mailbox_full
from mailstead.peertext import log_text
from mailstead.pgsql.connect import DATABASE_ERRORS
from mailstead.proto.smtp import replies as R
from mailstead.proto.smtp.events import MailParams, RcptParams
from mailstead.proto.smtp.replies import Reply
from mailstead.store import MailboxStore, StagedCopy

log = logging.getLogger("mailstead.smtp")

# Postfix's words for a lookup that failed for now (trivial-rewrite, smtpd).
_LOOKUP_FAILED = Reply(451, "4.3.0", "Temporary lookup failure")
_LOOKUP_ERRORS: tuple[type[Exception], ...] = (DirectoryError, OSError, *DATABASE_ERRORS)


@contextlib.contextmanager
def _lookups() -> Iterator[None]:
    """The directory's or the store's failures (a database away, a file that
    cannot be read) as a 451 refusal of this command: the session goes on,
    and the client tries again later."""
    try:
        yield
    except _LOOKUP_ERRORS as exc:
        reason = str(exc).strip().splitlines()
        log.warning("lookup failed: %s", log_text(reason[0] if reason else type(exc).__name__))
        raise Refused(_LOOKUP_FAILED) from None


class Role(enum.Enum):
    """The three listener roles of the external contract (docs/config.md)."""

    MTA = "smtp"  # mail from other servers, for our domains only
    MSA = "submission"  # our users, STARTTLS then AUTH
    MSA_TLS = "submissions"  # our users over implicit TLS (RFC 8314)

    @property
    def is_submission(self) -> bool:
        return self is not Role.MTA


@dataclass(frozen=True, slots=True)
class Peer:
    """What the session knows about the client, for policy and trace headers."""

    ip: str
    helo: str = ""
    tls: bool = False
    user: str | None = None
    esmtp: bool = True


class Refused(Exception):
    """The receiver says no. ``reply`` is what the client is told; ``cause``
    is the internal reason, for the log and the operator, never the peer."""

    def __init__(self, reply: Reply, cause: str | None = None) -> None:
        super().__init__(reply.one_line())
        self.reply = reply
        self.cause = cause


@dataclass(frozen=True, slots=True)
class Committed:
    """A message every accepted recipient's copy of which is on disk."""

    #: The id that names the message in its Received header, the 250 reply,
    #: the log and, when something went to the queue, the queue.
    queue_id: str
    #: The 250 to DATA/BDAT ("Ok: queued as <queue_id>").
    reply: Reply
    #: Local mailboxes that got their copy.
    local: tuple[str, ...]
    #: Remote addresses handed to the outbound queue (empty: nothing queued).
    remote: tuple[str, ...]


class Receiver:
    """Policy and hand-off for one listener role.

    Owns no state across sessions; the directory, the store and the queue
    are passed in so tests can use temporary ones.
    """

    def __init__(
        self,
        role: Role,
        *,
        hostname: str,
        domains: Sequence[str],
        directory: Directory,
        store: MailboxStore,
        queue: Queue,
        limits: SMTPLimits,
        on_queued: Callable[[], None] | None = None,
        checks: Checks | None = None,
    ) -> None:
        self.role = role
        self.hostname = hostname
        self.primary_domain = domains[0] if domains else hostname
        self.directory = directory
        self.store = store
        self.queue = queue
        self.limits = limits
        self.webhook_limits = WebhookLimits()
        # Called (from the delivery thread) after mail went into the queue.
        self.on_queued = on_queued
        # The check hook (SPF, DKIM, DMARC …; mailauth/hook.py); None: no checks.
        self.checks = checks

    def start(self, peer: Peer, sender: str, params: MailParams) -> Delivery:
        """MAIL FROM: a new transaction, or :class:`Refused`."""
        # RFC 6409 §6.1: the MSA checks the sender against the authenticated
        # identity; nobody may send as somebody else.
        if self.role.is_submission:
            with _lookups():
                owned = (
                    peer.user is not None
                    and bool(sender)
                    and self.directory.may_send_as(peer.user, sender)
                )
            if not owned:
                raise Refused(Reply(553, "5.7.1", "Sender address not owned by authenticated user"))
        if self.checks is not None:
            client = _client(peer)
            _obey(self.checks.connection(client))
            _obey(self.checks.sender(client, sender))
        return Delivery(self, peer, sender, params)

    def route(self, peer: Peer, recipient: str) -> Resolution:
        """Where the copies for ``recipient`` go, or :class:`Refused` (the RCPT reply).

        The route is decided here, once, on the event loop; the commit
        follows it without asking the directory again, so a 250 given at
        RCPT is honoured even if the directory changes before DATA ends.
        """
        if recipient == "postmaster":
            recipient = f"postmaster@{self.primary_domain}"
        try:
            _, domain = split_address(recipient)
            local = self.directory.is_local_domain(domain)
        except AddressError:
            raise Refused(Reply(501, "5.1.3", "Bad recipient address syntax")) from None
        if local:
            with _lookups():
                resolution = self.directory.resolve(recipient)
            if resolution is None:
                raise Refused(R.NO_SUCH_USER)
            return resolution
        if self.role.is_submission and peer.user is not None:
            return Resolution(mailboxes=(), remote=(recipient,))
        # Never an open relay: strangers may only send to our own domains.
        raise Refused(R.RELAY_DENIED)

    def received_header(
        self,
        peer: Peer,
        params: MailParams,
        queue_id: str,
        recipient: str | None,
        stamp: datetime,
    ) -> bytes:
        """The Received field this listener adds to a message (RFC 5321 §4.4)."""
        # RFC 3848 protocol names: ESMTP + S (TLS) + A (authenticated).
        proto = "ESMTP" if peer.esmtp else "SMTP"
        if params.smtputf8:
            proto = "UTF8" + proto
        if peer.tls:
            proto += "S"
        if peer.user is not None:
            proto += "A"
        # The EHLO name and the recipient are the peer's text: trace.received
        # keeps every control character out of the header (RFC 5322 §2.2).
        return trace.received(
            helo=peer.helo,
            ip=peer.ip,
            by=self.hostname,
            protocol=proto,
            queue_id=queue_id,
            recipient=recipient,
            stamp=stamp,
        )


class Delivery:
    """One transaction from MAIL FROM to the end of DATA/BDAT (see the module docstring)."""

    def __init__(self, receiver: Receiver, peer: Peer, sender: str, params: MailParams) -> None:
        self.receiver = receiver
        self.peer = peer
        self.sender = sender
        self.params = params
        # Accepted recipients in RCPT order, each with where it goes.
        self._routes: dict[str, tuple[RcptParams, Resolution]] = {}
        self._staged: list[Staged] = []
        self._queue_id = ""
        self._size = 0
        self._received_at = 0.0
        self._local: tuple[str, ...] = ()
        self._remote: tuple[str, ...] = ()
        self._checked = BodyOutcome(b"")

    def add_rcpt(self, recipient: str, params: RcptParams) -> None:
        """RCPT TO: accept ``recipient`` or raise :class:`Refused`."""
        resolution = self.receiver.route(self.peer, recipient)
        with _lookups():
            self._refuse_if_full(resolution)
        checks = self.receiver.checks
        if checks is not None:
            _obey(checks.recipient(_client(self.peer), self.sender, recipient))
        self._routes.setdefault(recipient, (params, resolution))

    def _refuse_if_full(self, resolution: Resolution) -> None:
        """452 4.2.2 at RCPT when every mailbox the recipient reaches is full already."""
        receiver = self.receiver
        if resolution.mailboxes and not resolution.remote:
            directory, store = receiver.directory, receiver.store
            if all(
                mailbox_full(directory, store, m, quota=resolution.quota_of(m))
                for m in resolution.mailboxes
            ):
                raise Refused(MAILBOX_FULL)

    def _defer_full(
        self, mailboxes: dict[str, str], remote: dict[str, RcptParams], size: int
    ) -> None:
        """The mailboxes this message would take over quota: their copies wait in
        the queue, whose local delivery retries them (a 452 there too); with no
        other copy to make, the whole message gets the 452."""
        receiver = self.receiver
        directory, store = receiver.directory, receiver.store
        full = [
            m
            for m, recipient in mailboxes.items()
            if mailbox_full(directory, store, m, size, quota=self._routes[recipient][1].quota_of(m))
        ]
        if not full:
            return
        if len(full) == len(mailboxes) and not remote:
            raise Refused(MAILBOX_FULL)
        for mailbox in full:
            remote.setdefault(mailbox, self._routes[mailboxes.pop(mailbox)][0])

    def body(self, content: bytes) -> None:
        """Stage every copy of ``content`` (CRLF); visible nowhere until :meth:`commit`."""
        receiver = self.receiver
        if _count_received(content) >= receiver.limits.max_received_headers:
            # RFC 5321 §6.3: a message that has looped must not go round again.
            raise Refused(Reply(554, "5.4.6", "Too many Received headers: mail loop"))
        # One id names the message everywhere: Received header, 250 reply,
        # log lines and, for remote recipients, the queue.
        queue_id = new_queue_id()
        # Lines logged meanwhile name it; the caller's context is left as it was.
        with logs.queue_id(queue_id):
            checks = receiver.checks
            if checks is not None:
                # Before anything is staged: the verdict may refuse the message,
                # and the stored copy carries our Authentication-Results field.
                self._checked = checks.body(
                    _client(self.peer), self.sender, list(self._routes), content
                )
                if self._checked.refusal is not None:
                    raise Refused(self._checked.refusal, cause=self._checked.cause)
                content = self._checked.content
            self._stage(content, queue_id)

    def _stage(self, content: bytes, queue_id: str) -> None:
        receiver = self.receiver
        now = time.time()
        mailboxes: dict[str, str] = {}  # final mailbox -> the recipient it came from
        remote: dict[str, RcptParams] = {}
        for rcpt, (params, resolution) in self._routes.items():
            for mailbox in resolution.mailboxes:
                mailboxes.setdefault(mailbox, rcpt)
            for target in resolution.remote:
                remote.setdefault(target, params)
        self._defer_full(mailboxes, remote, len(content))
        stamp = datetime.fromtimestamp(now, UTC)
        staged: list[Staged] = []
        try:
            if remote:
                # The queue goes first: its COMMIT is the step most likely to
                # fail (a busy database), and nothing is visible before it.
                received = receiver.received_header(self.peer, self.params, queue_id, None, stamp)
                # Mail forwarded to an alias's remote targets leaves ARC-sealed.
                seal = self._arc_seal(content)
                staged_queue = receiver.queue.stage(
                    self.sender,
                    [QueuedRecipient(a, notify=p.notify, orcpt=p.orcpt) for a, p in remote.items()],
                    (seal, received.replace(b"\n", b"\r\n"), content),
                    envid=self.params.envid,
                    ret=self.params.ret,
                    received_at=now,
                    queue_id=queue_id,
                )
                staged.append(staged_queue)
                queue_id = staged_queue.queue_id
                logs.set_queue_id(queue_id)
            # Maildir and mbox files use the Unix line ending.
            body_lf = content.replace(b"\r\n", b"\n") if mailboxes else b""
            # Sorted: mbox copies hold their locks until every copy is in, so
            # every delivery takes them in the same order.
            copies: dict[str, StagedCopy] = {}
            for mailbox in sorted(mailboxes):
                headers = trace.final_delivery(self.sender, mailbox) + receiver.received_header(
                    self.peer, self.params, queue_id, mailboxes[mailbox], stamp
                )
                stage = stage_junk if self._checked.junk else _stage_inbox
                copy = stage(receiver.store, mailbox, (headers, body_lf), self.sender, now)
                staged.append(copy)
                copies[mailbox] = copy
            events = self._received_events(queue_id, mailboxes, content, now)
            if events and receiver.queue.events is not None:
                # Where each copy goes: the event tells the UID it got (store.delivered).
                events = stored_at(events, {m: c.stored_as.encode() for m, c in copies.items()})
                # After the queue copy, before the mailboxes: the event is in
                # before any copy a reader could see, and taken back with them.
                staged.insert(1 if remote else 0, receiver.queue.events.stage(events))
        except Exception as exc:
            discard(staged)
            log.exception("staging the message failed")
            raise Refused(R.LOCAL_ERROR, cause=str(exc)) from None
        self.abort()  # a second body() replaces the first
        self._staged = staged
        self._queue_id = queue_id
        self._size = len(content)
        self._received_at = now
        self._local = tuple(mailboxes)
        self._remote = tuple(remote)

    def _arc_seal(self, content: bytes) -> bytes:
        """The ARC set (RFC 8617) for the queued copy of mail from another server
        that an alias forwards to remote targets, made with the key of the
        alias's domain (the first such recipient's); b"" for anything else."""
        receiver = self.receiver
        checks = receiver.checks
        if checks is None or receiver.role.is_submission:
            return b""
        for rcpt, (_, resolution) in self._routes.items():
            if resolution.remote:
                try:
                    domain = split_address(rcpt)[1]
                except AddressError:  # a bare "postmaster"
                    domain = receiver.primary_domain
                return checks.seal_forwarded(content, domain)
        return b""

    def _received_events(
        self, queue_id: str, mailboxes: dict[str, str], content: bytes, now: float
    ) -> list[Event]:
        """message.received for each local copy, if anyone subscribed."""
        sink = self.receiver.queue.events
        if not mailboxes or sink is None or not sink.wants("message.received"):
            return []
        peer = self.peer
        client = {"ip": peer.ip, "helo": peer.helo, "tls": peer.tls, "user": peer.user}
        return mail_events.received(
            sorted(mailboxes.items()),
            queue_id=queue_id,
            mail_from=self.sender,
            content=content,
            client=client,
            max_body_bytes=self.receiver.webhook_limits.max_body_bytes,
            received_at=now,
            folder=JUNK if self._checked.junk else "INBOX",
            extra=self._checked.event,
        )

    def commit(self) -> Committed:
        """Publish every staged copy, or none of them (:class:`Refused` with a 451)."""
        if not self._staged:
            raise RuntimeError("commit() without a staged body()")
        staged, self._staged = self._staged, []
        queue_id = self._queue_id
        try:
            with logs.queue_id(queue_id):
                publish_all(staged)
        except Exception as exc:
            log.exception("delivery failed", extra=logs.fields(queue_id=queue_id))
            raise Refused(R.LOCAL_ERROR, cause=str(exc)) from None
        receiver = self.receiver
        if self._remote and receiver.on_queued is not None:
            receiver.on_queued()
        self._log_commit(queue_id)
        self._count_commit()
        return Committed(
            queue_id=queue_id,
            reply=Reply(250, "2.0.0", f"Ok: queued as {queue_id}"),
            local=self._local,
            remote=self._remote,
        )

    def _log_commit(self, queue_id: str) -> None:
        """The message's arrival, and a Postfix-style line per local mailbox it reached."""
        # Addresses are the peer's text: escaped, so they cannot forge a log line.
        arrived = {
            "queue_id": queue_id,
            "from": f"<{log_text(self.sender)}>",
            "to": ",".join(f"<{log_text(r)}>" for r in self._routes),
            "size": self._size,
            "user": self.peer.user,
            "local": len(self._local),
            "queued": len(self._remote),
            **self._checked.log,  # spf=, dkim=, dmarc= when checked
        }
        if self._checked.junk:
            arrived["folder"] = JUNK
        log.info("received", extra=logs.fields(**arrived))
        delay = f"{max(0.0, time.time() - self._received_at):.2f}"
        for mailbox in self._local:
            local = logs.fields(
                queue_id=queue_id,
                to=f"<{log_text(mailbox)}>",
                relay="local",
                delay=delay,
                dsn="2.0.0",
                status="sent",
            )
            log.info("delivered to mailbox", extra=local)

    def _count_commit(self) -> None:
        """Metrics: the recipients received, the mailbox copies delivered and how long they took."""
        sender = self.sender
        labels = [metrics.domain_label(r, sender) for r in self._routes]
        metrics.messages_received(self.receiver.role.value, labels)
        for mailbox in self._local:
            metrics.message_outcome("delivered", "local", metrics.domain_label(mailbox))
        if self._local:
            metrics.local_delivery_time(time.time() - self._received_at)

    def abort(self) -> None:
        """Drop what :meth:`body` staged."""
        staged, self._staged = self._staged, []
        discard(staged)


def _obey(verdict: Verdict | None) -> None:
    """Raise the refusal a check's verdict carries, if it carries one."""
    if verdict is not None and verdict.refusal is not None:
        raise Refused(verdict.refusal, cause=verdict.cause)


def _client(peer: Peer) -> Client:
    return Client(ip=peer.ip, helo=peer.helo, user=peer.user, tls=peer.tls)


def _stage_inbox(
    store: MailboxStore, mailbox: str, parts: Sequence[bytes], sender: str, now: float
) -> StagedCopy:
    return store.stage(mailbox, parts, sender, now)


def _count_received(content: bytes) -> int:
    """Received headers in the header section (up to the first blank line)."""
    end = content.find(b"\r\n\r\n")
    header = content[: end + 2] if end >= 0 else content
    lowered = b"\r\n" + header.lower()
    return lowered.count(b"\r\nreceived:")
