"""What a queued message is: its envelope, each recipient's state, an attempt's outcome.

The queue (:mod:`mailstead.mta.queue`) stores these; the outbound engine,
the receiver and the CLI read and make them.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from mailstead.events import Event, domain_of, iso_time

RecipientState = Literal["pending", "deferred", "delivered", "failed"]


@dataclass(frozen=True, slots=True)
class QueuedRecipient:
    """One RCPT TO of a queued message with its DSN parameters (RFC 3461)."""

    address: str
    notify: tuple[str, ...] | None = None
    orcpt: str | None = None


@dataclass(frozen=True, slots=True)
class RecipientStatus:
    """Where delivery to one recipient of a queued message stands."""

    address: str
    notify: tuple[str, ...] | None
    orcpt: str | None
    state: RecipientState
    attempts: int
    next_attempt: float
    last_error: str | None
    delay_warned: bool = False

    @property
    def open(self) -> bool:
        """Still to be delivered: pending or deferred."""
        return self.state in ("pending", "deferred")


@dataclass(frozen=True, slots=True)
class Attempt:
    """The outcome of one delivery attempt to one recipient.

    ``next_attempt`` is set for a deferral; ``error`` says why (the remote
    reply or the routing failure) for deferrals and failures.
    """

    address: str
    state: RecipientState
    error: str | None = None
    next_attempt: float | None = None


@dataclass(frozen=True, slots=True)
class QueuedMessage:
    """The envelope of one queued message; its content is in ``path``."""

    id: str
    sender: str
    received_at: float
    size: int
    envid: str | None
    ret: str | None
    path: Path
    recipients: tuple[RecipientStatus, ...]
    #: When ``mailstead queue hold`` held it (Unix time); None: not held.
    held_at: float | None = None


def new_queue_id() -> str:
    """A fresh queue id: also the id in the Received header and the 250 reply."""
    return f"{time.time_ns() // 1000:014X}{secrets.token_hex(5).upper()}"


def sender_account(sender: str) -> tuple[str | None, str | None]:
    """The account and domain a queued message's events belong to: its sender's."""
    if not sender:
        return None, None  # a bounce: the null reverse-path
    return sender, domain_of(sender)


def queued_event(
    queue_id: str, sender: str, recipients: list[str], size: int, received_at: float
) -> Event:
    """message.queued: the message is in the outbound queue for ``recipients``."""
    account, domain = sender_account(sender)
    data = {
        "queue_id": queue_id,
        "mail_from": sender,
        "rcpt_to": recipients,
        "size": size,
        "received_at": iso_time(received_at),
    }
    return Event("message.queued", data, account=account, domain=domain)
