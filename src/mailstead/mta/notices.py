"""What the sender of a queued message is told: DSNs (RFC 3464) and failure events.

The outbound engine decides each recipient's fate; this module turns the
fates the sender should hear of into a DSN queued for the sender, and into
``message.bounced`` / ``message.expired`` events for webhooks.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence

from mailstead.events import Event, EventSink
from mailstead.mta import dsn, mail_events, schedule
from mailstead.mta.envelope import QueuedMessage, QueuedRecipient, RecipientStatus
from mailstead.mta.queue import Queue
from mailstead.proto.smtp.replies import Reply

__all__ = ["Notice", "failure_events", "last_reply", "queue_dsn"]

#: A recipient, the reply that decided its fate, and the host that gave it.
Notice = tuple[RecipientStatus, Reply, str | None]


def queue_dsn(
    queue: Queue,
    message: QueuedMessage,
    kind: dsn.DsnKind,
    entries: Sequence[Notice],
    *,
    reporting_mta: str,
    max_lifetime: int,
    original: bytes,
    now: float,
) -> bool:
    """Queue a DSN to the sender of ``message`` for ``entries``; False if none is owed."""
    if dsn.is_bounce(message.sender):
        return False  # RFC 3461 §6.1: never a bounce for a bounce
    wanted = [e for e in entries if dsn.should_notify(kind, e[0].notify)]
    if not wanted:
        return False
    until = schedule.deadline(message.received_at, max_lifetime)
    reports = [
        dsn.RecipientReport(
            final_recipient=rcpt.address,
            # RFC 3464 §2.3.3: "relayed" when the next hop cannot report.
            action=kind if kind != "delivered" else ("relayed" if remote else "delivered"),
            status=dsn.status_from_reply(reply),
            original_recipient=rcpt.orcpt,
            remote_mta=remote.split(" ")[0] if remote else None,
            # RFC 3464 §2.3.6: the remote's reply, or the reason we decided.
            diagnostic_code=dsn.smtp_diagnostic(reply) if remote else dsn.local_diagnostic(reply),
            last_attempt=now,
            will_retry_until=until if kind == "delayed" else None,
        )
        for rcpt, reply, remote in wanted
    ]
    report = dsn.build_dsn(
        kind,
        reporting_mta=reporting_mta,
        original_envelope=dsn.OriginalEnvelope(
            message.sender, message.id, message.received_at, message.envid, message.ret
        ),
        recipients=reports,
        original_message=original,
        now=now,
    )
    queue.enqueue(dsn.DSN_SENDER, [QueuedRecipient(message.sender)], [report], received_at=now)
    return True


def failure_events(
    sink: EventSink,
    message: QueuedMessage,
    failures: Sequence[Notice],
    expired: Collection[str],
    notified: bool,
) -> list[Event]:
    """message.bounced or message.expired for each failed recipient."""
    events = []
    for rcpt, reply, remote in failures:
        # Whether this recipient's failure was in the DSN that went out.
        dsn_sent = notified and dsn.should_notify("failed", rcpt.notify)
        if rcpt.address in expired:
            if sink.wants("message.expired"):
                events.append(
                    mail_events.expired(
                        message.id,
                        message.sender,
                        rcpt.address,
                        rcpt.attempts + 1,
                        " ".join(reply.lines),
                        dsn_sent,
                    )
                )
        elif sink.wants("message.bounced"):
            events.append(
                mail_events.bounced(
                    message.id,
                    message.sender,
                    rcpt.address,
                    rcpt.attempts + 1,
                    reply,
                    remote,
                    dsn_sent,
                )
            )
    return events


# What the outbound engine stores as last_error: "[host [ip] said: ]code enhanced text".
_REMOTE = r"(?:(?P<remote>.+) said: )?"
_REPLY = r"(?P<code>[245]\d\d) (?P<enhanced>[245]\.\d{1,3}\.\d{1,3}) ?(?P<text>.*)"
# DOTALL: with "." stopping at a line feed, every " said: " was tried again
# up to it, quadratic in the error's length.
_ERROR = re.compile(_REMOTE + _REPLY, re.DOTALL)


def last_reply(error: str | None) -> tuple[Reply, str | None]:
    """The reply (and remote host) a stored ``last_error`` came from, for a DSN."""
    m = _ERROR.fullmatch(error or "")
    if m is None:
        return Reply(451, "4.0.0", error or "Delivery delayed"), None
    reply = Reply(int(m["code"]), m["enhanced"], m["text"])
    return reply, m["remote"]
