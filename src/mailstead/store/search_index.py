"""The full-text search index of one account: SQLite FTS5 with trigrams.

One database per account, ``mailstead-search.sqlite3`` beside the mailbox
index. It is rebuildable and never precious (docs/durability.md): deleting
it loses nothing, the next catch-up (or ``mailstead mailbox reindex``)
writes it again, and until then SEARCH reads the messages as it always did.

The index narrows a SEARCH; it never decides one. A trigram tokenizer
(SQLite ≥ 3.34) makes any substring of three characters or more a look-up;
with ``detail=none`` the index keeps which messages hold a trigram but not
where, so a needle becomes the AND of its trigrams, a superset of the
messages holding it, and the exact matcher confirms each
(:mod:`mailstead.proto.imap.search_plan`).

The index follows the mailbox index rather than the code paths that change
it: per mailbox it keeps a *mark*, the UID up to which every message is
indexed and the modseq up to which expunges were applied. Delivery, APPEND,
COPY and MOVE only ever add UIDs above the mark; EXPUNGE (and a file another
program removed) shows in the mailbox index's expunge log. So nothing on the
delivery path waits for the index, and :meth:`SearchIndex.catch_up`, run in
the background (:mod:`mailstead.store.search_indexer`), brings it up to date.
UIDs above the mark are searched by reading them.

The FTS tables are contentless (the text is not stored twice); removing a
row from such a table needs the text it was indexed with, so each message's
columns are kept zlib-compressed beside it (a third of the text's size).
"""

from __future__ import annotations

import sqlite3
import threading
import zlib
from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass
from pathlib import Path

from mailstead.proto.imap.search_plan import AllOf, AnyOf, Contains, Prefilter
from mailstead.sqlite_wal import enable_wal
from mailstead.store.search_text import IndexedText, indexed_text

SEARCH_INDEX_NAME = "mailstead-search.sqlite3"
MAX_TRIGRAMS = 12
"""Trigrams of one needle looked up; a long needle's others add little."""
BATCH = 100
"""Messages indexed per transaction."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS docs (
    docid    INTEGER PRIMARY KEY,       -- rowid of the FTS rows
    mailbox  INTEGER NOT NULL,          -- mailboxes.id of the mailbox index
    uid      INTEGER NOT NULL,
    complete INTEGER NOT NULL,          -- 0: cut or unread; every search reads it
    -- The columns, zlib-compressed: a contentless FTS row is deleted with its text.
    fields   BLOB NOT NULL,
    text     BLOB NOT NULL,
    UNIQUE (mailbox, uid)
);
CREATE INDEX IF NOT EXISTS docs_incomplete ON docs (mailbox, uid) WHERE complete = 0;
CREATE TABLE IF NOT EXISTS marks (
    mailbox     INTEGER PRIMARY KEY,
    uidvalidity INTEGER NOT NULL,
    uid         INTEGER NOT NULL,       -- every message up to this UID is indexed
    modseq      INTEGER NOT NULL        -- expunges up to this modseq are applied
);
CREATE VIRTUAL TABLE IF NOT EXISTS fields_fts
    USING fts5(fields, content='', detail=none, tokenize='trigram');
CREATE VIRTUAL TABLE IF NOT EXISTS text_fts
    USING fts5(text, content='', detail=none, tokenize='trigram');
"""
_TABLES = {"fields": "fields_fts", "text": "text_fts"}


class SearchIndexUnavailable(Exception):
    """This SQLite has no FTS5 or no trigram tokenizer (3.34 or later)."""


@dataclass(frozen=True, slots=True)
class MailboxFacts:
    """What the mailbox index says of one mailbox, for a catch-up."""

    uidvalidity: int
    highestmodseq: int


