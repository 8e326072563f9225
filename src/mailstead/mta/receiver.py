"""What an SMTP listener decides: who may send, to whom, and where mail goes.

The protocol object knows the grammar; this module knows the directory,
the relay rules of each listener role, and the durable hand-off of an
accepted message to the local mailboxes (MDA) and the outbound queue.
Its :meth:`Receiver.commit` returns only once every copy is fsynced, which
is what the 250 to DATA/BDAT promises (DESIGN.md §2).
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from mailstead.addresses import AddressError, split_address
from mailstead.directory import Directory, Resolution
from mailstead.limits import SMTPLimits
from mailstead.message import trace
from mailstead.mta.queue import Queue, QueuedRecipient, new_queue_id
from mailstead.peertext import log_text
from mailstead.proto.smtp import replies as R
from mailstead.proto.smtp.events import MailParams, Message, RcptParams
from mailstead.proto.smtp.replies import Reply
from mailstead.store import MailboxStore

log = logging.getLogger("mailstead.smtp")


class Role(enum.Enum):
    """The three listener roles of DESIGN.md §3."""

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
    ) -> None:
        self.role = role
        self.hostname = hostname
        self.primary_domain = domains[0] if domains else hostname
        self.directory = directory
        self.store = store
        self.queue = queue
        self.limits = limits
        # Called (from the delivery thread) after mail went into the queue.
        self.on_queued = on_queued

    # -- MAIL FROM / RCPT TO --------------------------------------------------

    def sender_reply(self, peer: Peer, sender: str, params: MailParams) -> Reply:
        # RFC 6409 §6.1: the MSA checks the sender against the authenticated
        # identity; nobody may send as somebody else.
        if self.role.is_submission and not (
            peer.user is not None and sender and self.directory.may_send_as(peer.user, sender)
        ):
            return Reply(553, "5.7.1", "Sender address not owned by authenticated user")
        return R.SENDER_OK

    def route(self, peer: Peer, recipient: str) -> tuple[Reply, Resolution | None]:
        """The reply to RCPT TO and, when it is 250, where the copies will go.

        The route is decided here, once, on the event loop; :meth:`commit`
        follows it without asking the directory again, so a 250 given at
        RCPT is honoured even if the directory changes before DATA ends.
        """
        if recipient == "postmaster":
            recipient = f"postmaster@{self.primary_domain}"
        try:
            _, domain = split_address(recipient)
            local = self.directory.is_local_domain(domain)
        except AddressError:
            return Reply(501, "5.1.3", "Bad recipient address syntax"), None
        if local:
            resolution = self.directory.resolve(recipient)
            if resolution is None:
                return R.NO_SUCH_USER, None
            return R.RECIPIENT_OK, resolution
        if self.role.is_submission and peer.user is not None:
            return R.RECIPIENT_OK, Resolution(mailboxes=(), remote=(recipient,))
        # Never an open relay: strangers may only send to our own domains.
        return R.RELAY_DENIED, None

    # -- the message ------------------------------------------------------------

    def commit(self, peer: Peer, message: Message, routes: Mapping[str, Resolution]) -> Reply:
        """Store every copy durably, then say 250; runs in a worker thread.

        ``routes`` maps each accepted recipient to what :meth:`route` said.
        """
        content = message.content
        hops = _count_received(content)
        if hops >= self.limits.max_received_headers:
            # RFC 5321 §6.3: a message that has looped must not go round again.
            return Reply(554, "5.4.6", "Too many Received headers: mail loop")
        # One id names the message everywhere: Received header, 250 reply,
        # log lines and, for remote recipients, the queue.
        queue_id = new_queue_id()
        now = time.time()
        sender = message.sender
        mailboxes: dict[str, str] = {}  # final mailbox -> the recipient it came from
        remote: dict[str, RcptParams] = {}
        for rcpt in message.recipients:
            resolution = routes[rcpt.address]
            for mailbox in resolution.mailboxes:
                mailboxes.setdefault(mailbox, rcpt.address)
            for target in resolution.remote:
                remote.setdefault(target, rcpt.params)
        stamp = datetime.fromtimestamp(now, UTC)
        # Maildir and mbox files use the Unix line ending.
        body_lf = content.replace(b"\r\n", b"\n") if mailboxes else b""
        try:
            for mailbox, original in mailboxes.items():
                trace = self._trace_headers(peer, message, queue_id, original, mailbox, stamp)
                self.store.deliver(mailbox, (trace, body_lf), sender, now)
            if remote:
                received = self._received(peer, message, queue_id, None, stamp)
                recipients = [
                    QueuedRecipient(address=a, notify=p.notify, orcpt=p.orcpt)
                    for a, p in remote.items()
                ]
                self.queue.enqueue(
                    sender,
                    recipients,
                    (received.replace(b"\n", b"\r\n"), content),
                    envid=message.mail_params.envid,
                    ret=message.mail_params.ret,
                    received_at=now,
                    queue_id=queue_id,
                )
                if self.on_queued is not None:
                    self.on_queued()
        except Exception:
            log.exception("%s: delivery failed", queue_id)
            return R.LOCAL_ERROR
        # Addresses are the peer's text: escaped, so they cannot forge a log line.
        log.info(
            "%s: from=<%s> to=%s size=%d client=[%s] user=%s",
            queue_id,
            log_text(sender),
            ",".join(f"<{log_text(r.address)}>" for r in message.recipients),
            len(content),
            peer.ip,
            log_text(peer.user or "-"),
        )
        return Reply(250, "2.0.0", f"Ok: queued as {queue_id}")

    def _trace_headers(
        self,
        peer: Peer,
        message: Message,
        queue_id: str,
        original: str,
        mailbox: str,
        stamp: datetime,
    ) -> bytes:
        # RFC 5321 §4.4: the final delivery adds Return-Path; Delivered-To
        # (Postfix/qmail practice) names the mailbox and lets loops be seen.
        return (
            trace.return_path(message.sender)
            + trace.delivered_to(mailbox)
            + self._received(peer, message, queue_id, original, stamp)
        )

    def _received(
        self,
        peer: Peer,
        message: Message,
        queue_id: str,
        recipient: str | None,
        stamp: datetime,
    ) -> bytes:
        # RFC 3848 protocol names: ESMTP + S (TLS) + A (authenticated).
        proto = "ESMTP" if peer.esmtp else "SMTP"
        if message.mail_params.smtputf8:
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


def _count_received(content: bytes) -> int:
    """Received headers in the header section (up to the first blank line)."""
    end = content.find(b"\r\n\r\n")
    header = content[: end + 2] if end >= 0 else content
    lowered = b"\r\n" + header.lower()
    return lowered.count(b"\r\nreceived:")
