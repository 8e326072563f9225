"""The mailbox index of one account: UIDs, flags, sizes, dates, in SQLite.

One database per account, ``<account>/Maildir/mailstead-index.sqlite3`` (or
``<account>/mailstead-index.sqlite3`` in mbox mode), shared by every process
and session that opens the account. What it holds, by how precious it is
(docs/durability.md):

* **precious**: each mailbox's UIDVALIDITY and UIDNEXT and the UID of every
  message (keyed by the message's file name). Losing them makes every client
  download the mailbox again, so they are committed with ``synchronous=FULL``;
* **rebuildable**: flags (the file names are the truth), sizes, internal
  dates, the modification sequence and the cached ENVELOPE/BODYSTRUCTURE.

Changes are ordered by a per-mailbox modification sequence (``modseq``, as in
RFC 7162): every insert, flag change or expunge takes the next value, so a
session that remembers the highest modseq it saw learns what changed since
with one indexed query. Expunges are logged with their modseq for the same
reason.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from mailstead.sqlite_wal import enable_wal
from mailstead.store.usage_columns import (
    Usage,
    account_usage,
    add_usage_columns,
    recount,
)

INDEX_NAME = "mailstead-index.sqlite3"
_SCHEMA_VERSION = 4
_SCHEMA = """
CREATE TABLE IF NOT EXISTS mailboxes (
    id             INTEGER PRIMARY KEY,
    name           TEXT NOT NULL UNIQUE,       -- IMAP name, "/" separated, or "INBOX"
    uidvalidity    INTEGER NOT NULL,
    uidnext        INTEGER NOT NULL,
    highestmodseq  INTEGER NOT NULL,
    -- Directory stamps of the last scan (Maildir new/ and cur/, or the mbox
    -- file's size and mtime): unchanged stamps mean nothing to scan.
    stamp          TEXT NOT NULL DEFAULT '',
    -- The expunge log was pruned up to this modseq: a session that saw less
    -- must reload the UID list.
    expunge_horizon INTEGER NOT NULL DEFAULT 0,
    -- RFC 3501 §2.3.2: messages from this UID on are \\Recent for the next
    -- session that selects the mailbox (or is selected when they arrive).
    recent_floor   INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS messages (
    mailbox      INTEGER NOT NULL,
    uid          INTEGER NOT NULL,
    key          TEXT NOT NULL,     -- Maildir base name, or mbox "offset:length"
    location     TEXT NOT NULL,     -- where the bytes are now: "cur/<name>" or "offset:length"
    flags        TEXT NOT NULL,     -- space separated, e.g. "\\Seen $Forwarded"
    size         INTEGER NOT NULL,  -- octets with CRLF line ends (RFC822.SIZE)
    internaldate REAL NOT NULL,
    modseq       INTEGER NOT NULL,
    PRIMARY KEY (mailbox, uid)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS messages_key ON messages (mailbox, key);
CREATE INDEX IF NOT EXISTS messages_modseq ON messages (mailbox, modseq);
CREATE TABLE IF NOT EXISTS expunged (
    mailbox INTEGER NOT NULL,
    uid     INTEGER NOT NULL,
    modseq  INTEGER NOT NULL,
    PRIMARY KEY (mailbox, uid)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS cache (
    mailbox INTEGER NOT NULL,
    uid     INTEGER NOT NULL,
    item    TEXT NOT NULL,          -- "ENVELOPE", "BODYSTRUCTURE", "BODY"
    value   BLOB NOT NULL,
    PRIMARY KEY (mailbox, uid, item)
) WITHOUT ROWID;
-- Every message record of a large mailbox as of one modseq, in one blob
-- (store/maildir_records.py): a new process loads it instead of every row.
CREATE TABLE IF NOT EXISTS snapshots (
    mailbox INTEGER PRIMARY KEY,
    modseq  INTEGER NOT NULL,
    data    BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS subscriptions (name TEXT PRIMARY KEY) WITHOUT ROWID;
-- The highest UIDVALIDITY ever handed out, kept when its mailbox is deleted.
CREATE TABLE IF NOT EXISTS last_uidvalidity (value INTEGER NOT NULL);
-- Schema 4: each message's sort keys, threading fields and RFC 8474 IDs
-- (proto/imap/summary.py), made once for SORT/THREAD, rebuildable.
CREATE TABLE IF NOT EXISTS summaries (
    mailbox INTEGER NOT NULL,
    uid     INTEGER NOT NULL,
    value   BLOB NOT NULL,
    PRIMARY KEY (mailbox, uid)
) WITHOUT ROWID;
"""

# Page cache per index connection (KiB, as SQLite's negative cache_size):
# small, since a worker may hold many accounts open; a bulk insert (a first
# scan) gets more for its transaction.
_CACHE = -512
_BULK_CACHE = -16384
_BULK_ROWS = 1000

# Expunge log rows kept per mailbox; a session further behind reloads the
# UID list instead of reading the log.
EXPUNGE_LOG_KEEP = 10_000

# RFC 7162 §3.1: a mailbox's modseq never goes backwards while its
# UIDVALIDITY stays. The index only ever adds to it; a restored backup of it
# (backup/restore.py) is older than what clients may have seen, so its
# HIGHESTMODSEQ jumps by this much (more changes than a mailbox takes between
# a backup and its restore), and every message takes the new value.
MODSEQ_RESTORE_GAP = 2**32


@dataclass(slots=True)
class Row:
    """One message as the index knows it."""

    uid: int
    key: str
    location: str
    flags: str
    size: int
    internaldate: float
    modseq: int


@dataclass(frozen=True, slots=True)
class MailboxState:
    """The counters of one mailbox."""

    id: int
    name: str
    uidvalidity: int
    uidnext: int
    highestmodseq: int
    stamp: str


class IndexError_(Exception):
    """The index cannot be used (corrupt, or a schema from a newer Mailstead)."""


def _new_uidvalidity(conn: sqlite3.Connection) -> int:
    # RFC 9051 §2.3.1.1: UIDVALIDITY must grow if a name is ever reused; the
    # clock, kept above every value handed out before, does that.
    (high,) = conn.execute("SELECT coalesce(max(value), 0) FROM last_uidvalidity").fetchone()
    value = max(int(time.time()), int(high) + 1) & 0xFFFFFFFF
    conn.execute("DELETE FROM last_uidvalidity")
    conn.execute("INSERT INTO last_uidvalidity (value) VALUES (?)", (value,))
    return value


class AccountIndex:
    """Owns the SQLite index of one account: its connection and every query on it.

    One object per account per process, shared by the sessions of that
    account in this process (calls are serialised by a lock, so executor
    threads may use it too).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.lock = threading.RLock()
        self._depth = 0  # transactions open in the thread holding the lock
        self._conn = sqlite3.connect(
            self.path, timeout=30.0, isolation_level=None, check_same_thread=False
        )
        enable_wal(self._conn)
        # The UID map is precious: a commit is on disk before it returns.
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute(f"PRAGMA cache_size={_CACHE}")
        (version,) = self._conn.execute("PRAGMA user_version").fetchone()
        if version != _SCHEMA_VERSION:
            self._upgrade()

    def _upgrade(self) -> None:
        """Create or upgrade the tables (a write transaction: only when needed,
        since every process opening an account comes here)."""
        with self.transaction():
            (version,) = self._conn.execute("PRAGMA user_version").fetchone()
            if version > _SCHEMA_VERSION:
                raise IndexError_(
                    f"{self.path}: index schema {version} is newer than this Mailstead"
                )
            if version == 1:
                # Schema 2 adds recent_floor; what was there is not \Recent.
                self._conn.execute(
                    "ALTER TABLE mailboxes ADD COLUMN recent_floor INTEGER NOT NULL DEFAULT 1"
                )
                self._conn.execute("UPDATE mailboxes SET recent_floor = uidnext")
            if version < _SCHEMA_VERSION:
                # Every table is "IF NOT EXISTS": this adds the new ones (3: snapshots).
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        self._conn.execute(statement)
            if version < 4:
                # Schema 4 (RFC 9208 QUOTA): each mailbox's octets and message
                # count, kept by triggers in the transactions that change them.
                add_usage_columns(self._conn)
            self._conn.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")

    def close(self) -> None:
        with self.lock:
            self._conn.close()

    @contextlib.contextmanager
    def transaction(self, *, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` … ``COMMIT``: one writer among all processes at a time.

        A transaction begun inside another one of the same thread is part of
        it. ``durable=False`` for changes to rebuildable data only (flags,
        locations, expunges whose files are gone): the commit does not wait
        for an fsync (2 ms of the event loop per STORE); the next durable
        commit, or a checkpoint, makes it durable, in order (WAL).
        """
        with self.lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self._conn
                finally:
                    self._depth -= 1
                return
            if not durable:
                self._conn.execute("PRAGMA synchronous=NORMAL")
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                self._depth = 1
                try:
                    yield self._conn
                except BaseException:
                    self._depth = 0
                    self._conn.execute("ROLLBACK")
                    raise
                self._depth = 0
                self._conn.execute("COMMIT")
            finally:
                if not durable:
                    self._conn.execute("PRAGMA synchronous=FULL")

    # -- mailboxes ---------------------------------------------------------

    def mailbox(self, name: str) -> MailboxState | None:
        with self.lock:
            row = self._conn.execute(
                "SELECT id, name, uidvalidity, uidnext, highestmodseq, stamp"
                " FROM mailboxes WHERE name = ?",
                (name,),
            ).fetchone()
        return MailboxState(*row) if row else None

    def set_stamp(self, mailbox_id: int, stamp: str) -> None:
        """Record the directory stamp at which the mailbox's files match its rows."""
        with self.transaction(durable=False) as conn:
            conn.execute("UPDATE mailboxes SET stamp = ? WHERE id = ?", (stamp, mailbox_id))

    def ensure_mailbox(self, name: str) -> MailboxState:
        """The row of mailbox ``name``, made with a fresh UIDVALIDITY if absent."""
        state = self.mailbox(name)
        if state is not None:
            return state
        with self.transaction() as conn:
            if conn.execute("SELECT 1 FROM mailboxes WHERE name = ?", (name,)).fetchone() is None:
                conn.execute(
                    "INSERT INTO mailboxes (name, uidvalidity, uidnext, highestmodseq)"
                    " VALUES (?, ?, 1, 1)",
                    (name, _new_uidvalidity(conn)),
                )
        state = self.mailbox(name)
        assert state is not None
        return state

    def drop_mailbox(self, name: str, make: Callable[[], None] | None = None) -> None:
        """Forget mailbox ``name`` and its messages (after its files are gone).

        ``make``, if given, creates the new mailbox of that name inside the
        same transaction: no other process opens (and indexes) the new
        mailbox before the old rows are gone, which would leave it holding a
        mailbox id that no longer exists.
        """
        with self.transaction() as conn:
            if make is not None:
                make()
            row = conn.execute("SELECT id FROM mailboxes WHERE name = ?", (name,)).fetchone()
            if row is None:
                return
            for table in ("messages", "expunged", "cache", "snapshots", "summaries"):
                conn.execute(f"DELETE FROM {table} WHERE mailbox = ?", row)
            conn.execute("DELETE FROM mailboxes WHERE id = ?", row)

    def rename_mailbox(self, old: str, new: str) -> None:
        """Rename the rows of ``old`` and its children; UIDs and UIDVALIDITY move along."""
        with self.transaction() as conn:
            rows = conn.execute(
                "SELECT id, name FROM mailboxes WHERE name = ? OR substr(name, 1, ?) = ?",
                (old, len(old) + 1, old + "/"),
            ).fetchall()
            for mailbox_id, name in rows:
                target = new + name[len(old) :]
                # Rows left by a folder removed behind our back give way.
                stale = conn.execute(
                    "SELECT id FROM mailboxes WHERE name = ?", (target,)
                ).fetchone()
                if stale is not None:
                    for table in ("messages", "expunged", "cache", "snapshots", "summaries"):
                        conn.execute(f"DELETE FROM {table} WHERE mailbox = ?", stale)
                    conn.execute("DELETE FROM mailboxes WHERE id = ?", stale)
                conn.execute("UPDATE mailboxes SET name = ? WHERE id = ?", (target, mailbox_id))

    def claim_recent(self, mailbox_id: int, uidnext: int) -> int:
        """Take the messages below ``uidnext`` as this session's \\Recent ones
        (RFC 3501 §2.3.2: one session each); the first UID taken."""
        floor = self.recent_floor(mailbox_id)
        if floor >= uidnext:
            return floor  # nothing new: no write (every warm SELECT)
        with self.transaction(durable=False) as conn:
            (floor,) = conn.execute(
                "SELECT recent_floor FROM mailboxes WHERE id = ?", (mailbox_id,)
            ).fetchone()
            if floor < uidnext:
                conn.execute(
                    "UPDATE mailboxes SET recent_floor = ? WHERE id = ?", (uidnext, mailbox_id)
                )
        return int(floor)

    def recent_floor(self, mailbox_id: int) -> int:
        """The first UID still \\Recent for the next session to select the mailbox."""
        with self.lock:
            row = self._conn.execute(
                "SELECT recent_floor FROM mailboxes WHERE id = ?", (mailbox_id,)
            ).fetchone()
        return int(row[0]) if row else 1

    def highestmodseq(self, mailbox_id: int) -> int:
        with self.lock:
            row = self._conn.execute(
                "SELECT highestmodseq FROM mailboxes WHERE id = ?", (mailbox_id,)
            ).fetchone()
        return int(row[0]) if row else 0

    # -- messages ----------------------------------------------------------

    def rows(self, mailbox_id: int, since_modseq: int = 0) -> list[Row]:
        """Messages changed (or added) after ``since_modseq``, in UID order."""
        with self.lock:
            return [
                Row(*r)
                for r in self._conn.execute(
                    "SELECT uid, key, location, flags, size, internaldate, modseq"
                    " FROM messages WHERE mailbox = ? AND modseq > ? ORDER BY uid",
                    (mailbox_id, since_modseq),
                )
            ]

    def all_rows(self, mailbox_id: int) -> list[tuple[int, str, str, int, float, int]]:
        """``(uid, location, flags, size, internaldate, modseq)`` of every message, by UID."""
        with self.lock:
            return self._conn.execute(
                "SELECT uid, location, flags, size, internaldate, modseq"
                " FROM messages WHERE mailbox = ? ORDER BY uid",
                (mailbox_id,),
            ).fetchall()

    def locations(self, mailbox_id: int, uids: list[int]) -> dict[int, str]:
        """The recorded file location of each of ``uids`` that still exists."""
        found: dict[int, str] = {}
        with self.lock:
            for start in range(0, len(uids), 500):
                chunk = uids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                found.update(
                    self._conn.execute(
                        "SELECT uid, location FROM messages"
                        f" WHERE mailbox = ? AND uid IN ({marks})",
                        (mailbox_id, *chunk),
                    ).fetchall()
                )
        return found

    def uids_by_key(
        self, mailbox_id: int, keys: Iterable[str], *, copies: bool = False
    ) -> dict[str, int]:
        """The UID of each of ``keys`` the mailbox holds.

        ``copies``: also the keys ``<key>#2``, ``<key>#3`` … of identical
        copies (mbox fingerprints), which sort just after ``<key>``.
        """
        found: dict[str, int] = {}
        with self.lock:
            for key in keys:
                rows = self._conn.execute(
                    "SELECT key, uid FROM messages WHERE mailbox = ? AND key >= ? AND key <= ?",
                    (mailbox_id, key, f"{key}#\U0010ffff" if copies else key),
                ).fetchall()
                found.update(
                    (str(k), int(uid)) for k, uid in rows if k == key or k.startswith(f"{key}#")
                )
        return found

    def expunged_since(self, mailbox_id: int, since_modseq: int) -> list[int] | None:
        """UIDs expunged after ``since_modseq``; None when the log no longer reaches back."""
        with self.lock:
            row = self._conn.execute(
                "SELECT expunge_horizon FROM mailboxes WHERE id = ?", (mailbox_id,)
            ).fetchone()
            if row is None or since_modseq < row[0]:
                return None
            return [
                uid
                for (uid,) in self._conn.execute(
                    "SELECT uid FROM expunged WHERE mailbox = ? AND modseq > ? ORDER BY uid",
                    (mailbox_id, since_modseq),
                )
            ]

    def snapshot(self, mailbox_id: int) -> tuple[int, bytes] | None:
        """The last saved snapshot of the mailbox's records and its modseq."""
        with self.lock:
            row = self._conn.execute(
                "SELECT modseq, data FROM snapshots WHERE mailbox = ?", (mailbox_id,)
            ).fetchone()
        return (int(row[0]), bytes(row[1])) if row else None

    def save_snapshot(self, mailbox_id: int, modseq: int, data: bytes) -> None:
        """Keep ``data`` as the records at ``modseq``, unless the mailbox moved past it.

        Rebuildable: committed without waiting for an fsync.
        """
        with self.transaction(durable=False) as conn:
            row = conn.execute(
                "SELECT highestmodseq FROM mailboxes WHERE id = ?", (mailbox_id,)
            ).fetchone()
            if row is not None and row[0] == modseq:
                conn.execute(
                    "INSERT OR REPLACE INTO snapshots (mailbox, modseq, data) VALUES (?, ?, ?)",
                    (mailbox_id, modseq, data),
                )

    def cached(self, mailbox_id: int, uid: int, item: str) -> bytes | None:
        with self.lock:
            row = self._conn.execute(
                "SELECT value FROM cache WHERE mailbox = ? AND uid = ? AND item = ?",
                (mailbox_id, uid, item),
            ).fetchone()
        return bytes(row[0]) if row else None

    def remember(self, mailbox_id: int, uid: int, item: str, value: bytes) -> None:
        # Rebuildable data: a lost write costs a re-parse, so no fsync wait.
        with self.lock:
            self._conn.execute("PRAGMA synchronous=OFF")
            try:
                self._conn.execute(
                    "INSERT OR REPLACE INTO cache (mailbox, uid, item, value) VALUES (?, ?, ?, ?)",
                    (mailbox_id, uid, item, value),
                )
            finally:
                self._conn.execute("PRAGMA synchronous=FULL")

    def summaries(self, mailbox_id: int) -> dict[int, bytes]:
        """Every summary kept for the mailbox (SORT, THREAD: proto/imap/summary.py)."""
        with self.lock:
            return {
                int(uid): bytes(value)
                for uid, value in self._conn.execute(
                    "SELECT uid, value FROM summaries WHERE mailbox = ?", (mailbox_id,)
                )
            }

    def save_summaries(self, mailbox_id: int, found: dict[int, bytes]) -> None:
        """Keep new summaries; rebuildable, so no fsync wait (as :meth:`remember`)."""
        with self.transaction(durable=False) as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO summaries (mailbox, uid, value)"
                " SELECT ?, ?, ? WHERE EXISTS"
                " (SELECT 1 FROM messages WHERE mailbox = ? AND uid = ?)",
                [(mailbox_id, uid, value, mailbox_id, uid) for uid, value in found.items()],
            )

    # -- usage (RFC 9208 QUOTA) ----------------------------------------------

    def usage(self) -> Usage:
        """Octets and messages of every mailbox of the account, as indexed."""
        with self.lock:
            return account_usage(self._conn)

    def recount_usage(self) -> Usage:
        """Recompute the usage counters from the message rows (after a repair by hand)."""
        with self.transaction() as conn:
            recount(conn)
            return account_usage(conn)

    # -- subscriptions (RFC 9051 §6.3.7) ----------------------------------

    def subscriptions(self) -> set[str]:
        with self.lock:
            return {name for (name,) in self._conn.execute("SELECT name FROM subscriptions")}

    def set_subscribed(self, name: str, subscribed: bool) -> None:
        with self.transaction() as conn:
            if subscribed:
                conn.execute("INSERT OR IGNORE INTO subscriptions (name) VALUES (?)", (name,))
            else:
                conn.execute("DELETE FROM subscriptions WHERE name = ?", (name,))


class MailboxWriter:
    """The changes to one mailbox inside one index transaction.

    Each change takes the next modseq; :meth:`finish` stores the counters.
    Made by :func:`write`, never directly.
    """

    def __init__(self, conn: sqlite3.Connection, mailbox_id: int) -> None:
        self._conn = conn
        self.mailbox_id = mailbox_id
        uidnext, modseq = conn.execute(
            "SELECT uidnext, highestmodseq FROM mailboxes WHERE id = ?", (mailbox_id,)
        ).fetchone()
        self.uidnext = int(uidnext)
        self.modseq = int(modseq)
        self._changed = False
        self.bulk = False

    def _next_modseq(self) -> int:
        if not self._changed:
            self.modseq += 1
            self._changed = True
        return self.modseq

    def keys(self) -> dict[str, tuple[int, str, str]]:
        """Every message's key → (uid, location, flags), as committed now."""
        return {
            key: (uid, location, flags)
            for uid, key, location, flags in self._conn.execute(
                "SELECT uid, key, location, flags FROM messages WHERE mailbox = ?",
                (self.mailbox_id,),
            )
        }

    def location(self, uid: int) -> str | None:
        row = self._conn.execute(
            "SELECT location FROM messages WHERE mailbox = ? AND uid = ?", (self.mailbox_id, uid)
        ).fetchone()
        return str(row[0]) if row else None

    def find(self, key: str) -> int | None:
        row = self._conn.execute(
            "SELECT uid FROM messages WHERE mailbox = ? AND key = ?", (self.mailbox_id, key)
        ).fetchone()
        return int(row[0]) if row else None

    def add(self, key: str, location: str, flags: str, size: int, internaldate: float) -> int:
        """Give the message ``key`` the next UID (RFC 9051 §2.3.1.1: strictly ascending)."""
        uid = self.uidnext
        self.uidnext += 1
        self._conn.execute(
            "INSERT INTO messages (mailbox, uid, key, location, flags, size, internaldate, modseq)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (self.mailbox_id, uid, key, location, flags, size, internaldate, self._next_modseq()),
        )
        return uid

    def add_many(self, messages: list[tuple[str, str, str, int, float]]) -> None:
        """:meth:`add` for many ``(key, location, flags, size, internaldate)`` in order."""
        first = self.uidnext
        self.uidnext += len(messages)
        modseq = self._next_modseq() if messages else self.modseq
        if len(messages) > _BULK_ROWS:
            # A first scan of a large mailbox: the index pages it touches
            # would not fit the small per-connection cache, and spilling them
            # costs more than the inserts (about half the scan of 10,000).
            self._conn.execute(f"PRAGMA cache_size={_BULK_CACHE}")
            self.bulk = True
        self._conn.executemany(
            "INSERT INTO messages (mailbox, uid, key, location, flags, size, internaldate, modseq)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(self.mailbox_id, first + i, *message, modseq) for i, message in enumerate(messages)],
        )

    def update(self, uid: int, location: str, flags: str) -> None:
        self._conn.execute(
            "UPDATE messages SET location = ?, flags = ?, modseq = ? WHERE mailbox = ? AND uid = ?",
            (location, flags, self._next_modseq(), self.mailbox_id, uid),
        )

    def move(self, uid: int, location: str) -> None:
        """A new location with the same flags: not a change a client sees."""
        self._conn.execute(
            "UPDATE messages SET location = ? WHERE mailbox = ? AND uid = ?",
            (location, self.mailbox_id, uid),
        )

    def remove(self, uids: Iterable[int]) -> None:
        modseq = self._next_modseq()
        params = [(self.mailbox_id, uid) for uid in uids]
        self._conn.executemany("DELETE FROM messages WHERE mailbox = ? AND uid = ?", params)
        self._conn.executemany("DELETE FROM cache WHERE mailbox = ? AND uid = ?", params)
        self._conn.executemany("DELETE FROM summaries WHERE mailbox = ? AND uid = ?", params)
        self._conn.executemany(
            "INSERT OR REPLACE INTO expunged (mailbox, uid, modseq) VALUES (?, ?, ?)",
            [(self.mailbox_id, uid, modseq) for _, uid in params],
        )

    def set_stamp(self, stamp: str) -> None:
        self._conn.execute("UPDATE mailboxes SET stamp = ? WHERE id = ?", (stamp, self.mailbox_id))

    def finish(self) -> None:
        self._conn.execute(
            "UPDATE mailboxes SET uidnext = ?, highestmodseq = ? WHERE id = ?",
            (self.uidnext, self.modseq, self.mailbox_id),
        )
        (count,) = self._conn.execute(
            "SELECT count(*) FROM expunged WHERE mailbox = ?", (self.mailbox_id,)
        ).fetchone()
        if count > 2 * EXPUNGE_LOG_KEEP:
            self._prune_expunge_log()

    def _prune_expunge_log(self) -> None:
        (cut,) = self._conn.execute(
            "SELECT modseq FROM expunged WHERE mailbox = ? ORDER BY modseq DESC LIMIT 1 OFFSET ?",
            (self.mailbox_id, EXPUNGE_LOG_KEEP),
        ).fetchone()
        self._conn.execute(
            "DELETE FROM expunged WHERE mailbox = ? AND modseq <= ?", (self.mailbox_id, cut)
        )
        self._conn.execute(
            "UPDATE mailboxes SET expunge_horizon = ? WHERE id = ?", (cut, self.mailbox_id)
        )


@contextlib.contextmanager
def write(index: AccountIndex, mailbox_id: int, *, durable: bool = True) -> Iterator[MailboxWriter]:
    """One atomic batch of changes to mailbox ``mailbox_id``; ``durable=False``
    when it gives out no UID (see :meth:`AccountIndex.transaction`)."""
    with index.transaction(durable=durable) as conn:
        writer = MailboxWriter(conn, mailbox_id)
        yield writer
        writer.finish()
    if writer.bulk:  # after the commit wrote the pages out
        with index.lock:
            conn.execute(f"PRAGMA cache_size={_CACHE}")
