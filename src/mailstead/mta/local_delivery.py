"""Queued mail for our own domains, delivered to the mailboxes by the outbound MTA.

Recipients reach the queue although they are local when an alias was
added after the message was queued, or on a retry of a local delivery
that failed; :func:`deliver` puts one recipient's copies in place.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from mailstead import metrics
from mailstead.directory import Directory
from mailstead.durable import Staged, discard, publish_all
from mailstead.events import Event, EventSink, stored_at
from mailstead.message import trace
from mailstead.mta import mail_events
from mailstead.mta.envelope import QueuedMessage
from mailstead.mta.quota import MAILBOX_FULL, mailbox_full
from mailstead.peertext import log_text
from mailstead.proto.smtp.client_events import Outcome
from mailstead.proto.smtp.replies import Reply
from mailstead.store import MailboxStore, StagedCopy

__all__ = ["LocalResult", "deliver"]

log = logging.getLogger("mailstead.outbound")


@dataclass(frozen=True, slots=True)
class LocalResult:
    """One recipient's fate, and the ``message.received`` events it owes."""

    outcome: Outcome
    reply: Reply
    events: list[Event] = field(default_factory=list)


def deliver(
    message: QueuedMessage,
    recipient: str,
    body: bytes,
    *,
    directory: Directory,
    store: MailboxStore,
    sink: EventSink | None,
    max_body_bytes: int,
) -> LocalResult:
    """Store ``body`` (LF line ends) in every mailbox ``recipient`` resolves to."""
    resolution = directory.resolve(recipient)
    if resolution is None or not resolution.mailboxes:
        return LocalResult(Outcome.FAILED, Reply(550, "5.1.1", "No such user here"))
    mailboxes = sorted(resolution.mailboxes)
    size = len(body) + body.count(b"\n")  # as the index counts it, with CRLF
    if any(
        mailbox_full(directory, store, m, size, quota=resolution.quota_of(m)) for m in mailboxes
    ):
        # RFC 3463 4.2.2, temporary: the queue retries until there is room.
        return LocalResult(Outcome.DEFERRED, MAILBOX_FULL)
    started = time.perf_counter()
    staged: list[Staged] = []
    copies: dict[str, StagedCopy] = {}
    try:
        # All of the recipient's mailboxes or none, so the retry after a
        # failure gives no mailbox a second copy.
        for mailbox in mailboxes:
            headers = trace.final_delivery(message.sender, mailbox)
            copy = store.stage(mailbox, (headers, body), message.sender, message.received_at)
            staged.append(copy)
            copies[mailbox] = copy
        publish_all(staged)
    except OSError as exc:
        discard(staged)  # those staged before the failure
        # The queue id comes from the context (logs.queue_id, set by the caller).
        log.error("local delivery to <%s> failed: %s", log_text(recipient), log_text(str(exc)))
        return LocalResult(Outcome.DEFERRED, Reply(451, "4.3.0", "Local delivery failed"))
    metrics.local_delivery_time(time.perf_counter() - started)
    events = []
    if sink is not None and sink.wants("message.received"):
        received = mail_events.received(
            [(mailbox, recipient) for mailbox in mailboxes],
            queue_id=message.id,
            mail_from=message.sender,
            content=body,
            client=None,
            max_body_bytes=max_body_bytes,
            received_at=message.received_at,
        )
        # Where each copy went: the event tells the UID it got (store.delivered).
        events = stored_at(received, {m: c.stored_as.encode() for m, c in copies.items()})
    return LocalResult(Outcome.DELIVERED, Reply(250, "2.0.0", "OK"), events)
