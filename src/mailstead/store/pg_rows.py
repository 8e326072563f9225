"""The mail store's statements on PostgreSQL, shared by IMAP and delivery.

Each change to a mailbox's messages is one transaction that begins by
updating the mailbox's row: that takes its next modseq (RFC 7162 §3.1) and,
for new messages, the next UIDs (RFC 9051 §2.3.1.1), and holds the row lock
until the commit, so between nodes UIDs and modseqs are handed out once and
become visible in the order they ascend. A new message is one statement
(the body, the counters and the row), run outside an explicit transaction:
one round trip, committed (``synchronous_commit=on``) when it returns. Once a change has committed,
the nodes listening are told which mailbox changed (:func:`announce`).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg

from mailstead.pgsql.compat import Connection
from mailstead.pgsql.connect import Pool
from mailstead.store.pg_notify import NOTIFY_CHANNEL
from mailstead.store.retention import RETAIN_SECONDS
from mailstead.store.usage_columns import Usage

__all__ = [
    "EXPUNGE_LOG_KEEP",
    "NewMessage",
    "PgMessage",
    "account_usage",
    "add_messages",
    "announce",
    "autocommit",
    "body_hash",
    "changes",
    "collect_bodies",
    "expunge_rows",
    "transaction",
]

log = logging.getLogger("mailstead.store")

# Expunge log rows kept per mailbox (as the SQLite index: store/index.py);
# a session further behind reloads the UID list.
EXPUNGE_LOG_KEEP = 10_000
# The log's length is checked at every this-many-th expunge of a mailbox.
_PRUNE_CHECK_EVERY = 64
# A new message whose body was collected between the two halves of its
# statement fails its foreign key: so many attempts (a race, not a state).
_ATTEMPTS = 3


def body_hash(data: bytes) -> bytes:
    """The key of a message body: its SHA-256."""
    return hashlib.sha256(data).digest()


@dataclass(slots=True)
class PgMessage:
    """One message of a mailbox as this process last saw it (a ``MessageLike``)."""

    uid: int
    flags: tuple[str, ...]  # sorted, interned (records.flag_tuple)
    size: int  # RFC822.SIZE: octets with CRLF line ends
    internaldate: float
    modseq: int
    body: bytes  # the key of its bytes in mail_bodies


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message to add: its flags, size, date, own head and shared body
    (``data`` None: the body is stored already)."""

    flags: str
    size: int
    internaldate: float
    head: bytes
    body: bytes
    data: bytes | None = None
    delivery: str | None = None


@contextmanager
def autocommit(pool: Pool) -> Iterator[Connection]:
    """A connection on which each statement commits by itself (one round trip)."""
    with pool.connection() as raw:
        raw.autocommit = True
        try:
            yield Connection(raw)
        finally:
            # A broken connection is the pool's to discard.
            with contextlib.suppress(psycopg.Error):
                raw.autocommit = False


@contextmanager
def transaction(pool: Pool) -> Iterator[Connection]:
    """A connection in one transaction: committed at the end, rolled back on error."""
    with pool.connection() as raw:
        yield Connection(raw)


# Change notices (store/pg_notify.py) go out after the change's commit, in a
# transaction of their own that writes nothing. NOTIFY holds a lock of the
# whole database from its commit until that commit is on disk: sent inside
# the changing transaction, it would make every delivery's commit wait for
# the previous one's fsync (16 concurrent deliveries: 285 instead of 1,800
# a second, measured here), where without it they share the disk flushes.
_NOTIFY = "SELECT pg_notify(?, id::text) FROM unnest(?::bigint[]) AS t(id)"


def announce(conn: Connection, mailbox_ids: Iterable[int]) -> None:
    """Tell the listening nodes that ``mailbox_ids`` changed; ``conn`` in autocommit
    (the change committed already).

    A notice that cannot be sent is only late: IDLE sessions elsewhere read
    the mailbox at their fallback interval anyway.
    """
    ids = sorted(set(mailbox_ids))
    if not ids:
        return
    try:
        conn.execute(_NOTIFY, (NOTIFY_CHANNEL, ids))
    except psycopg.Error as exc:
        log.warning("change notice for mailbox(es) %s not sent: %s", ids, exc)


