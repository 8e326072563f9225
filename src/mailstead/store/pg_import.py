"""Moving whole mailboxes in and out of the cluster database, UIDs as they are.

``mailstead migrate`` copies a node's Maildir or mbox mail into the tables
of :mod:`mailstead.store.pg_schema` and back. Unlike APPEND, which hands
out the next UID, an import keeps every number a client has cached: the
mailbox's UIDVALIDITY, UIDNEXT and HIGHESTMODSEQ, each message's UID and
modseq, and the expunge log (RFC 9051 §2.3.1.1, RFC 7162 §3.1): an IMAP
client connected to the cluster afterwards does not resynchronise.

Each import runs in the caller's transaction, so a mailbox is there whole
or not at all.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from mailstead.pgsql.compat import Connection
from mailstead.store.account import SPECIAL_USE
from mailstead.store.pg_account import ensure_account
from mailstead.store.pg_rows import body_hash

__all__ = [
    "ImportedMailbox",
    "ImportedMessage",
    "MailboxCounters",
    "account_addresses",
    "account_id_of",
    "expunge_log",
    "import_mailbox",
    "import_subscriptions",
    "mailbox_counters",
    "mailbox_names",
    "message_rows",
    "raise_last_uidvalidity",
    "subscriptions_of",
]

# Messages sent to the database per statement: bounded, whatever the mailbox.
_BATCH_OCTETS = 8 * 1024 * 1024
_BATCH_MESSAGES = 500


@dataclass(frozen=True, slots=True)
class MailboxCounters:
    """A mailbox's numbers that clients cache (RFC 9051 §2.3.1.1, RFC 7162 §3.1)."""

    name: str
    uidvalidity: int
    uidnext: int
    highestmodseq: int
    recent_floor: int
    expunge_horizon: int
    keywords: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ImportedMessage:
    """One message to import with the numbers it has: UID, modseq, flags, date, bytes."""

    uid: int
    modseq: int
    flags: str  # space separated, sorted
    size: int  # RFC822.SIZE
    internaldate: float
    data: bytes


@dataclass(frozen=True, slots=True)
class ImportedMailbox:
    """A mailbox to import: its counters and expunge log (UID, modseq)."""

    counters: MailboxCounters
    expunged: Sequence[tuple[int, int]] = ()


def account_addresses(conn: Connection) -> list[str]:
    """Every address with an account row, sorted."""
    return [str(a) for (a,) in conn.execute("SELECT address FROM mail_accounts ORDER BY address")]


def account_id_of(conn: Connection, address: str) -> int | None:
    """The id of ``address``'s account row, None if it has none."""
    row = conn.execute("SELECT id FROM mail_accounts WHERE address = ?", (address,)).fetchone()
    return int(row[0]) if row else None


def raise_last_uidvalidity(conn: Connection, address: str, value: int) -> int:
    """Make ``address``'s account (if absent) and keep its highest UIDVALIDITY at least
    ``value``, so a mailbox made later under an old name gets a higher one; its id."""
    account_id = ensure_account(conn, address)
    conn.execute(
        "UPDATE mail_accounts SET last_uidvalidity = GREATEST(last_uidvalidity, ?) WHERE id = ?",
        (value, account_id),
    )
    return account_id


def import_mailbox(
    conn: Connection,
    account_id: int,
    mailbox: ImportedMailbox,
    messages: Iterator[ImportedMessage],
) -> int:
    """Insert the mailbox with its own counters and ``messages`` (ascending UIDs);
    the mailbox's id. Raises ``psycopg.errors.UniqueViolation`` if it exists."""
    c = mailbox.counters
    row = conn.execute(
        "INSERT INTO mail_mailboxes (account, name, special_use, uidvalidity, uidnext,"
        " highestmodseq, expunge_horizon, recent_floor, keywords)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?::text[]) RETURNING id",
        (
            account_id,
            c.name,
            SPECIAL_USE.get(c.name),
            c.uidvalidity,
            c.uidnext,
            c.highestmodseq,
            c.expunge_horizon,
            c.recent_floor,
            list(c.keywords),
        ),
    ).fetchone()
    assert row is not None
    mailbox_id = int(row[0])
    batch: list[ImportedMessage] = []
    octets = 0
    for msg in messages:
        batch.append(msg)
        octets += len(msg.data)
        if octets >= _BATCH_OCTETS or len(batch) >= _BATCH_MESSAGES:
            _insert_messages(conn, mailbox_id, batch)
            batch, octets = [], 0
    if batch:
        _insert_messages(conn, mailbox_id, batch)
    if mailbox.expunged:
        conn.execute(
            "INSERT INTO mail_expunged (mailbox, uid, modseq)"
            " SELECT ?, v.uid, v.modseq FROM unnest(?::bigint[], ?::bigint[]) AS v(uid, modseq)",
            (
                mailbox_id,
                [uid for uid, _ in mailbox.expunged],
                [modseq for _, modseq in mailbox.expunged],
            ),
        )
    return mailbox_id


