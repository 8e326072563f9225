"""The event model: what happened to mail, as webhooks, logs and metrics see it.

An :class:`Event` is one fact (a message was received, a delivery attempt
was deferred, a flag changed, a login failed) with an id, a dotted type, a
time, the account and domain it belongs to, and JSON-ready ``data`` whose
shape each type documents (docs/webhooks.md has a full example of each).
The payload carries ``version``; a change that could break a consumer
raises :data:`VERSION` rather than reusing a field.

Code that makes events never knows who consumes them: it is given an
:class:`EventSink` (the webhook outbox, or nothing) and asks
:meth:`EventSink.wants` first, so an expensive payload is built only when
somebody subscribed.
"""

from __future__ import annotations

import fnmatch
import re
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Protocol

from mailstead.addresses import AddressError, split_address
from mailstead.durable import Staged
from mailstead.sqlconn import SQLConnection

__all__ = [
    "EVENT_TYPES",
    "VERSION",
    "Event",
    "EventSink",
    "domain_of",
    "iso_time",
    "matches",
    "new_event_id",
    "pattern_error",
    "stored_at",
]

#: The payload format version every event carries.
VERSION = 1

#: Every event type Mailstead emits, with what it reports (RFC 5423 names
#: the message-store ones' spirit).
EVENT_TYPES: Mapping[str, str] = {
    "message.received": "a message was stored in a local mailbox",
    "message.queued": "a message went into the outbound queue",
    "message.delivered": "a remote host accepted a message for a recipient",
    "message.deferred": "a delivery attempt failed for now; it will be retried",
    "message.bounced": "a recipient failed for good; a DSN went to the sender",
    "message.expired": "a recipient stayed undeliverable past the queue lifetime",
    "message.flags_changed": "flags of messages in a mailbox changed (IMAP, POP3)",
    "message.expunged": "messages were removed from a mailbox (IMAP, POP3)",
    "message.refused": "an abuse check (rate limit, DNSBL, greylisting) refused a client's command",
    "mailbox.created": "a mailbox was created",
    "mailbox.deleted": "a mailbox was deleted",
    "mailbox.renamed": "a mailbox was renamed",
    "auth.succeeded": "a client logged in",
    "auth.failed": "a login was refused",
    "webhook.test": "sent by `mailstead webhook test` only",
}


_PATTERN = re.compile(r"[a-z0-9_*?-]+(?:\.[a-z0-9_*?-]+)*")


def matches(pattern: str, event_type: str) -> bool:
    """Shell-style match of a dotted event name: ``message.*``, ``*.failed``, ``*``."""
    return fnmatch.fnmatchcase(event_type, pattern)


def pattern_error(pattern: str) -> str | None:
    """Why ``pattern`` cannot subscribe to anything (bad syntax, no such event), or None."""
    if not _PATTERN.fullmatch(pattern):
        return f"invalid event pattern {pattern!r}"
    if not any(matches(pattern, t) for t in EVENT_TYPES):
        return f"{pattern!r} matches no event type ({', '.join(EVENT_TYPES)})"
    return None


def domain_of(address: str | None) -> str | None:
    """The lower-cased domain an event of ``address`` belongs to; None if it has none."""
    if not address:
        return None
    try:
        return split_address(address)[1].lower()
    except AddressError:
        return None


def new_event_id() -> str:
    """``evt_`` + microseconds (hex, sortable) + 48 random bits: unique across processes."""
    return f"evt_{time.time_ns() // 1000:014x}{secrets.token_hex(6)}"


def iso_time(timestamp: float) -> str:
    """RFC 3339 UTC with milliseconds, e.g. ``2026-12-07T13:00:00.123Z``."""
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass(frozen=True, slots=True)
class Event:
    """One thing that happened; ``data`` must be JSON-ready (str keys, no bytes)."""

    type: str
    data: Mapping[str, object]
    #: The mailbox address the event concerns (the recipient's for
    #: message.received, the sender's for the queue's events), if any.
    account: str | None = None
    domain: str | None = None
    id: str = field(default_factory=new_event_id)
    timestamp: float = field(default_factory=time.time)
    #: message.received: the message whose summary ``data["message"]`` (None
    #: here) becomes, bodies cut at ``body_limit`` bytes. The sink stores it
    #: and summarises it when the event is sent, off the mail path.
    raw_message: bytes | None = None
    body_limit: int = 0
    #: message.received: where the copy was stored (``store.StoredAs``,
    #: encoded), so the sink can tell the UID it got when the event is sent.
    stored_as: str | None = None

    def payload(self) -> dict[str, object]:
        """The JSON object a webhook delivers."""
        return {
            "id": self.id,
            "type": self.type,
            "timestamp": iso_time(self.timestamp),
            "version": VERSION,
            "account": self.account,
            "domain": self.domain,
            "data": dict(self.data),
        }


def stored_at(events: Sequence[Event], places: Mapping[str, str]) -> list[Event]:
    """``events`` with :attr:`Event.stored_as` set to where their account's copy went.

    ``places`` maps a mailbox address to its copy's ``StoredAs.encode()``.
    """
    return [
        replace(e, stored_as=places[e.account])
        if e.account is not None and e.account in places
        else e
        for e in events
    ]


class EventSink(Protocol):
    """Where events go. Implemented by the webhook outbox (``webhooks/outbox.py``)."""

    def wants(self, event_type: str) -> bool:
        """Whether any consumer subscribes to ``event_type`` (cheap; may be a little stale)."""
        ...

    def emit(self, events: Sequence[Event]) -> None:
        """Store ``events`` durably; when this returns they will be delivered."""
        ...

    def stage(self, events: Sequence[Event]) -> Staged:
        """``events`` as one more copy of a delivery transaction (durable.publish_all).

        Published with the message's copies, so an event commits before the
        ``250`` that promises its message; taken back if another copy fails.
        """
        ...

    def emit_in(self, conn: SQLConnection, events: Sequence[Event]) -> bool:
        """Store ``events`` inside the caller's open transaction on the queue database
        (SQLite's, or PostgreSQL's through ``pgsql.compat.Connection``).

        The queue uses this so an event commits with the state change it
        reports (message.queued, message.delivered, …): a crash may repeat
        an event, never lose one. True if anything was stored: then the
        caller calls :meth:`committed` after its COMMIT.
        """
        ...

    def committed(self) -> None:
        """Events stored by :meth:`emit_in` are committed: consumers may start."""
        ...
