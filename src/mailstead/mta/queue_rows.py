"""The queue's rows as envelope objects: what ``SELECT`` gives, as :mod:`envelope` types.

One shape for both engines: the columns are listed here, and the schema's
NOT NULL and CHECK constraints (:mod:`mailstead.mta.queue_schema`) make
the row types below hold whichever engine answered.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import cast

from mailstead.mta.envelope import QueuedMessage, RecipientState, RecipientStatus

__all__ = ["MESSAGE_COLUMNS", "RECIPIENT_COLUMNS", "encode_notify", "queued_messages"]

MESSAGE_COLUMNS = "id, sender, received_at, size, envid, ret, path, held_at"
RECIPIENT_COLUMNS = (
    "message_id, address, notify, orcpt, state, attempts, next_attempt, last_error, delay_warned"
)

_MessageRow = tuple[str, str, float, int, str | None, str | None, str, float | None]
_RecipientRow = tuple[str, str | None, str | None, RecipientState, int, float, str | None, int]


def encode_notify(notify: tuple[str, ...] | None) -> str | None:
    """RFC 3461 §4.1 NOTIFY as stored: comma-separated; None when not given."""
    return None if notify is None else ",".join(notify)


def _decode_notify(notify: str | None) -> tuple[str, ...] | None:
    if notify is None:
        return None
    return tuple(notify.split(",")) if notify else ()


def queued_messages(
    rows: Sequence[Sequence[object]], rcpts: Sequence[Sequence[object]], queue_dir: Path
) -> list[QueuedMessage]:
    """Messages (rows of :data:`MESSAGE_COLUMNS`) with their recipients (of
    :data:`RECIPIENT_COLUMNS`), in the order of ``rows``."""
    by_id: dict[str, list[RecipientStatus]] = {}
    for r in rcpts:
        by_id.setdefault(str(r[0]), []).append(_recipient(cast(_RecipientRow, tuple(r[1:]))))
    messages = []
    for row in rows:
        queue_id, sender, received_at, size, envid, ret, path, held_at = cast(
            _MessageRow, tuple(row)
        )
        messages.append(
            QueuedMessage(
                queue_id,
                sender,
                received_at,
                size,
                envid,
                ret,
                queue_dir / path,
                tuple(by_id.get(queue_id, [])),
                held_at,
            )
        )
    return messages


def _recipient(r: _RecipientRow) -> RecipientStatus:
    address, notify, orcpt, state, attempts, next_attempt, last_error, warned = r
    return RecipientStatus(
        address,
        _decode_notify(notify),
        orcpt,
        state,
        attempts,
        next_attempt,
        last_error,
        bool(warned),
    )
