"""The durable outbound queue: what "250 OK" means for remote recipients.

A queued message is its content and its envelope rows. :meth:`Queue.stage`
makes the content durable and the staged message's ``publish`` commits the
rows only then, so a committed row always has its content;
:meth:`Queue.enqueue` is both steps. Where each lives depends on the
engine (:mod:`mailstead.mta.queue_db`):

* SQLite (the default, one node): the content is the file
  ``<data_dir>/queue/msg/<id>``, written and fsynced at ``stage``; the rows
  are in ``<data_dir>/queue.sqlite3``. A crash in between leaves a file
  without rows; :meth:`Queue.recover` removes those
  (:mod:`mailstead.mta.queue_bodies`).
* PostgreSQL (several nodes, one database): the content is a bytea row
  inserted with the envelope in the publishing transaction, whose commit
  is the publish. Nodes share the queue: :meth:`Queue.due` *claims* what it
  returns for a lease (``FOR UPDATE SKIP LOCKED``), so each message is
  delivered by one node, and a dead node's claims run out for another to
  take (:meth:`Queue.release_leases` hands them back at shutdown).

The schema already carries what outbound delivery needs: per-recipient
state, attempt count, next attempt time (indexed by ``(state,
next_attempt)`` for the scheduler) and the last error for DSNs and
``mailstead queue show``. A message ``held_at`` a time (``mailstead queue
hold``) is skipped by :meth:`Queue.due` and :meth:`Queue.next_due`, so the
outbound never tries it until :meth:`Queue.release`.
"""

from __future__ import annotations

import builtins
import re
import sqlite3
from collections.abc import Collection, Sequence
from pathlib import Path

from mailstead.config import Config
from mailstead.durable import Buffer, buffer_size, publish_all
from mailstead.events import Event, EventSink
from mailstead.limits import QueueLimits
from mailstead.mta.envelope import (
    Attempt,
    QueuedMessage,
    QueuedRecipient,
    queued_event,
)
from mailstead.mta.queue_bodies import MessageBodies, MessageFiles, MessageRows
from mailstead.mta.queue_claims import OPEN, Claims
from mailstead.mta.queue_db import (
    PostgresDatabase,
    QueueDatabase,
    SQLConnection,
    SQLiteDatabase,
    holder_name,
    node_name,
)
from mailstead.mta.queue_rows import (
    MESSAGE_COLUMNS,
    RECIPIENT_COLUMNS,
    encode_notify,
    queued_messages,
)
from mailstead.mta.queue_schema import POSTGRES_MIGRATIONS, open_queue_database
from mailstead.pgsql.connect import shared_pool

__all__ = ["Queue", "StagedQueueMessage", "open_queue"]


# 14 hex digits of microseconds since the epoch (sortable until 2540) and
# 40 random bits: unique without coordination between processes.
_ID_RE = re.compile(r"\A[0-9A-F]{24}\Z")
# RFC 3461 §4.3: RET=FULL or RET=HDRS.
_RET_VALUES = ("FULL", "HDRS")


def open_queue(config: Config, *, events: EventSink | None = None) -> Queue:
    """The outbound queue of ``config``: under data_dir, or the cluster's ([storage] backend)."""
    if config.storage.backend == "postgresql":
        database = PostgresDatabase(shared_pool(config.storage.dsn), "queue", POSTGRES_MIGRATIONS)
        return Queue(
            config.data_dir,
            events=events,
            database=database,
            node=node_name(config.data_dir),
            lease=config.limits.queue_lease,
        )
    return Queue(config.data_dir, events=events)