def _insert_messages(conn: Connection, mailbox_id: int, batch: list[ImportedMessage]) -> None:
    hashes = [body_hash(m.data) for m in batch]
    conn.execute(
        "INSERT INTO mail_bodies (hash, data)"
        " SELECT DISTINCT ON (h) h, d FROM unnest(?::bytea[], ?::bytea[]) AS v(h, d)"
        " ON CONFLICT (hash) DO NOTHING",
        (hashes, [m.data for m in batch]),
    )
    conn.execute(
        "INSERT INTO mail_messages (mailbox, uid, modseq, flags, size, internaldate, body)"
        " SELECT ?, v.* FROM unnest(?::bigint[], ?::bigint[], ?::text[], ?::bigint[],"
        " ?::float8[], ?::bytea[]) AS v",
        (
            mailbox_id,
            [m.uid for m in batch],
            [m.modseq for m in batch],
            [m.flags for m in batch],
            [m.size for m in batch],
            [m.internaldate for m in batch],
            hashes,
        ),
    )


def import_subscriptions(conn: Connection, account_id: int, names: Sequence[str]) -> None:
    """Subscribe the account to ``names`` (RFC 9051 §6.3.7: they need not exist)."""
    conn.execute(
        "INSERT INTO mail_subscriptions (account, name) SELECT ?, n FROM unnest(?::text[]) AS n"
        " ON CONFLICT DO NOTHING",
        (account_id, list(names)),
    )


# --- reading back (verification, export) -------------------------------------------


def mailbox_names(conn: Connection, account_id: int) -> list[str]:
    """Every mailbox of the account, INBOX first."""
    names = [
        str(n)
        for (n,) in conn.execute(
            "SELECT name FROM mail_mailboxes WHERE account = ? ORDER BY name", (account_id,)
        )
    ]
    return sorted(names, key=lambda n: (n != "INBOX", n))


def mailbox_counters(
    conn: Connection, account_id: int, name: str
) -> tuple[int, MailboxCounters] | None:
    """(id, counters) of mailbox ``name``; None if it does not exist."""
    row = conn.execute(
        "SELECT id, uidvalidity, uidnext, highestmodseq, recent_floor, expunge_horizon, keywords"
        " FROM mail_mailboxes WHERE account = ? AND name = ?",
        (account_id, name),
    ).fetchone()
    if row is None:
        return None
    mailbox_id, uidvalidity, uidnext, highestmodseq, floor, horizon, keywords = row
    return int(mailbox_id), MailboxCounters(
        name,
        int(uidvalidity),
        int(uidnext),
        int(highestmodseq),
        int(floor),
        int(horizon),
        tuple(keywords),
    )


def expunge_log(conn: Connection, mailbox_id: int) -> list[tuple[int, int]]:
    """The mailbox's expunge log: (UID, modseq), by UID."""
    return [
        (int(uid), int(modseq))
        for uid, modseq in conn.execute(
            "SELECT uid, modseq FROM mail_expunged WHERE mailbox = ? ORDER BY uid", (mailbox_id,)
        )
    ]


def message_rows(conn: Connection, mailbox_id: int) -> Iterator[ImportedMessage]:
    """Every message of the mailbox with its bytes, by ascending UID, a batch at a time."""
    after = 0
    while True:
        rows = conn.execute(
            "SELECT m.uid, m.modseq, m.flags, m.size, m.internaldate, m.head, b.data"
            " FROM mail_messages m JOIN mail_bodies b ON b.hash = m.body"
            " WHERE m.mailbox = ? AND m.uid > ? ORDER BY m.uid LIMIT ?",
            (mailbox_id, after, _BATCH_MESSAGES // 10),
        ).fetchall()
        if not rows:
            return
        for uid, modseq, flags, size, date, head, data in rows:
            yield ImportedMessage(
                int(uid),
                int(modseq),
                str(flags),
                int(size),
                float(date),
                bytes(head) + bytes(data),
            )
        after = int(rows[-1][0])


def subscriptions_of(conn: Connection, account_id: int) -> list[str]:
    """The names the account subscribes to, sorted."""
    return [
        str(n)
        for (n,) in conn.execute(
            "SELECT name FROM mail_subscriptions WHERE account = ? ORDER BY name", (account_id,)
        )
    ]
