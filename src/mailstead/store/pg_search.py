"""SEARCH's full-text index in the cluster database: trigrams of each message's text.

The PostgreSQL sibling of :mod:`mailstead.store.search_index`, with the same
rule: the index narrows a SEARCH, it never decides one. ``mail_search``
keeps per message the two casefolded columns of
:func:`mailstead.store.search_text.indexed_text` (header fields decoded,
RFC 2047 words, transfer encodings and charsets undone), and a GIN index
of ``pg_trgm`` trigrams (with ``btree_gin`` for the mailbox) answers
``LIKE '%needle%'`` on them: a substring look-up, as IMAP's SEARCH is
(RFC 9051 §6.4.4), rechecked by PostgreSQL on the text and then by the
exact matcher on the message (proto/imap/search_plan.py).

The rows are written lazily, not on the delivery path: delivery, APPEND,
COPY and ``migrate`` write nothing more. A SEARCH that finds messages of
its mailbox without a row reads and matches those as before (so the answer
is the same) and wakes a thread of its process (:data:`FILLER`) that
indexes them, at low priority. An EXPUNGE or a deleted mailbox takes
the rows with it (``ON DELETE CASCADE``). Most mail is never searched on
the server; the mail that is pays once (why: :meth:`MailboxText.fill`).

Without the extensions (PostgreSQL's contrib not installed, or a role that
may not create them) every SEARCH reads every message as before; one line
says so when the node starts (:func:`ensure_text_index`), and the next
start tries again.
"""

from __future__ import annotations

import contextlib
import logging
import time
import weakref
from collections.abc import Container, Sequence
from pathlib import Path

import psycopg

from mailstead.pgsql.compat import Connection
from mailstead.pgsql.connect import Pool
from mailstead.proto.imap.message_commands import to_crlf
from mailstead.proto.imap.search_plan import FIELDS, TEXT, AllOf, AnyOf, Contains, Prefilter
from mailstead.store.pg_rows import autocommit
from mailstead.store.search_indexer import BackgroundIndexer
from mailstead.store.search_text import indexed_text

__all__ = [
    "EXTENSIONS",
    "FILLER",
    "FILL_BATCH",
    "INDEX_NAME",
    "MailboxText",
    "ensure_text_index",
    "like_pattern",
    "text_index_ready",
]

log = logging.getLogger("mailstead.store")

#: Both are in PostgreSQL's contrib and "trusted" (PostgreSQL ≥ 13): the
#: database's owner may create them without being a superuser.
EXTENSIONS = ("pg_trgm", "btree_gin")
INDEX_NAME = "mail_search_trgm"
# One GIN index: the mailbox's posting list intersected with the needle's
# trigrams, so a common word costs this mailbox's rows, not the cluster's.
_INDEX = (
    f"CREATE INDEX IF NOT EXISTS {INDEX_NAME} ON mail_search"
    " USING gin (mailbox, fields gin_trgm_ops, text gin_trgm_ops)"
)
FILL_BATCH = 200
"""Messages the filler reads and writes per round trip, and per turn."""
ANALYZE_AFTER = 1_000
"""Rows the filler writes before it has PostgreSQL's statistics of ``mail_search``
taken again once it is idle: on statistics from before a large fill the
planner reads the whole mailbox's text instead of the trigram index (70 ms
instead of 1 ms for 10,000 messages, measured), until autovacuum comes by."""
_written = [0]  # rows the fillers of this process wrote since the last ANALYZE
_RECHECK = 300.0
"""Seconds before a process looks again for an index it found missing."""

_COLUMNS = {FIELDS: "fields", TEXT: "text"}
# Per pool: (ready, when looked).
_ready: weakref.WeakKeyDictionary[Pool, tuple[bool, float]] = weakref.WeakKeyDictionary()


