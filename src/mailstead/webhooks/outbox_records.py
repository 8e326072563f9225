"""What the outbox hands out and takes back: claimed deliveries, attempts, listings.

The dispatcher claims :class:`Claimed` deliveries and records
:class:`Attempted` outcomes; ``mailstead webhook deliveries`` lists
:class:`DeliveryRecord` rows. :func:`completed` turns a stored event into
the JSON body that is sent.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from typing import Literal

from mailstead.message.summary import message_summary
from mailstead.webhooks.endpoints import Endpoint

__all__ = [
    "Attempted",
    "Claimed",
    "DeliveryRecord",
    "DeliveryState",
    "EndpointGone",
    "Stored",
    "completed",
    "new_delivery_id",
]

DeliveryState = Literal["pending", "succeeded", "failed"]


def new_delivery_id() -> str:
    """``msg_`` + microseconds (hex) + random bits: the webhook-id of one delivery."""
    return f"msg_{time.time_ns() // 1000:014x}{secrets.token_hex(6)}"


class EndpointGone(LookupError):
    """The delivery's endpoint was deleted: there is nowhere to send it again."""


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery a dispatcher holds the lease on: what to POST, where, signed how."""

    id: str
    event_id: str
    event_type: str
    endpoint: Endpoint
    attempts: int  # before this one
    payload: bytes


@dataclass(frozen=True, slots=True)
class Attempted:
    """The outcome of one POST of a claimed delivery, to be recorded.

    ``next_attempt`` None and not ``succeeded``: given up. ``disable_reason``
    disables the endpoint too (a 410 Gone).
    """

    claimed: Claimed
    status: int | None
    error: str | None
    elapsed: float
    response: str | None
    next_attempt: float | None
    succeeded: bool
    disable_reason: str | None = None


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    """One delivery as `webhook deliveries` lists it."""

    id: str
    event_id: str
    event_type: str
    endpoint_id: str
    url: str
    state: DeliveryState
    attempts: int
    next_attempt: float
    last_status: int | None
    last_error: str | None
    created_at: float
    finished_at: float | None

    def as_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "event_id": self.event_id,
            "event_type": self.event_type,
            "endpoint_id": self.endpoint_id,
            "url": self.url,
            "state": self.state,
            "attempts": self.attempts,
            "next_attempt": self.next_attempt if self.state == "pending" else None,
            "last_status": self.last_status,
            "last_error": self.last_error,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
        }


@dataclass(frozen=True, slots=True)
class Stored:
    """An event's row, as a claim reads it."""

    type: str
    payload: bytes
    raw_message: bytes | None
    body_limit: int | None
    stored_as: str | None


# data.message of an event whose message is summarised when sent, as stored.
_UNSUMMARISED = b'"message":null'


def completed(payload: bytes, raw_message: bytes | None, body_limit: int | None) -> bytes:
    """The JSON body to send: with ``data.message`` summarised from the stored message."""
    if raw_message is None:
        return payload
    summary = message_summary(bytes(raw_message), max_body_bytes=body_limit or 0)
    encoded = json.dumps(summary, ensure_ascii=False, separators=(",", ":")).encode()
    # The stored payload has data.message null. Inside a JSON string every '"'
    # is escaped, so when the bytes '"message":null' occur once they are that
    # member: the summary goes in its place without decoding the payload again.
    at = payload.find(_UNSUMMARISED)
    if at >= 0 and payload.find(_UNSUMMARISED, at + 1) < 0:
        start = at + len(_UNSUMMARISED) - len(b"null")
        return payload[:start] + encoded + payload[at + len(_UNSUMMARISED) :]
    document = json.loads(payload)
    document["data"]["message"] = summary
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