class IndexSource:
    """Reads the mailbox index (its own connection) and the message files of one
    Maildir folder, for the indexer thread or the CLI."""

    def __init__(self, index_path: Path, read: Callable[[str], bytes]) -> None:
        self._conn = sqlite3.connect(index_path, timeout=30.0, isolation_level=None)
        self._read = read

    def close(self) -> None:
        self._conn.close()

    def facts(self, mailbox_id: int) -> MailboxFacts | None:
        row = self._conn.execute(
            "SELECT uidvalidity, highestmodseq FROM mailboxes WHERE id = ?", (mailbox_id,)
        ).fetchone()
        return None if row is None else MailboxFacts(int(row[0]), int(row[1]))

    def expunged_since(self, mailbox_id: int, modseq: int) -> list[int] | None:
        """As :meth:`AccountIndex.expunged_since`: None when the log was pruned."""
        row = self._conn.execute(
            "SELECT expunge_horizon FROM mailboxes WHERE id = ?", (mailbox_id,)
        ).fetchone()
        if row is None or modseq < row[0]:
            return None
        return [
            int(uid)
            for (uid,) in self._conn.execute(
                "SELECT uid FROM expunged WHERE mailbox = ? AND modseq > ?", (mailbox_id, modseq)
            )
        ]

    def uids(self, mailbox_id: int) -> set[int]:
        return {
            int(uid)
            for (uid,) in self._conn.execute(
                "SELECT uid FROM messages WHERE mailbox = ?", (mailbox_id,)
            )
        }

    def rows_after(self, mailbox_id: int, uid: int, limit: int) -> list[tuple[int, str]]:
        """``(uid, location)`` of the next messages above ``uid``."""
        return [
            (int(u), str(loc))
            for u, loc in self._conn.execute(
                "SELECT uid, location FROM messages WHERE mailbox = ? AND uid > ?"
                " ORDER BY uid LIMIT ?",
                (mailbox_id, uid, limit),
            )
        ]

    def location(self, mailbox_id: int, uid: int) -> str | None:
        row = self._conn.execute(
            "SELECT location FROM messages WHERE mailbox = ? AND uid = ?", (mailbox_id, uid)
        ).fetchone()
        return None if row is None else str(row[0])

    def read(self, mailbox_id: int, uid: int, location: str) -> bytes | None:
        """The message's bytes; None when it is gone (expunged meanwhile)."""
        try:
            return self._read(location)
        except FileNotFoundError:
            pass
        # Renamed by a flag change since the row was read: ask again.
        moved = self.location(mailbox_id, uid)
        if moved is None or moved == location:
            return None
        try:
            return self._read(moved)
        except FileNotFoundError:
            return None


class _Candidates:
    """UIDs the index found, and every UID it has not indexed yet."""

    __slots__ = ("found", "upto")

    def __init__(self, found: set[int], upto: int) -> None:
        self.found = found
        self.upto = upto

    def __contains__(self, uid: object) -> bool:
        return isinstance(uid, int) and (uid > self.upto or uid in self.found)


@dataclass(frozen=True, slots=True)
class _Mark:
    uidvalidity: int
    uid: int
    modseq: int


