"""What an account uses, kept in its index (RFC 9208 QUOTA, resources STORAGE and MESSAGE).

Each ``mailboxes`` row carries its octets (``used_octets``, the RFC822.SIZE of
every message) and its message count (``used_messages``). Triggers on
``messages`` keep them, so every insert and expunge changes them in the same
transaction, whichever code path wrote the row (APPEND, COPY, a scan of
``new/``, the webhook dispatcher's indexing, an expunge, a dropped mailbox),
and nobody walks the files to learn an account's usage: it is one sum over
its mailbox rows. :func:`recount` recomputes them from the message rows, for
an index repaired by hand or an old one upgraded.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

__all__ = ["Usage", "account_usage", "add_usage_columns", "recount"]

_TRIGGERS = (
    """CREATE TRIGGER IF NOT EXISTS usage_added AFTER INSERT ON messages BEGIN
        UPDATE mailboxes SET used_octets = used_octets + NEW.size,
                             used_messages = used_messages + 1 WHERE id = NEW.mailbox;
    END""",
    """CREATE TRIGGER IF NOT EXISTS usage_removed AFTER DELETE ON messages BEGIN
        UPDATE mailboxes SET used_octets = used_octets - OLD.size,
                             used_messages = used_messages - 1 WHERE id = OLD.mailbox;
    END""",
    # Rows are not resized or moved between mailboxes today; if one ever is,
    # the counters still hold.
    """CREATE TRIGGER IF NOT EXISTS usage_changed AFTER UPDATE OF size, mailbox ON messages
    BEGIN
        UPDATE mailboxes SET used_octets = used_octets - OLD.size,
                             used_messages = used_messages - 1 WHERE id = OLD.mailbox;
        UPDATE mailboxes SET used_octets = used_octets + NEW.size,
                             used_messages = used_messages + 1 WHERE id = NEW.mailbox;
    END""",
)


@dataclass(frozen=True, slots=True)
class Usage:
    """What one account holds: octets (RFC 9208 STORAGE counts them in units of
    1024) and messages (MESSAGE)."""

    octets: int
    messages: int


def add_usage_columns(conn: sqlite3.Connection) -> None:
    """Schema 4: the counter columns, their triggers, and the counts of what is there."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(mailboxes)")}
    for column in ("used_octets", "used_messages"):
        if column not in columns:
            conn.execute(f"ALTER TABLE mailboxes ADD COLUMN {column} INTEGER NOT NULL DEFAULT 0")
    for trigger in _TRIGGERS:
        conn.execute(trigger)
    recount(conn)


def recount(conn: sqlite3.Connection) -> None:
    """Set every mailbox's counters from its message rows (inside the caller's transaction)."""
    conn.execute(
        "UPDATE mailboxes SET"
        " used_octets = (SELECT coalesce(sum(size), 0) FROM messages WHERE mailbox = mailboxes.id),"
        " used_messages = (SELECT count(*) FROM messages WHERE mailbox = mailboxes.id)"
    )


def account_usage(conn: sqlite3.Connection) -> Usage:
    """The sum over the account's mailboxes."""
    octets, messages = conn.execute(
        "SELECT coalesce(sum(used_octets), 0), coalesce(sum(used_messages), 0) FROM mailboxes"
    ).fetchone()
    return Usage(int(octets), int(messages))