def ensure_text_index(conn: psycopg.Connection[tuple[object, ...]]) -> str | None:
    """Create the extensions and the trigram index if they are missing; None when
    they are there, else the reason (one line) they cannot be.

    Runs at every start (after the versioned migrations, which make the
    table): an index refused today is made once the extension is installed.
    """
    with conn.transaction():
        row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (INDEX_NAME,)).fetchone()
        if row is not None and row[0]:
            return None
    try:
        with conn.transaction():
            # Nodes starting together: one builds, the others find it built.
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (INDEX_NAME,))
            for name in EXTENSIONS:
                conn.execute(f'CREATE EXTENSION IF NOT EXISTS "{name}"'.encode())
            conn.execute(_INDEX.encode())
    except psycopg.Error as exc:
        text = str(exc).strip()
        return text.splitlines()[0] if text else type(exc).__name__
    return None


def text_index_ready(pool: Pool) -> bool:
    """Whether the trigram index exists (asked once per process, again after
    :data:`_RECHECK` seconds while it does not)."""
    now = time.monotonic()
    known = _ready.get(pool)
    if known is not None and (known[0] or now - known[1] < _RECHECK):
        return known[0]
    with autocommit(pool) as conn:
        row = conn.execute("SELECT to_regclass(?) IS NOT NULL", (INDEX_NAME,)).fetchone()
    ready = bool(row and row[0])
    _ready[pool] = (ready, now)
    return ready


def like_pattern(needle: str) -> str:
    """``%needle%`` for ``LIKE … ESCAPE '\\'``, the needle's own ``\\``, ``%`` and ``_`` literal."""
    escaped = needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _answerable(prefilter: Prefilter) -> bool:
    if isinstance(prefilter, Contains):
        # PostgreSQL text holds no NUL (stored as a space, see _storable).
        return prefilter.column in _COLUMNS and "\x00" not in prefilter.needle
    return all(_answerable(p) for p in prefilter.parts)


def _condition(prefilter: Prefilter, params: list[object]) -> str:
    if isinstance(prefilter, Contains):
        params.append(like_pattern(prefilter.needle))
        return f"{_COLUMNS[prefilter.column]} LIKE ? ESCAPE '\\'"
    joiner = " AND " if isinstance(prefilter, AllOf) else " OR "
    assert isinstance(prefilter, AllOf | AnyOf)
    return "(" + joiner.join(_condition(p, params) for p in prefilter.parts) + ")"


def _storable(text: str) -> str:
    # Casefolded again: the raw-octet piece of indexed_text is only ASCII-lowered
    # (casefolding is per character, so a folded needle in it stays found).
    return text.casefold().replace("\x00", " ")