@contextmanager
def changes(pool: Pool) -> Iterator[tuple[Connection, list[int]]]:
    """A transaction as :func:`transaction`, and a list for the ids of the
    mailboxes it changes: announced once it has committed."""
    changed: list[int] = []
    with pool.connection() as raw:
        conn = Connection(raw)
        yield conn, changed
        raw.commit()
        if changed:
            raw.autocommit = True
            try:
                announce(conn, changed)
            finally:
                with contextlib.suppress(psycopg.Error):
                    raw.autocommit = False


_ADD = """
WITH new AS (
    SELECT * FROM unnest(
        ?::text[], ?::bigint[], ?::float8[], ?::bytea[], ?::bytea[], ?::bytea[], ?::text[]
    ) WITH ORDINALITY AS v(flags, size, internaldate, head, body, data, delivery, n)
), bodies AS (
    INSERT INTO mail_bodies (hash, data)
    SELECT DISTINCT ON (body) body, data FROM new WHERE data IS NOT NULL
    ON CONFLICT (hash) DO NOTHING
), box AS (
    UPDATE mail_mailboxes
    SET uidnext = uidnext + ?, highestmodseq = highestmodseq + 1,
        keywords = keywords || ARRAY(
            SELECT k FROM unnest(?::text[]) WITH ORDINALITY AS t(k, i)
            WHERE k <> ALL(keywords) ORDER BY i)
    WHERE id = ?
    RETURNING uidnext - ? AS first, highestmodseq
)
INSERT INTO mail_messages
    (mailbox, uid, modseq, flags, size, internaldate, head, body, delivery)
SELECT ?, box.first + new.n - 1, box.highestmodseq,
       new.flags, new.size, new.internaldate, new.head, new.body, new.delivery
FROM box, new
RETURNING uid, modseq
"""


def add_messages(
    conn: Connection, mailbox_id: int, new: Sequence[NewMessage], keywords: Sequence[str] = ()
) -> tuple[int, int]:
    """Give ``new`` the mailbox's next UIDs, in order, at one new modseq;
    (first UID, modseq). ``keywords``: the ones the messages bring (FLAGS).

    ``conn`` is in autocommit: the statement commits, then the change is
    announced. Raises ``LookupError`` when the mailbox is gone.
    """
    if not conn.raw.autocommit:
        raise ValueError("add_messages commits by itself: it wants an autocommit connection")
    count = len(new)
    params = (
        [m.flags for m in new],
        [m.size for m in new],
        [m.internaldate for m in new],
        [m.head for m in new],
        [m.body for m in new],
        [m.data for m in new],
        [m.delivery for m in new],
        count,
        list(keywords),
        mailbox_id,
        count,
        mailbox_id,
    )
    for attempt in range(_ATTEMPTS):
        try:
            rows = conn.execute(_ADD, params).fetchall()
        except psycopg.errors.ForeignKeyViolation:
            # A body collected between "exists" and the row: store it again.
            if attempt + 1 == _ATTEMPTS or any(m.data is None for m in new):
                raise
            continue
        if not rows:
            raise LookupError(f"mailbox {mailbox_id} no longer exists")
        announce(conn, [mailbox_id])
        return min(int(r[0]) for r in rows), int(rows[0][1])
    raise AssertionError("unreachable")


_EXPUNGE = """
WITH gone AS (
    DELETE FROM mail_messages WHERE mailbox = ? AND uid = ANY(?::bigint[])
    RETURNING uid, head, body
), logged AS (
    INSERT INTO mail_expunged (mailbox, uid, modseq, head) SELECT ?, uid, ?, head FROM gone
    ON CONFLICT (mailbox, uid) DO UPDATE SET modseq = EXCLUDED.modseq, head = EXCLUDED.head
), orphaned AS (
    INSERT INTO mail_orphans (body) SELECT DISTINCT body FROM gone
    ON CONFLICT (body) DO UPDATE SET since = now()
), forgotten AS (
    DELETE FROM mail_summaries WHERE mailbox = ? AND uid = ANY(?::bigint[])
)
SELECT uid FROM gone ORDER BY uid
"""


