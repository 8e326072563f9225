"""One mailbox in the cluster database, as IMAP sees it: UIDs, flags, content.

The PostgreSQL sibling of :class:`mailstead.store.mailbox.Mailbox`, with the
same semantics and none of the files: every node keeps one
:class:`PgMailbox` per open mailbox, shared by the sessions of its process,
with each message's record in memory so that ``FETCH 1:* (UID FLAGS)``
asks the database nothing. :meth:`PgMailbox.refresh` costs one indexed read
of the mailbox's row: every change any node makes to the messages takes the
mailbox's next modseq, so an unchanged HIGHESTMODSEQ means nothing to pull.
In IDLE it costs nothing until a change notice names the mailbox
(store/pg_notify.py), or the fallback interval passes.
"""

from __future__ import annotations

import bisect
import collections
import time
from collections.abc import Container, Iterable, Sequence

from mailstead.pgsql.compat import Connection
from mailstead.pgsql.connect import Pool
from mailstead.proto.imap.search_plan import Prefilter
from mailstead.proto.imap.storage import Appender, FlagLimitError
from mailstead.store.changes import NO_REPORTS, ChangeReporter
from mailstead.store.maildir import crlf_size
from mailstead.store.pg_notify import FALLBACK_POLL, ChangeNotices, Mark
from mailstead.store.pg_reads import Readahead
from mailstead.store.pg_rows import (
    NewMessage,
    PgMessage,
    add_messages,
    autocommit,
    body_hash,
    changes,
    collect_bodies,
    expunge_rows,
    transaction,
)
from mailstead.store.pg_search import MailboxText
from mailstead.store.records import flag_tuple, flags_after, with_changes
from mailstead.store.retention import Retained

__all__ = ["MAX_KEYWORDS", "PgMailbox"]

# Keywords one mailbox may define (FLAGS lists them all at every SELECT);
# a STORE or APPEND past it answers [LIMIT] (RFC 5530).
MAX_KEYWORDS = 256
# ENVELOPE/BODYSTRUCTURE/BODY answers kept per mailbox in this process
# (``cached``/``remember``), oldest forgotten first.
CACHE_ENTRIES = 4096
# Unreferenced bodies are collected at most this often per process.
_COLLECT_EVERY = 300.0
_last_collect = [time.monotonic()]

_COLUMNS = "uid, modseq, flags, size, internaldate, body"


def _keywords_of(flags: Iterable[str]) -> list[str]:
    return sorted({f for f in flags if not f.startswith("\\")})