class MailboxText:
    """Owns one mailbox's full-text look-ups for this process, and how far its
    messages are known to be indexed (``upto``: every UID at or below has a row)."""

    def __init__(self, pool: Pool, mailbox_id: int) -> None:
        self.pool = pool
        self.mailbox_id = mailbox_id
        self.upto = 0

    def candidates(self, uids: Sequence[int], prefilter: Prefilter) -> Container[int] | None:
        """The UIDs among the mailbox's that may satisfy ``prefilter``; None: read them all.

        ``uids``: the caller's view (ascending). Messages without a row yet
        are candidates, and the background filler is told to index them.
        """
        if not _answerable(prefilter) or not text_index_ready(self.pool):
            return None
        with autocommit(self.pool) as conn:
            unindexed = self._unindexed(conn, uids)
            params: list[object] = [self.mailbox_id]
            where = _condition(prefilter, params)
            params.append(self.mailbox_id)
            found = {
                int(uid)
                for (uid,) in conn.execute(
                    # bigint, as the column: btree_gin has no int2 = int8.
                    f"SELECT uid FROM mail_search WHERE mailbox = ?::bigint AND {where}"
                    " UNION SELECT uid FROM mail_search WHERE mailbox = ? AND NOT complete",
                    params,
                )
            }
        if unindexed:
            FILLER.kick(self, self.mailbox_id, Path(f"postgresql mailbox {self.mailbox_id}"))
        return found | set(unindexed)

    def _unindexed(self, conn: Connection, uids: Sequence[int]) -> list[int]:
        """The mailbox's UIDs without a row, ascending; moves :attr:`upto`."""
        if not uids or uids[-1] <= self.upto:
            return []
        missing = self._missing(conn, self.upto)
        # Every UID of the view below the first one missing has its row.
        self.upto = min(uids[-1], missing[0] - 1) if missing else uids[-1]
        return missing

    def _missing(self, conn: Connection, above: int, limit: int | None = None) -> list[int]:
        return [
            int(uid)
            for (uid,) in conn.execute(
                "SELECT m.uid FROM mail_messages m WHERE m.mailbox = ? AND m.uid > ? AND NOT EXISTS"
                " (SELECT 1 FROM mail_search s WHERE s.mailbox = m.mailbox AND s.uid = m.uid)"
                " ORDER BY m.uid LIMIT ?",
                (self.mailbox_id, above, limit),
            )
        ]

    def catch_up(self, mailbox_id: int, folder: Path, *, batches: int = 0) -> bool:
        """One turn of :data:`FILLER` (``folder`` only names the mailbox in its log)."""
        return self.fill(batches)

    def fill(self, batches: int = 0) -> bool:
        """Index up to ``batches`` × :data:`FILL_BATCH` messages without a row (0: all);
        True when none is left.

        Why not on the delivery path: a message's GIN entries cost the
        database about 0.55 ms of CPU (measured: 5.5 s for 10,000 3 KB
        messages), 40 % more than its whole delivery does, for mail that is
        mostly never searched. Why not in the SEARCH: it runs on the
        worker's event loop. Until this is done, SEARCH reads what has no
        row, as before.
        """
        done = 0
        with autocommit(self.pool) as conn:
            while True:
                todo = self._missing(conn, self.upto, FILL_BATCH + 1)
                if not todo:
                    return True
                self._index(conn, todo[:FILL_BATCH])
                done += 1
                if len(todo) <= FILL_BATCH:
                    _written[0] += len(todo)
                    if _written[0] >= ANALYZE_AFTER:
                        _written[0] = 0
                        conn.execute("ANALYZE mail_search")
                    return True
                _written[0] += FILL_BATCH
                if batches and done >= batches:
                    return False

    def _index(self, conn: Connection, uids: list[int]) -> None:
        """Read, extract and store ``uids`` (those still there)."""
        rows: list[tuple[int, bool, str, str]] = []
        # Binary results: bodies come as bytes, not hex (half the octets).
        with conn.raw.cursor(binary=True) as cursor:
            cursor.execute(
                "SELECT m.uid, m.head, b.data FROM mail_messages m JOIN mail_bodies b"
                " ON b.hash = m.body WHERE m.mailbox = %s AND m.uid = ANY(%s::bigint[])",
                (self.mailbox_id, uids),
            )
            for uid, head, data in cursor:
                text = indexed_text(to_crlf(bytes(head) + bytes(data)))
                rows.append((int(uid), text.complete, _storable(text.fields), _storable(text.text)))
        if not rows:
            return
        # Another node's EXPUNGE won the race: those need no row.
        with contextlib.suppress(psycopg.errors.ForeignKeyViolation):
            conn.execute(
                "INSERT INTO mail_search (mailbox, uid, complete, fields, text)"
                " SELECT ?, v.uid, v.complete, v.fields, v.text FROM"
                " unnest(?::bigint[], ?::boolean[], ?::text[], ?::text[])"
                " AS v(uid, complete, fields, text)"
                " ON CONFLICT (mailbox, uid) DO NOTHING",
                (
                    self.mailbox_id,
                    [r[0] for r in rows],
                    [r[1] for r in rows],
                    [r[2] for r in rows],
                    [r[3] for r in rows],
                ),
            )


FILLER = BackgroundIndexer()
"""This process's filler thread: the SQLite indexer's machinery (nice 19, one
batch per turn, mailboxes taking turns, resting as long as it worked), with
PostgreSQL mailboxes to catch up (:meth:`MailboxText.catch_up`)."""