class Queue:
    """Owns the queued messages: their content and their envelope rows.

    By default ``<data_dir>/queue/`` (message files) and
    ``<data_dir>/queue.sqlite3``; given a :class:`PostgresDatabase`, the
    cluster database's queue tables, shared with other nodes (``node``
    names this one in the claims; ``lease`` is how long one lasts).

    Safe to share between threads: file writes run in parallel, database
    access goes through the database's transactions. Several processes (the
    server and the CLI), and with PostgreSQL several nodes, may open the
    same queue.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        orphan_grace: float = 900.0,
        events: EventSink | None = None,
        database: QueueDatabase | None = None,
        node: str = "local",
        lease: float = QueueLimits().lease,
    ) -> None:
        self.data_dir = Path(data_dir)
        # message.queued and the delivery outcomes are stored with the queue
        # change they report, in the same transaction (EventSink.emit_in).
        self.events = events
        self.queue_dir = self.data_dir / "queue"
        self.msg_dir = self.queue_dir / "msg"
        self.tmp_dir = self.queue_dir / "tmp"
        self.db_path = self.data_dir / "queue.sqlite3"
        # recover() leaves younger orphans alone: they may belong to an
        # enqueue in flight in another process (file written, row not yet
        # committed), which takes seconds at worst.
        self.orphan_grace = orphan_grace
        #: True when due() claims what it returns (nodes share this queue), so
        #: the engine needs no share of its own (Outbound.shard).
        self.claims = database is not None and database.engine == "postgresql"
        self._node = node
        self._claims = Claims(holder_name(node), lease)
        self._bodies: MessageBodies
        if database is None:
            self._bodies = MessageFiles(self.queue_dir)
            database = SQLiteDatabase(self.db_path, "queue", open_queue_database)
        else:
            self._bodies = MessageRows() if self.claims else MessageFiles(self.queue_dir)
        self._db = database
        self.recover()

    def close(self) -> None:
        """Hand back the claims of this queue, then close the database connection."""
        try:
            self.release_leases()
        finally:
            self._db.close()

    def __enter__(self) -> Queue:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- accept side ---------------------------------------------------------

    def enqueue(
        self,
        sender: str,
        recipients: Sequence[QueuedRecipient],
        parts: Sequence[Buffer],
        *,
        envid: str | None = None,
        ret: str | None = None,
        received_at: float,
        queue_id: str | None = None,
    ) -> str:
        """Queue one message durably for ``recipients``; return its queue id.

        ``parts`` is the message as received (CRLF line endings). When this
        returns, the content and the envelope are both durable. A recipient
        given twice is queued once (the first one's DSN parameters win).
        """
        staged = self.stage(
            sender,
            recipients,
            parts,
            envid=envid,
            ret=ret,
            received_at=received_at,
            queue_id=queue_id,
        )
        publish_all([staged])
        return staged.queue_id

    def stage(
        self,
        sender: str,
        recipients: Sequence[QueuedRecipient],
        parts: Sequence[Buffer],
        *,
        envid: str | None = None,
        ret: str | None = None,
        received_at: float,
        queue_id: str | None = None,
    ) -> StagedQueueMessage:
        """Make the content durable (a file) or ready (rows); the envelope goes in at publish.

        Until then nobody delivers it (recover() removes a file left by a crash).
        """
        if not recipients:
            raise ValueError("a queued message needs at least one recipient")
        if ret is not None and ret not in _RET_VALUES:
            raise ValueError(f"RET must be FULL or HDRS, not {ret!r}")
        unique: dict[str, QueuedRecipient] = {}
        for r in recipients:
            unique.setdefault(r.address, r)
        if queue_id is not None and not _ID_RE.match(queue_id):
            raise ValueError(f"bad queue id {queue_id!r}")
        size = buffer_size(parts)
        queue_id, content = self._bodies.stage(parts, queue_id)
        message = (queue_id, sender, received_at, size, envid, ret, f"msg/{queue_id}")
        rows = [
            (queue_id, r.address, encode_notify(r.notify), r.orcpt, received_at)
            for r in unique.values()
        ]
        events = []
        if self.events is not None and self.events.wants("message.queued"):
            events.append(queued_event(queue_id, sender, list(unique), size, received_at))
        return StagedQueueMessage(self, queue_id, content, message, rows, events)

    def _insert(
        self,
        message: tuple[object, ...],
        content: bytes | None,
        rows: Sequence[tuple[object, ...]],
        events: Sequence[Event],
    ) -> None:
        stored = False
        # The publish of a delivery, before its 250: one round trip on PostgreSQL.
        with self._db.transaction(pipelined=True) as conn:
            conn.execute(
                "INSERT INTO messages (id, sender, received_at, size, envid, ret, path)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                message,
            )
            self._bodies.insert_in(conn, str(message[0]), content)
            conn.executemany(
                "INSERT INTO recipients (message_id, address, notify, orcpt, state,"
                " attempts, next_attempt) VALUES (?, ?, ?, ?, 'pending', 0, ?)",
                rows,
            )
            stored = self._emit_in(conn, events)
        if stored:
            self._committed()

    # -- inspection and removal ----------------------------------------------

    def list(self) -> builtins.list[QueuedMessage]:
        """Every queued message, oldest first."""
        with self._db.reading() as conn:
            rows = conn.execute(
                f"SELECT {MESSAGE_COLUMNS} FROM messages ORDER BY received_at, id"
            ).fetchall()
            rcpts = conn.execute(
                f"SELECT {RECIPIENT_COLUMNS} FROM recipients ORDER BY message_id, address"
            ).fetchall()
        return self._messages(rows, rcpts)

    def get(self, queue_id: str) -> QueuedMessage | None:
        """The message ``queue_id``, or None if it is not queued."""
        if not _ID_RE.match(queue_id):
            return None
        with self._db.reading() as conn:
            row = conn.execute(
                f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = ?",
                (queue_id,),
            ).fetchone()
            if row is None:
                return None
            rcpts = conn.execute(
                f"SELECT {RECIPIENT_COLUMNS} FROM recipients WHERE message_id = ? ORDER BY address",
                (queue_id,),
            ).fetchall()
        return self._messages([row], rcpts)[0]

    def open_message(self, queue_id: str) -> bytes:
        """The content of message ``queue_id`` as received; KeyError if not queued."""
        content = self._bodies.read(self._db, queue_id) if _ID_RE.match(queue_id) else None
        if content is None:
            raise KeyError(queue_id)
        return content

    def delete(self, queue_id: str) -> None:
        """Remove message ``queue_id`` (rows, then file); KeyError if not queued."""
        if not _ID_RE.match(queue_id):
            raise KeyError(queue_id)
        with self._db.transaction() as conn:
            row = conn.execute("SELECT path FROM messages WHERE id = ?", (queue_id,)).fetchone()
            if row is None:
                raise KeyError(queue_id)
            conn.execute("DELETE FROM recipients WHERE message_id = ?", (queue_id,))
            conn.execute("DELETE FROM messages WHERE id = ?", (queue_id,))
        self._bodies.removed([str(row[0])])

    # -- delivery side ---------------------------------------------------------

    def due(
        self, now: float, limit: int = 100, *, skip: Collection[str] = ()
    ) -> builtins.list[QueuedMessage]:
        """Messages with a pending or deferred recipient whose time has come, oldest first.

        ``skip`` names messages the caller is busy with; they do not count
        against ``limit``. Three queries, whatever the number of messages.

        When nodes share the queue (:attr:`claims`), the messages returned
        are claimed for this queue until ``now`` + the lease; those in
        ``skip`` keep their claims for as long again, and any other claim
        of this queue is handed back (the caller is done with it; see
        :mod:`mailstead.mta.queue_claims`). The caller calls this at least
        every few seconds while it delivers.
        """
        if self.claims:
            with self._db.transaction() as conn:
                ids = self._claims.take(conn, now, limit, skip)
                return self._load(conn, ids)
        with self._db.reading() as conn:
            ids = [
                row[0]
                for row in conn.execute(
                    # A held message is never tried until released.
                    "SELECT DISTINCT r.message_id FROM recipients r"
                    " JOIN messages m ON m.id = r.message_id"
                    f" WHERE r.{OPEN} AND r.next_attempt <= ?"
                    " AND m.held_at IS NULL"
                    " ORDER BY r.message_id LIMIT ?",
                    (now, limit + len(skip)),
                )
                if row[0] not in skip
            ][:limit]
            return self._load(conn, ids)

    def release_leases(self) -> int:
        """Hand back every claim of this queue (a node stopping); how many.

        Another node takes those messages at its next look instead of after
        the lease. Nothing to do on SQLite, where nothing is claimed.
        """
        if not self._claims.used:
            return 0
        with self._db.transaction() as conn:
            return self._claims.release(conn)

    def release_node_claims(self) -> int:
        """Hand back the claims of every queue of this node (``serve`` starting,
        before any worker runs); how many.

        A node killed mid-delivery leaves its claims set; without this it
        would wait out its own lease after a restart. Nothing to do on SQLite.
        """
        if not self.claims:
            return 0
        with self._db.transaction() as conn:
            return Claims.release_node(conn, self._node)

    def _load(self, conn: SQLConnection, ids: Sequence[str]) -> builtins.list[QueuedMessage]:
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        rows = conn.execute(
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE id IN ({marks}) ORDER BY id",
            ids,
        ).fetchall()
        rcpts = conn.execute(
            f"SELECT {RECIPIENT_COLUMNS} FROM recipients"
            f" WHERE message_id IN ({marks}) ORDER BY message_id, address",
            ids,
        ).fetchall()
        return self._messages(rows, rcpts)

    def next_due(self) -> float | None:
        """When the earliest open recipient may be tried, or None if there is none."""
        with self._db.reading() as conn:
            row = conn.execute(
                "SELECT MIN(r.next_attempt) FROM recipients r"
                " JOIN messages m ON m.id = r.message_id"
                f" WHERE r.{OPEN} AND m.held_at IS NULL"
            ).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def record(self, queue_id: str, attempts: Sequence[Attempt]) -> bool:
        """Store one attempt's outcomes; True if that left nothing open (see record_many)."""
        return queue_id in self.record_many([(queue_id, attempts)])

    def _emit_in(self, conn: SQLConnection, events: Sequence[Event]) -> bool:
        if not events or self.events is None:
            return False
        # EventSink.emit_in names SQLite's connection; the outbox takes
        # either engine's (webhooks.outbox.Outbox.emit_in).
        return self.events.emit_in(conn, events)

    def _committed(self) -> None:
        if self.events is not None:
            self.events.committed()

    def record_many(
        self,
        outcomes: Sequence[tuple[str, Sequence[Attempt]]],
        events: Sequence[Event] = (),
    ) -> set[str]:
        """Store the outcome of an attempt for each recipient named, in ONE commit.

        Called right after the remote servers answered, so that a crash
        afterwards causes at most those recipients' duplicates; many
        deliveries finishing together share the commit (group commit). A
        message with no recipient left open is removed in the same
        transaction; the ids of those are returned. ``events`` (what the
        outcomes mean to a webhook) commit in the same transaction.
        """
        rows = []
        for queue_id, attempts in outcomes:
            for a in attempts:
                if a.state == "deferred" and a.next_attempt is None:
                    raise ValueError("a deferral needs a next attempt time")
                rows.append((a.state, a.next_attempt, a.error, queue_id, a.address))
        finished: dict[str, str] = {}
        with self._db.transaction() as conn:
            conn.executemany(
                "UPDATE recipients SET state = ?, attempts = attempts + 1,"
                " next_attempt = COALESCE(?, next_attempt),"
                " last_error = COALESCE(?, last_error)"
                " WHERE message_id = ? AND address = ?",
                rows,
            )
            for queue_id in {q for q, _ in outcomes}:
                still_open = conn.execute(
                    f"SELECT 1 FROM recipients WHERE message_id = ? AND {OPEN} LIMIT 1",
                    (queue_id,),
                ).fetchone()
                if still_open is not None:
                    continue
                row = conn.execute("SELECT path FROM messages WHERE id = ?", (queue_id,)).fetchone()
                if row is not None:
                    finished[queue_id] = str(row[0])
                    conn.execute("DELETE FROM recipients WHERE message_id = ?", (queue_id,))
                    conn.execute("DELETE FROM messages WHERE id = ?", (queue_id,))
            stored = self._emit_in(conn, events)
        if stored:
            self._committed()
        # As in delete(): a lost unlink leaves an orphan that recover() removes.
        self._bodies.removed(builtins.list(finished.values()))
        return set(finished)

    def mark_delay_warned(self, queue_id: str, addresses: Sequence[str]) -> None:
        with self._db.transaction() as conn:
            conn.executemany(
                "UPDATE recipients SET delay_warned = 1 WHERE message_id = ? AND address = ?",
                [(queue_id, a) for a in addresses],
            )

    def flush(self, now: float, ids: Collection[str] | None = None) -> int:
        """Make deferred recipients due now (``mailstead queue flush``); how many.

        ``ids`` limits it to those messages (None: every message). Held
        messages are left alone: they wait for ``release``.
        """
        held = "SELECT id FROM messages WHERE held_at IS NOT NULL"
        with self._db.transaction() as conn:
            if ids is None:
                return conn.execute(
                    "UPDATE recipients SET next_attempt = ? WHERE state = 'deferred'"
                    f" AND next_attempt > ? AND message_id NOT IN ({held})",
                    (now, now),
                ).rowcount
            made_due = 0
            for queue_id in ids:
                made_due += conn.execute(
                    "UPDATE recipients SET next_attempt = ? WHERE state = 'deferred'"
                    f" AND next_attempt > ? AND message_id = ? AND message_id NOT IN ({held})",
                    (now, now, queue_id),
                ).rowcount
            return made_due

    def hold(self, ids: Collection[str], now: float) -> builtins.list[str]:
        """Hold the messages ``ids``: the outbound never tries them until released.

        Returns the ids that were queued and not yet held. A delivery already
        in flight finishes; its outcome is recorded as usual.
        """
        return self._set_held(ids, now, "held_at IS NULL")

    def release(self, ids: Collection[str]) -> builtins.list[str]:
        """Release held messages ``ids``; they are tried at their next attempt time.

        Returns the ids that were held.
        """
        return self._set_held(ids, None, "held_at IS NOT NULL")

    def _set_held(
        self, ids: Collection[str], held_at: float | None, condition: str
    ) -> builtins.list[str]:
        changed = []
        with self._db.transaction() as conn:
            for queue_id in ids:
                cursor = conn.execute(
                    f"UPDATE messages SET held_at = ? WHERE id = ? AND {condition}",
                    (held_at, queue_id),
                )
                if cursor.rowcount:
                    changed.append(queue_id)
        return changed

    def recover(self) -> int:
        """Remove message files that have no envelope row; return how many.

        Such files come from a crash between writing the file and committing
        its rows (the sender got no 250, so nothing is lost). Files younger
        than ``orphan_grace`` are left alone. Rows are never touched here.
        With PostgreSQL there is nothing to recover: content and rows
        commit together.
        """
        return self._bodies.recover(self._ids, self.orphan_grace)

    def _ids(self) -> builtins.list[str]:
        with self._db.reading() as conn:
            return [str(r[0]) for r in conn.execute("SELECT id FROM messages")]

    def _messages(
        self, rows: Sequence[Sequence[object]], rcpts: Sequence[Sequence[object]]
    ) -> builtins.list[QueuedMessage]:
        return queued_messages(rows, rcpts, self.queue_dir)


class StagedQueueMessage:
    """A message whose content is staged and whose rows are not yet in the database.

    :meth:`publish` inserts the rows (with PostgreSQL the content too, in
    the same commit): the message is then queued. Without it, :meth:`close`
    removes the staged file.
    """

    def __init__(
        self,
        queue: Queue,
        queue_id: str,
        content: bytes | None,
        message: tuple[object, ...],
        rows: Sequence[tuple[object, ...]],
        events: Sequence[Event],
    ) -> None:
        self.queue_id = queue_id
        self._events = events
        self._queue = queue
        self._content = content
        self._message = message
        self._rows = rows
        self._keep_file = False

    def publish(self) -> None:
        try:
            self._queue._insert(self._message, self._content, self._rows, self._events)
        except sqlite3.OperationalError:
            # A failed COMMIT may still have reached the disk (an I/O error
            # after the WAL write); then the file must stay. If it did not,
            # recover() removes the orphan later.
            self._keep_file = True
            raise
        self._keep_file = True

    def undo(self) -> None:
        self._queue.delete(self.queue_id)

    def close(self) -> None:
        self._content = None
        if not self._keep_file:
            self._queue._bodies.discard(self.queue_id)
