"""The outbound queue's part of a migration: envelopes, recipients' states and content.

On one node the content of a queued message is a file
(``<data_dir>/queue/<path>``); in the cluster it is a ``queue_bodies`` row
(``mta/queue_bodies.py``). Everything is copied in one transaction with
the queue's progress row, unclaimed: the first node to look takes it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from mailstead.migrate.tables import Table, insert_rows, read_rows
from mailstead.migrate.verify import rows_line
from mailstead.sqlconn import Row, SQLConnection

__all__ = [
    "MESSAGES",
    "RECIPIENTS",
    "Contents",
    "copy_queue",
    "file_contents",
    "queue_line",
    "row_contents",
]

MESSAGES = Table(
    "messages",
    (
        ("id", "text"),
        ("sender", "text"),
        ("received_at", "real"),
        ("size", "int"),
        ("envid", "text"),
        ("ret", "text"),
        ("path", "text"),
        ("held_at", "real"),
    ),
    "id",
)
RECIPIENTS = Table(
    "recipients",
    (
        ("message_id", "text"),
        ("address", "text"),
        ("notify", "text"),
        ("orcpt", "text"),
        ("state", "text"),
        ("attempts", "int"),
        ("next_attempt", "real"),
        ("last_error", "text"),
        ("delay_warned", "int"),
    ),
    "message_id, address",
)

#: The content of a queued message, given its envelope row.
Contents = Callable[[Row], bytes]


def file_contents(queue_dir: Path) -> Contents:
    """Content from the node's files: ``<data_dir>/queue/<path>``."""
    return lambda row: (queue_dir / str(row[6])).read_bytes()


def row_contents(conn: SQLConnection) -> Contents:
    """Content from the cluster's ``queue_bodies`` rows."""

    def read(row: Row) -> bytes:
        found = conn.execute(
            "SELECT content FROM queue_bodies WHERE message_id = ?", (row[0],)
        ).fetchone()
        if found is None:
            raise FileNotFoundError(f"queued message {row[0]} has no content")
        return bytes(found[0])

    return read


def queue_ids(conn: SQLConnection) -> set[str]:
    return {str(row[0]) for row in conn.execute("SELECT id FROM messages")}


def copy_queue(source: SQLConnection, contents: Contents, target: SQLConnection) -> int:
    """Insert every queued message (envelope, recipients, content); how many messages."""
    messages = read_rows(source, MESSAGES)
    insert_rows(target, MESSAGES, messages)
    insert_rows(target, RECIPIENTS, read_rows(source, RECIPIENTS))
    for row in messages:
        target.execute(
            "INSERT INTO queue_bodies (message_id, content) VALUES (?, ?)", (row[0], contents(row))
        )
    return len(messages)


def queue_line(conn: SQLConnection, contents: Contents, ids: set[str] | None = None) -> str:
    """The queue described, limited to the message ``ids`` if given."""
    messages = [r for r in read_rows(conn, MESSAGES) if ids is None or r[0] in ids]
    recipients = [r for r in read_rows(conn, RECIPIENTS) if ids is None or r[0] in ids]
    rows: list[Row] = [(*m, contents(m)) for m in messages]
    rows += recipients
    return rows_line({"messages": len(messages), "recipients": len(recipients)}, rows)