class SearchIndex:
    """Owns one account's full-text database: its connection, look-ups and catch-up.

    Thread-safe: SEARCH asks from the event loop while the indexer thread
    writes; decoding happens outside the lock, each write is one short
    transaction (several processes may catch up at once; the mark, read
    again inside the transaction, keeps them from indexing a message twice).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.lock = threading.RLock()
        self._conn = sqlite3.connect(
            self.path, timeout=30.0, isolation_level=None, check_same_thread=False
        )
        enable_wal(self._conn)
        # Rebuildable: a commit need not wait for the disk.
        self._conn.execute("PRAGMA synchronous=NORMAL")
        try:
            self._conn.executescript(_SCHEMA)
        except sqlite3.OperationalError as exc:
            self._conn.close()
            raise SearchIndexUnavailable(f"{self.path}: {exc}") from exc

    def close(self) -> None:
        with self.lock:
            self._conn.close()

    # -- looking up --------------------------------------------------------

    def candidates(
        self, mailbox_id: int, uidvalidity: int, prefilter: Prefilter
    ) -> Container[int] | None:
        """The UIDs of the mailbox that may satisfy ``prefilter``: those the index
        finds, those it could not index whole, and all above its mark."""
        with self.lock:
            mark = self._mark(mailbox_id)
            if mark is None or mark.uidvalidity != uidvalidity or mark.uid == 0:
                return None
            found = self._evaluate(mailbox_id, prefilter)
            found.update(
                int(uid)
                for (uid,) in self._conn.execute(
                    "SELECT uid FROM docs WHERE mailbox = ? AND complete = 0", (mailbox_id,)
                )
            )
        return _Candidates(found, mark.uid)

    def indexed_upto(self, mailbox_id: int) -> tuple[int, int]:
        """(UID, modseq) the mailbox is indexed up to; (0, 0) if never."""
        with self.lock:
            mark = self._mark(mailbox_id)
        return (0, 0) if mark is None else (mark.uid, mark.modseq)

    def count(self) -> int:
        """Messages in the index."""
        with self.lock:
            return int(self._conn.execute("SELECT count(*) FROM docs").fetchone()[0])

    def _evaluate(self, mailbox_id: int, prefilter: Prefilter) -> set[int]:
        if isinstance(prefilter, Contains):
            return self._lookup(mailbox_id, _TABLES[prefilter.column], prefilter.needle)
        sets = [self._evaluate(mailbox_id, p) for p in prefilter.parts]
        if isinstance(prefilter, AllOf):
            return set.intersection(*sets)
        assert isinstance(prefilter, AnyOf)
        return set.union(*sets)

    def _lookup(self, mailbox_id: int, table: str, needle: str) -> set[int]:
        query = " AND ".join('"' + t.replace('"', '""') + '"' for t in trigrams(needle))
        return {
            int(uid)
            for (uid,) in self._conn.execute(
                f"SELECT uid FROM docs WHERE mailbox = ? AND docid IN"
                f" (SELECT rowid FROM {table} WHERE {table} MATCH ?)",
                (mailbox_id, query),
            )
        }

    def _mark(self, mailbox_id: int) -> _Mark | None:
        row = self._conn.execute(
            "SELECT uidvalidity, uid, modseq FROM marks WHERE mailbox = ?", (mailbox_id,)
        ).fetchone()
        return None if row is None else _Mark(int(row[0]), int(row[1]), int(row[2]))

    # -- catching up -------------------------------------------------------

    def catch_up(self, source: IndexSource, mailbox_id: int, *, batches: int = 0) -> bool:
        """Apply the mailbox's expunges and index its new messages; True when done.

        ``batches``: stop after that many batches of :data:`BATCH` messages
        (0: no limit), so that one large mailbox does not hold up others.
        """
        facts = source.facts(mailbox_id)
        if facts is None:  # the mailbox was deleted
            self.drop(mailbox_id)
            return True
        with self.lock:
            mark = self._mark(mailbox_id)
        if mark is None or mark.uidvalidity != facts.uidvalidity:
            self.drop(mailbox_id)
            mark = _Mark(facts.uidvalidity, 0, 0)
            with self.lock, self._transaction():
                self._conn.execute(
                    "INSERT OR REPLACE INTO marks VALUES (?, ?, 0, ?)",
                    (mailbox_id, facts.uidvalidity, facts.highestmodseq),
                )
        elif facts.highestmodseq > mark.modseq:
            gone = source.expunged_since(mailbox_id, mark.modseq)
            if gone is None:  # the log was pruned: compare with every UID
                present = source.uids(mailbox_id)
                gone = [uid for uid in self._indexed_uids(mailbox_id) if uid not in present]
            self.remove(mailbox_id, gone, modseq=facts.highestmodseq)
        done = 0
        upto = mark.uid
        while True:
            rows = source.rows_after(mailbox_id, upto, BATCH)
            if not rows:
                return True
            docs = []
            for uid, location in rows:
                data = source.read(mailbox_id, uid, location)
                # Gone meanwhile: kept as unread, the expunge removes it.
                text = _indexed(data) if data is not None else IndexedText("", "", False)
                docs.append((uid, text))
            upto = self._add(mailbox_id, docs)
            done += 1
            if batches and done >= batches:
                return not source.rows_after(mailbox_id, upto, 1)

    def _indexed_uids(self, mailbox_id: int) -> list[int]:
        with self.lock:
            return [
                int(uid)
                for (uid,) in self._conn.execute(
                    "SELECT uid FROM docs WHERE mailbox = ?", (mailbox_id,)
                )
            ]

    def _transaction(self) -> _Transaction:
        return _Transaction(self._conn)

    def _add(self, mailbox_id: int, docs: list[tuple[int, IndexedText]]) -> int:
        """Index ``docs`` (ascending UIDs) above the mark; the new mark."""
        with self.lock, self._transaction():
            mark = self._mark(mailbox_id)
            if mark is None:
                return docs[-1][0]  # dropped meanwhile (a rebuild): the next catch-up starts over
            for uid, text in docs:
                if uid <= mark.uid:
                    continue  # another process indexed it first
                cur = self._conn.execute(
                    "INSERT OR IGNORE INTO docs (mailbox, uid, complete, fields, text)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (mailbox_id, uid, int(text.complete), _pack(text.fields), _pack(text.text)),
                )
                if not cur.rowcount:
                    continue
                docid = cur.lastrowid
                self._conn.execute(
                    "INSERT INTO fields_fts (rowid, fields) VALUES (?, ?)", (docid, text.fields)
                )
                self._conn.execute(
                    "INSERT INTO text_fts (rowid, text) VALUES (?, ?)", (docid, text.text)
                )
            upto = max(mark.uid, docs[-1][0])
            self._conn.execute("UPDATE marks SET uid = ? WHERE mailbox = ?", (upto, mailbox_id))
        return upto

    def remove(self, mailbox_id: int, uids: Iterable[int], *, modseq: int | None = None) -> None:
        """Take expunged messages out of the index (and move the modseq mark)."""
        with self.lock, self._transaction():
            for uid in uids:
                row = self._conn.execute(
                    "SELECT docid, fields, text FROM docs WHERE mailbox = ? AND uid = ?",
                    (mailbox_id, uid),
                ).fetchone()
                if row is None:
                    continue
                docid, fields, text = row[0], _unpack(row[1]), _unpack(row[2])
                # A contentless table forgets a row given the text it holds.
                self._conn.execute(
                    "INSERT INTO fields_fts (fields_fts, rowid, fields) VALUES ('delete', ?, ?)",
                    (docid, fields),
                )
                self._conn.execute(
                    "INSERT INTO text_fts (text_fts, rowid, text) VALUES ('delete', ?, ?)",
                    (docid, text),
                )
                self._conn.execute("DELETE FROM docs WHERE docid = ?", (docid,))
            if modseq is not None:
                self._conn.execute(
                    "UPDATE marks SET modseq = max(modseq, ?) WHERE mailbox = ?",
                    (modseq, mailbox_id),
                )

    def drop(self, mailbox_id: int) -> None:
        """Forget one mailbox (deleted, or a new UIDVALIDITY)."""
        uids = self._indexed_uids(mailbox_id)
        self.remove(mailbox_id, uids)
        with self.lock, self._transaction():
            self._conn.execute("DELETE FROM marks WHERE mailbox = ?", (mailbox_id,))

    def clear(self) -> None:
        """Forget everything (a rebuild starts here)."""
        with self.lock, self._transaction():
            for table in ("docs", "marks"):
                self._conn.execute(f"DELETE FROM {table}")
            for fts in _TABLES.values():
                self._conn.execute(f"INSERT INTO {fts} ({fts}) VALUES ('delete-all')")
        with self.lock:
            self._conn.execute("VACUUM")


class _Transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (``ROLLBACK`` on error); the caller holds the lock."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __enter__(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: object, value: object, tb: object) -> None:
        self._conn.execute("COMMIT" if kind is None else "ROLLBACK")


def trigrams(needle: str) -> list[str]:
    """Up to :data:`MAX_TRIGRAMS` distinct trigrams of ``needle``, spread over it."""
    every = list(dict.fromkeys(needle[i : i + 3] for i in range(len(needle) - 2)))
    if len(every) <= MAX_TRIGRAMS:
        return every
    step = (len(every) - 1) / (MAX_TRIGRAMS - 1)
    return [every[round(i * step)] for i in range(MAX_TRIGRAMS)]


def _pack(text: str) -> bytes:
    return zlib.compress(text.encode("utf-8"), 1)


def _unpack(packed: bytes) -> str:
    return zlib.decompress(packed).decode("utf-8")


def _indexed(data: bytes) -> IndexedText:
    # The bytes as SEARCH reads them: CRLF line ends (message_commands.to_crlf).
    if b"\r\n" in data:
        data = data.replace(b"\r\n", b"\n")
    return indexed_text(data.replace(b"\n", b"\r\n"))