def expunge_rows(conn: Connection, mailbox_id: int, uids: Sequence[int]) -> tuple[list[int], int]:
    """Remove ``uids`` as the first change of the caller's transaction; (the UIDs
    removed, their modseq).

    Takes the mailbox's next modseq only when something was removed; the
    bodies wait in mail_orphans for the sessions not yet told (RFC 2180 §4.1).
    """
    wanted = list(uids)
    row = conn.execute(
        "UPDATE mail_mailboxes SET highestmodseq = highestmodseq + 1 WHERE id = ?"
        " RETURNING highestmodseq",
        (mailbox_id,),
    ).fetchone()
    if row is None:
        raise LookupError(f"mailbox {mailbox_id} no longer exists")
    modseq = int(row[0])
    gone = [
        int(uid)
        for (uid,) in conn.execute(
            _EXPUNGE, (mailbox_id, wanted, mailbox_id, modseq, mailbox_id, wanted)
        )
    ]
    if not gone:
        conn.raw.rollback()  # no change: the modseq is not taken
        return [], modseq
    if modseq % _PRUNE_CHECK_EVERY == 0:
        _prune_expunge_log(conn, mailbox_id)
    return gone, modseq


def _prune_expunge_log(conn: Connection, mailbox_id: int) -> None:
    """Keep the newest :data:`EXPUNGE_LOG_KEEP` entries once there are twice as many."""
    newest = (
        "SELECT modseq FROM mail_expunged WHERE mailbox = ? ORDER BY modseq DESC LIMIT 1 OFFSET ?"
    )
    if conn.execute(newest, (mailbox_id, 2 * EXPUNGE_LOG_KEEP)).fetchone() is None:
        return
    (cut,) = conn.execute(newest, (mailbox_id, EXPUNGE_LOG_KEEP)).fetchone() or (0,)
    conn.execute("DELETE FROM mail_expunged WHERE mailbox = ? AND modseq <= ?", (mailbox_id, cut))
    conn.execute("UPDATE mail_mailboxes SET expunge_horizon = ? WHERE id = ?", (cut, mailbox_id))


def collect_bodies(pool: Pool, retain: float = RETAIN_SECONDS) -> int:
    """Delete the bodies no message names and no session may read any more; how many.

    A delivery that takes up such a body at the same moment makes this
    fail on the foreign key (it locked the row first); the next run retries.
    """
    try:
        with transaction(pool) as conn:
            deleted = conn.execute(
                "DELETE FROM mail_bodies b USING mail_orphans o"
                " WHERE o.body = b.hash AND o.since < now() - make_interval(secs => ?)"
                " AND NOT EXISTS (SELECT 1 FROM mail_messages m WHERE m.body = b.hash)",
                (retain,),
            ).rowcount
            conn.execute(
                "DELETE FROM mail_orphans WHERE since < now() - make_interval(secs => ?)",
                (retain,),
            )
            return int(deleted)
    except psycopg.errors.ForeignKeyViolation:
        log.info("a body being collected was taken up again; collecting later")
        return 0


def account_usage(conn: Connection, address: str) -> Usage:
    """What every mailbox of ``address`` holds together (RFC 9208 STORAGE, MESSAGE).

    Summed at each call: quota counters kept by the writes are a later step.
    """
    row = conn.execute(
        "SELECT coalesce(sum(m.size), 0), count(*) FROM mail_messages m"
        " JOIN mail_mailboxes b ON b.id = m.mailbox"
        " JOIN mail_accounts a ON a.id = b.account WHERE a.address = ?",
        (address,),
    ).fetchone()
    return Usage(int(row[0]), int(row[1])) if row else Usage(0, 0)