class PgMailbox:
    """Owns this process's view of one mailbox in the database (a ``MailboxLike``)."""

    def __init__(self, pool: Pool, mailbox_id: int, name: str, uidvalidity: int) -> None:
        self.pool = pool
        self.id = mailbox_id
        self.name = name
        self.uidvalidity = uidvalidity
        self.uidnext = 1
        self.highestmodseq = 0
        # Ascending; replaced, never changed in place (views share it).
        self.uids: list[int] = []
        self.messages: dict[int, PgMessage] = {}
        # Expunged messages that sessions may still number (RFC 2180 §4.1);
        # their bodies stay in the database as long (mail_orphans).
        self.retained: Retained[PgMessage] = Retained()
        self.header_summaries: dict[int, bytes] = {}
        self.reporter: ChangeReporter = NO_REPORTS
        #: This process's LISTEN connection; without it IDLE reads at every look.
        self.notices: ChangeNotices | None = None
        self._heard: Mark | None = None  # the notices' mark at the last read
        self._read_at = -1e9
        self._keywords: list[str] = []
        self._loaded = False
        self._refreshed = -1e9
        self._cache: collections.OrderedDict[tuple[int, str], bytes] = collections.OrderedDict()
        self._readahead = Readahead(mailbox_id)
        self.text_index = MailboxText(pool, mailbox_id)
        # The last SEARCH's candidates: what its reads read ahead (not the
        # UIDs between them, which it will not read).
        self._plan: tuple[list[int], set[int]] | None = None

    # -- keeping up with the other sessions and nodes ------------------------

    def refresh(self, max_age: float = 0.0) -> None:
        """Bring :attr:`messages` up to date with the database.

        ``max_age``: skip the check if the last one is younger (sessions in
        IDLE share one look per interval). Raises ``FileNotFoundError`` when
        the mailbox was deleted or renamed (the session is told BYE).
        """
        now = time.monotonic()
        notices = self.notices
        if max_age and notices is not None:
            notices.want()  # IDLE waits on the notices: listen, if not yet
        if max_age and now - self._refreshed < max_age:
            return
        self._refreshed = now
        mark = None
        if notices is not None:
            mark = notices.mark(self.id)  # before the read: a notice during it reads again
            # In IDLE, nothing heard of this mailbox since the last read: nothing
            # changed, or the notice was lost (then the fallback reads).
            if max_age and mark == self._heard and now - self._read_at < FALLBACK_POLL:
                return
        with autocommit(self.pool) as conn:
            row = conn.execute(
                "SELECT name, highestmodseq FROM mail_mailboxes WHERE id = ?", (self.id,)
            ).fetchone()
            if row is None or row[0] != self.name:
                raise FileNotFoundError(f"mailbox {self.name!r} no longer exists")
            if int(row[1]) != self.highestmodseq or not self._loaded:
                self._pull(conn)
        self._heard, self._read_at = mark, now

    def _pull(self, conn: Connection) -> None:
        """Apply the changes made since :attr:`highestmodseq` (by anyone)."""
        # Counters first: rows committed after this read are applied again
        # by the next pull, which is harmless; the reverse would lose them.
        row = conn.execute(
            "SELECT name, uidnext, highestmodseq, expunge_horizon, keywords"
            " FROM mail_mailboxes WHERE id = ?",
            (self.id,),
        ).fetchone()
        if row is None:
            raise FileNotFoundError(f"mailbox {self.name!r} no longer exists")
        _, uidnext, highestmodseq, horizon, keywords = row
        since = self.highestmodseq
        if not self._loaded or since < int(horizon):
            self._load_all(conn)
        else:
            gone = [
                int(uid)
                for (uid,) in conn.execute(
                    "SELECT uid FROM mail_expunged WHERE mailbox = ? AND modseq > ?",
                    (self.id, since),
                )
            ]
            added = []
            for record in self._records(conn, since):
                if record.uid not in self.messages:
                    added.append(record.uid)
                self.messages[record.uid] = record
            gone = [uid for uid in gone if uid in self.messages and uid not in added]
            self._retain(gone)
            self.uids = with_changes(self.uids, added, set(gone))
        self.uidnext = int(uidnext)
        self.highestmodseq = int(highestmodseq)
        self._keywords = list(keywords)

    def _records(self, conn: Connection, since: int) -> list[PgMessage]:
        return [
            PgMessage(int(uid), flag_tuple(flags), int(size), float(date), int(modseq), bytes(body))
            for uid, modseq, flags, size, date, body in conn.execute(
                f"SELECT {_COLUMNS} FROM mail_messages WHERE mailbox = ? AND modseq > ?"
                " ORDER BY uid",
                (self.id, since),
            )
        ]

    def _load_all(self, conn: Connection) -> None:
        messages = {record.uid: record for record in self._records(conn, 0)}
        self._retain([uid for uid in self.messages if uid not in messages])
        self.messages = messages
        self.uids = list(messages)  # in UID order
        self._loaded = True

    def _retain(self, uids: list[int]) -> None:
        self.retained.add([self.messages.pop(uid) for uid in uids])

    # -- reading -------------------------------------------------------------

    def read(self, uid: int) -> bytes:
        """The stored bytes of message ``uid``, also while it is retained (RFC 2180 §4.1).

        Raises ``FileNotFoundError`` when its body is gone too, or the
        message was never in this mailbox.
        """
        msg = self.messages.get(uid) or self.retained.get(uid)
        if msg is None:
            raise FileNotFoundError(f"no message with UID {uid}")
        data = self._readahead.get(uid)
        if data is not None:
            return data
        ahead = self.uids
        if self._plan is not None:
            if uid in self._plan[1]:
                ahead = self._plan[0]
            else:
                self._plan = None  # another command's reads
        with autocommit(self.pool) as conn:
            data = self._readahead.fetch(conn, uid, ahead, self.messages)
            if data is not None:
                return data
            if uid in self.messages:
                # Expunged elsewhere since the last look: the record is retained
                # now (a POP3 session then answers -ERR for it).
                self._pull(conn)
            # Expunged, here or on another node: kept for a while.
            row = conn.execute(
                "SELECT e.head, b.data FROM mail_expunged e, mail_bodies b"
                " WHERE e.mailbox = ? AND e.uid = ? AND b.hash = ?",
                (self.id, uid, msg.body),
            ).fetchone()
        if row is None:
            raise FileNotFoundError(f"the body of UID {uid} is gone")
        head, data = row
        return bytes(head or b"") + bytes(data)

    def heads(self, uids: list[int]) -> dict[int, bytes]:
        """The own first bytes (trace headers) of each of ``uids``, also expunged ones."""
        with autocommit(self.pool) as conn:
            return {
                int(uid): bytes(head or b"")
                for uid, head in conn.execute(
                    "SELECT uid, head FROM mail_messages"
                    " WHERE mailbox = ? AND uid = ANY(?::bigint[])"
                    " UNION ALL SELECT uid, head FROM mail_expunged"
                    " WHERE mailbox = ? AND uid = ANY(?::bigint[])",
                    (self.id, uids, self.id, uids),
                )
            }

    def cached(self, uid: int, item: str) -> bytes | None:
        return self._cache.get((uid, item))

    def remember(self, uid: int, item: str, value: bytes) -> None:
        # Per process and bounded: a miss costs a parse of the body.
        self._cache[(uid, item)] = value
        while len(self._cache) > CACHE_ENTRIES:
            self._cache.popitem(last=False)

    def summaries(self) -> dict[int, bytes]:
        with autocommit(self.pool) as conn:
            return {
                int(uid): bytes(value)
                for uid, value in conn.execute(
                    "SELECT uid, value FROM mail_summaries WHERE mailbox = ?", (self.id,)
                )
            }

    def save_summaries(self, found: dict[int, bytes]) -> None:
        """Keep new summaries (of messages that still exist); rebuildable."""
        if not found:
            return
        with autocommit(self.pool) as conn:
            conn.execute(
                "INSERT INTO mail_summaries (mailbox, uid, value)"
                " SELECT ?, v.uid, v.value FROM unnest(?::bigint[], ?::bytea[]) AS v(uid, value)"
                " WHERE EXISTS"
                " (SELECT 1 FROM mail_messages m WHERE m.mailbox = ? AND m.uid = v.uid)"
                " ON CONFLICT (mailbox, uid) DO UPDATE SET value = EXCLUDED.value",
                (self.id, list(found), list(found.values()), self.id),
            )

    def text_candidates(self, prefilter: Prefilter) -> Container[int] | None:
        """The UIDs that may match a SEARCH's text keys (store/pg_search.py); None: all."""
        found = self.text_index.candidates(self.uids, prefilter)
        if found is not None:
            plan = [uid for uid in self.uids if uid in found]
            self._plan = (plan, set(plan))
        return found

    def keyword_names(self) -> list[str]:
        return self._keywords

    def deleted_uids(self) -> list[int]:
        return [uid for uid in self.uids if "\\Deleted" in self.messages[uid].flags]

    # -- \Recent (RFC 3501 §2.3.2) ------------------------------------------

    def take_new(self) -> list[int]:
        """A read-write SELECT: claim the \\Recent messages (no ``new/`` to empty here)."""
        return self.claim_recent()

    def claim_recent(self) -> list[int]:
        """The messages new since any session last claimed them, \\Recent for
        the caller's session alone (one session each, across nodes)."""
        floor = self._recent_floor()
        if floor < self.uidnext:
            with transaction(self.pool) as conn:
                row = conn.execute(
                    "SELECT recent_floor FROM mail_mailboxes WHERE id = ? FOR UPDATE", (self.id,)
                ).fetchone()
                floor = int(row[0]) if row else self.uidnext
                if floor < self.uidnext:
                    conn.execute(
                        "UPDATE mail_mailboxes SET recent_floor = ? WHERE id = ?",
                        (self.uidnext, self.id),
                    )
        return self.uids[bisect.bisect_left(self.uids, floor) :]

    def recent_uids(self) -> list[int]:
        """The messages the next read-write SELECT would claim (EXAMINE, STATUS)."""
        return self.uids[bisect.bisect_left(self.uids, self._recent_floor()) :]

    def _recent_floor(self) -> int:
        with autocommit(self.pool) as conn:
            row = conn.execute(
                "SELECT recent_floor FROM mail_mailboxes WHERE id = ?", (self.id,)
            ).fetchone()
        return int(row[0]) if row else self.uidnext

    # -- changing ------------------------------------------------------------

    def store(
        self,
        uids: Iterable[int],
        flags: Sequence[str],
        mode: str,
        unchanged_since: int | None = None,
    ) -> list[int]:
        """Add (``+``), remove (``-``) or set (``=``) flags; the UIDs whose flags changed.

        One transaction, under the mailbox row's lock: the flags are computed
        from the committed ones (no lost update between nodes), and
        ``unchanged_since`` (RFC 7162 §3.1.3 UNCHANGEDSINCE) is tested there.
        """
        wanted = list(uids)
        changed: list[tuple[int, str]] = []
        with changes(self.pool) as (conn, announced):
            row = conn.execute(
                "UPDATE mail_mailboxes SET highestmodseq = highestmodseq + 1 WHERE id = ?"
                " RETURNING highestmodseq",
                (self.id,),
            ).fetchone()
            if row is None:
                raise FileNotFoundError(f"mailbox {self.name!r} no longer exists")
            modseq = int(row[0])
            if modseq - 1 != self.highestmodseq:
                self._pull(conn)  # others' changes first, or ours would undo them
                # Up to before ours: the modseq taken is not yet a change
                # (and is given back if nothing changes).
                self.highestmodseq = modseq - 1
            for uid in wanted:
                msg = self.messages.get(uid)
                if msg is None or (unchanged_since is not None and msg.modseq > unchanged_since):
                    continue
                new = flags_after(msg.flags, flags, mode)
                if new is not None:
                    changed.append((uid, " ".join(sorted(new))))
            fresh = [k for k in _keywords_of(flags) if k not in self._keywords]
            if not changed:
                conn.raw.rollback()  # nothing changed: the modseq is not taken
                return []
            if fresh and mode != "-" and len(self._keywords) + len(fresh) > MAX_KEYWORDS:
                raise FlagLimitError()
            conn.execute(
                "UPDATE mail_messages m SET flags = v.flags, modseq = ?"
                " FROM unnest(?::bigint[], ?::text[]) AS v(uid, flags)"
                " WHERE m.mailbox = ? AND m.uid = v.uid",
                (modseq, [u for u, _ in changed], [f for _, f in changed], self.id),
            )
            if fresh and mode != "-":
                conn.execute(
                    "UPDATE mail_mailboxes SET keywords = keywords || ?::text[] WHERE id = ?",
                    (fresh, self.id),
                )
            announced.append(self.id)
        for uid, text in changed:
            msg = self.messages[uid]
            msg.flags = flag_tuple(text)
            msg.modseq = modseq
        if fresh and mode != "-":
            self._keywords = [*self._keywords, *fresh]
        done = [uid for uid, _ in changed]
        self.reporter.flags_changed(self.name, done, flags, mode)
        return done

    def append(self, data: bytes, flags: Sequence[str], internaldate: float | None) -> int:
        """Store a new message (APPEND, COPY); its UID. Committed when this returns."""
        return self._add([self._new(data, flags, internaldate)], flags)[0]

    def _new(self, data: bytes, flags: Iterable[str], internaldate: float | None) -> NewMessage:
        when = internaldate if internaldate is not None else time.time()
        text = " ".join(sorted(set(flags)))
        return NewMessage(text, crlf_size([data]), when, b"", body_hash(data), data)

    def _add(self, new: list[NewMessage], flags: Iterable[str]) -> list[int]:
        keywords = _keywords_of(flags)
        fresh = [k for k in keywords if k not in self._keywords]
        if fresh and len(self._keywords) + len(fresh) > MAX_KEYWORDS:
            raise FlagLimitError()
        with autocommit(self.pool) as conn:
            try:
                first, _ = add_messages(conn, self.id, new, keywords)
            except LookupError:
                raise FileNotFoundError(f"mailbox {self.name!r} no longer exists") from None
            self._pull(conn)
        return list(range(first, first + len(new)))

    def copy_to(self, uids: Iterable[int], dest: Appender) -> list[tuple[int, int]]:
        """Copy messages into ``dest`` keeping flags and dates; (source, new) UID pairs.

        Into another mailbox of the database this copies rows, not bytes:
        the copies share the body (one statement, one transaction).
        """
        # RFC 2180 §4.4.1: a message expunged elsewhere is still copied.
        found = [m for m in (self.messages.get(u) or self.retained.get(u) for u in uids) if m]
        if not found:
            return []
        if isinstance(dest, PgMailbox):
            heads = self.heads([m.uid for m in found])
            found = [m for m in found if m.uid in heads]
            if not found:
                return []
            new = [
                NewMessage(" ".join(m.flags), m.size, m.internaldate, heads[m.uid], m.body)
                for m in found
            ]
            flags = {f for m in found for f in m.flags}
            return list(zip([m.uid for m in found], dest._add(new, flags), strict=True))
        pairs = []
        for msg in found:
            try:
                data = self.read(msg.uid)
            except FileNotFoundError:
                continue
            pairs.append((msg.uid, dest.append(data, msg.flags, msg.internaldate)))
        return pairs

    def expunge(self, uids: Iterable[int]) -> list[int]:
        """Remove messages in one transaction; the UIDs removed.

        Their bodies stay readable for the sessions that may still fetch
        them (RFC 2180 §4.1) and are collected later.
        """
        wanted = [uid for uid in uids if uid in self.messages]
        if not wanted:
            return []
        with changes(self.pool) as (conn, announced):
            try:
                gone, _ = expunge_rows(conn, self.id, wanted)
            except LookupError:
                raise FileNotFoundError(f"mailbox {self.name!r} no longer exists") from None
            if gone:
                announced.append(self.id)
        # Removed here or by another node meanwhile: gone either way.
        self._retain(wanted)
        self.uids = with_changes(self.uids, [], set(wanted))
        self.reporter.expunged(self.name, gone)
        self._collect()
        return gone

    def _collect(self) -> None:
        now = time.monotonic()
        if now - _last_collect[0] >= _COLLECT_EVERY:
            _last_collect[0] = now
            collect_bodies(self.pool)

    def expunged_since(self, modseq: int) -> list[int] | None:
        """UIDs expunged after ``modseq`` (RFC 7162 QRESYNC); None when the
        log no longer reaches back that far."""
        with autocommit(self.pool) as conn:
            row = conn.execute(
                "SELECT expunge_horizon FROM mail_mailboxes WHERE id = ?", (self.id,)
            ).fetchone()
            if row is None or modseq < int(row[0]):
                return None
            return [
                int(uid)
                for (uid,) in conn.execute(
                    "SELECT uid FROM mail_expunged WHERE mailbox = ? AND modseq > ? ORDER BY uid",
                    (self.id, modseq),
                )
            ]
