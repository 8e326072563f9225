"""Which queued messages an operator means: states and the filters of ``mailstead queue``.

A message is in one of three states, after Postfix's queues:

* ``held``: ``queue hold`` put it aside; the outbound never tries it until
  ``queue release``.
* ``active``: a recipient is due now; a running server is delivering it or
  takes it within its poll interval (Postfix marks these ``*``).
* ``deferred``: every open recipient waits for its next attempt time.

Filters combine with AND; each is optional.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from mailstead.addresses import AddressError, normalize_domain, split_address
from mailstead.mta.envelope import QueuedMessage

__all__ = [
    "MESSAGE_STATES",
    "MessageState",
    "Selection",
    "SelectionError",
    "message_state",
    "parse_duration",
]

MessageState = Literal["active", "deferred", "held"]
MESSAGE_STATES: tuple[MessageState, ...] = ("active", "deferred", "held")

_DURATION_RE = re.compile(r"\A(\d{1,9})([smhdw])\Z")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class SelectionError(ValueError):
    """A filter the operator gave cannot be understood (one line)."""


def parse_duration(text: str) -> float:
    """``30s``, ``15m``, ``1h``, ``2d``, ``1w`` in seconds; SelectionError otherwise."""
    match = _DURATION_RE.match(text.strip().lower())
    if match is None:
        raise SelectionError(f"{text!r} is not a duration like 30m, 1h or 2d")
    return int(match[1]) * _UNIT_SECONDS[match[2]]


def message_state(message: QueuedMessage, now: float) -> MessageState:
    """Where ``message`` stands as a whole (see the module docstring)."""
    if message.held_at is not None:
        return "held"
    if any(r.open and r.next_attempt <= now for r in message.recipients):
        return "active"
    return "deferred"


def _domain(address: str) -> str | None:
    try:
        return normalize_domain(split_address(address)[1])
    except AddressError:
        return None


@dataclass(frozen=True, slots=True)
class Selection:
    """The filters of ``queue list`` and the queue actions; None means "any".

    ``to_domain`` matches a message with an open recipient in that domain;
    ``sender`` is an address (any case) or ``@domain``; ``older_than`` is in
    seconds since the message arrived.
    """

    to_domain: str | None = None
    sender: str | None = None
    state: MessageState | None = None
    older_than: float | None = None

    def __post_init__(self) -> None:
        if self.to_domain is not None:
            _normalized_domain(self.to_domain)
        if self.sender is not None and self.sender.startswith("@"):
            _normalized_domain(self.sender[1:])

    @property
    def empty(self) -> bool:
        """True when no filter is set: the selection is the whole queue."""
        return (self.to_domain, self.sender, self.state, self.older_than) == (None,) * 4

    def matches(self, message: QueuedMessage, now: float) -> bool:
        if self.state is not None and message_state(message, now) != self.state:
            return False
        if self.older_than is not None and now - message.received_at < self.older_than:
            return False
        if self.sender is not None and not self._sender_matches(message.sender):
            return False
        if self.to_domain is not None:
            wanted = _normalized_domain(self.to_domain)
            if not any(r.open and _domain(r.address) == wanted for r in message.recipients):
                return False
        return True

    def _sender_matches(self, sender: str) -> bool:
        assert self.sender is not None
        if self.sender in ("", "<>"):
            return sender == ""  # bounces: the null reverse-path
        if self.sender.startswith("@"):
            return bool(sender) and _domain(sender) == _normalized_domain(self.sender[1:])
        return sender.casefold() == self.sender.casefold()

    def pick(self, messages: Iterable[QueuedMessage], now: float) -> list[QueuedMessage]:
        """The messages that match, in the order given."""
        return [m for m in messages if self.matches(m, now)]


def _normalized_domain(domain: str) -> str:
    try:
        return normalize_domain(domain)
    except AddressError:
        raise SelectionError(f"{domain!r} is not a domain name") from None
