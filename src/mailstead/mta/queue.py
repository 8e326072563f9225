"""The durable outbound queue: what "250 OK" means for remote recipients.

A queued message is two things: its file ``<data_dir>/queue/msg/<id>`` (the
message exactly as received, CRLF line endings) and its envelope rows in
``<data_dir>/queue.sqlite3``. :meth:`Queue.stage` makes the file durable
(write to ``tmp/``, fsync, link into ``msg/``, fsync ``msg/``) and the
staged message's ``publish`` commits the rows only then, so a committed row
always has its file; :meth:`Queue.enqueue` is both steps. A crash in
between leaves a file without a row; :meth:`Queue.recover` removes those.
:meth:`Queue.delete` goes the other way round: rows, then file.

The schema already carries what outbound delivery needs: per-recipient
state, attempt count, next attempt time (indexed by ``(state,
next_attempt)`` for the scheduler) and the last error for DSNs and
``mailstead queue show``. A message ``held_at`` a time (``mailstead queue
hold``) is skipped by :meth:`Queue.due` and :meth:`Queue.next_due`, so the
outbound never tries it until :meth:`Queue.release`.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import logging
import os
import re
import sqlite3
import threading
import time
from collections.abc import Collection, Sequence
from pathlib import Path

from mailstead.durable import (
    Buffer,
    DirectorySyncer,
    buffer_size,
    fsync_dir,
    make_dirs,
    publish_all,
    unlink_quietly,
    write_all,
)
from mailstead.events import Event, EventSink
from mailstead.mta.envelope import (
    Attempt,
    QueuedMessage,
    QueuedRecipient,
    RecipientState,
    RecipientStatus,
    new_queue_id,
    queued_event,
)
from mailstead.mta.queue_schema import open_queue_database
from mailstead.sqlite_wal import immediate

log = logging.getLogger(__name__)


# 14 hex digits of microseconds since the epoch (sortable until 2540) and
# 40 random bits: unique without coordination between processes.
_ID_RE = re.compile(r"\A[0-9A-F]{24}\Z")
_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
_ID_ATTEMPTS = 5
# RFC 3461 §4.3: RET=FULL or RET=HDRS.
_RET_VALUES = ("FULL", "HDRS")

_MESSAGE_COLUMNS = "id, sender, received_at, size, envid, ret, path, held_at"

# Row shapes as selected below; the schema's NOT NULL and CHECK constraints
# guarantee these types.
_MessageRow = tuple[str, str, float, int, str | None, str | None, str, float | None]
_RecipientRow = tuple[str, str | None, str | None, RecipientState, int, float, str | None, int]


def _encode_notify(notify: tuple[str, ...] | None) -> str | None:
    return None if notify is None else ",".join(notify)


def _decode_notify(notify: str | None) -> tuple[str, ...] | None:
    if notify is None:
        return None
    return tuple(notify.split(",")) if notify else ()


class Queue:
    """Owns ``<data_dir>/queue/`` (message files) and ``<data_dir>/queue.sqlite3``.

    Safe to share between threads: file writes run in parallel, SQLite
    access is serialised on one connection. Several processes (the server
    and the CLI) may open the same queue; SQLite arbitrates between them.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        orphan_grace: float = 900.0,
        events: EventSink | None = None,
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
        make_dirs(self.msg_dir, self.tmp_dir, mode=0o700)
        self._msg_sync = DirectorySyncer(self.msg_dir)
        self._lock = threading.Lock()
        self._conn = self._connect()
        self.recover()

    def _connect(self) -> sqlite3.Connection:
        is_new = not self.db_path.exists()
        conn = open_queue_database(self.db_path)
        if is_new:
            fsync_dir(self.data_dir)  # the database file's own name
        return conn

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Queue:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _transaction(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return immediate(self._conn, self._lock)

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
        returns, the file and the envelope are both on disk. A recipient
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
        """Write the message file durably; its rows go in when the result is published.

        Until then the file is an orphan nobody delivers (recover() removes
        one left by a crash).
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
        queue_id, msg_path = self._write_file(parts, queue_id)
        message = (queue_id, sender, received_at, size, envid, ret, f"msg/{queue_id}")
        rows = [
            (queue_id, r.address, _encode_notify(r.notify), r.orcpt, received_at)
            for r in unique.values()
        ]
        events = []
        if self.events is not None and self.events.wants("message.queued"):
            events.append(queued_event(queue_id, sender, list(unique), size, received_at))
        return StagedQueueMessage(self, queue_id, msg_path, message, rows, events)

    def _insert(
        self,
        message: tuple[object, ...],
        rows: Sequence[tuple[object, ...]],
        events: Sequence[Event],
    ) -> None:
        stored = False
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO messages (id, sender, received_at, size, envid, ret, path)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                message,
            )
            conn.executemany(
                "INSERT INTO recipients (message_id, address, notify, orcpt, state,"
                " attempts, next_attempt) VALUES (?, ?, ?, ?, 'pending', 0, ?)",
                rows,
            )
            stored = self._emit_in(conn, events)
        if stored:
            self._committed()

    def _write_file(self, parts: Sequence[Buffer], wanted: str | None) -> tuple[str, str]:
        """Write ``parts`` durably to ``msg/<id>``; return the id and path.

        ``wanted`` is the id the caller already named the message by (in its
        Received header); only a clash with a file of that name picks another.
        """
        for _ in range(_ID_ATTEMPTS):
            queue_id, wanted = wanted or new_queue_id(), None
            tmp_path = os.path.join(self.tmp_dir, queue_id)
            try:
                fd = os.open(tmp_path, _OPEN_FLAGS, 0o600)
            except FileExistsError:
                continue
            break
        else:
            raise FileExistsError(errno.EEXIST, "no free queue id", str(self.tmp_dir))
        msg_path = os.path.join(self.msg_dir, queue_id)
        linked = False
        try:
            try:
                write_all(fd, parts)
                os.fsync(fd)
            finally:
                os.close(fd)
            # link(2), unlike rename(2), refuses to replace another message.
            os.link(tmp_path, msg_path)
            linked = True
            os.unlink(tmp_path)  # tmp/ leftovers after a crash are swept by recover()
            self._msg_sync.sync()
        except BaseException:
            if linked:
                unlink_quietly(msg_path)
            unlink_quietly(tmp_path)
            raise
        return queue_id, msg_path

    # -- inspection and removal ----------------------------------------------

    def list(self) -> builtins.list[QueuedMessage]:
        """Every queued message, oldest first."""
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages ORDER BY received_at, id"
            ).fetchall()
            rcpts = self._conn.execute(
                "SELECT message_id, address, notify, orcpt, state, attempts,"
                " next_attempt, last_error, delay_warned FROM recipients"
                " ORDER BY message_id, address"
            ).fetchall()
        by_id: dict[str, builtins.list[RecipientStatus]] = {}
        for r in rcpts:
            by_id.setdefault(r[0], []).append(self._recipient(r[1:]))
        return [self._message(row, by_id.get(row[0], [])) for row in rows]

    def get(self, queue_id: str) -> QueuedMessage | None:
        """The message ``queue_id``, or None if it is not queued."""
        if not _ID_RE.match(queue_id):
            return None
        with self._lock:
            row = self._conn.execute(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE id = ?",
                (queue_id,),
            ).fetchone()
            if row is None:
                return None
            rcpts = self._conn.execute(
                "SELECT address, notify, orcpt, state, attempts, next_attempt, last_error,"
                " delay_warned FROM recipients WHERE message_id = ? ORDER BY address",
                (queue_id,),
            ).fetchall()
        return self._message(row, [self._recipient(r) for r in rcpts])

    def open_message(self, queue_id: str) -> bytes:
        """The content of message ``queue_id`` as received; KeyError if not queued."""
        msg = self.get(queue_id)
        if msg is None:
            raise KeyError(queue_id)
        return msg.path.read_bytes()

    def delete(self, queue_id: str) -> None:
        """Remove message ``queue_id`` (rows, then file); KeyError if not queued."""
        if not _ID_RE.match(queue_id):
            raise KeyError(queue_id)
        with self._transaction() as conn:
            row = conn.execute("SELECT path FROM messages WHERE id = ?", (queue_id,)).fetchone()
            if row is None:
                raise KeyError(queue_id)
            conn.execute("DELETE FROM recipients WHERE message_id = ?", (queue_id,))
            conn.execute("DELETE FROM messages WHERE id = ?", (queue_id,))
        # No directory fsync: if the unlink is lost in a crash, the file is an
        # orphan and recover() removes it.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.queue_dir / row[0])

    # -- delivery side ---------------------------------------------------------

    def due(
        self, now: float, limit: int = 100, *, skip: Collection[str] = ()
    ) -> builtins.list[QueuedMessage]:
        """Messages with a pending or deferred recipient whose time has come, oldest first.

        ``skip`` names messages the caller is busy with; they do not count
        against ``limit``. Two queries, whatever the number of messages.
        """
        with self._lock:
            ids = [
                row[0]
                for row in self._conn.execute(
                    # A held message is never tried until released.
                    "SELECT DISTINCT r.message_id FROM recipients r"
                    " JOIN messages m ON m.id = r.message_id"
                    " WHERE r.state IN ('pending', 'deferred') AND r.next_attempt <= ?"
                    " AND m.held_at IS NULL"
                    " ORDER BY r.message_id LIMIT ?",
                    (now, limit + len(skip)),
                )
                if row[0] not in skip
            ][:limit]
            if not ids:
                return []
            marks = ",".join("?" * len(ids))
            rows = self._conn.execute(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE id IN ({marks}) ORDER BY id",
                ids,
            ).fetchall()
            rcpts = self._conn.execute(
                "SELECT message_id, address, notify, orcpt, state, attempts,"
                " next_attempt, last_error, delay_warned FROM recipients"
                f" WHERE message_id IN ({marks}) ORDER BY message_id, address",
                ids,
            ).fetchall()
        by_id: dict[str, builtins.list[RecipientStatus]] = {}
        for r in rcpts:
            by_id.setdefault(r[0], []).append(self._recipient(r[1:]))
        return [self._message(row, by_id.get(row[0], [])) for row in rows]

    def next_due(self) -> float | None:
        """When the earliest open recipient may be tried, or None if there is none."""
        with self._lock:
            row = self._conn.execute(
                "SELECT MIN(r.next_attempt) FROM recipients r"
                " JOIN messages m ON m.id = r.message_id"
                " WHERE r.state IN ('pending', 'deferred') AND m.held_at IS NULL"
            ).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def record(self, queue_id: str, attempts: Sequence[Attempt]) -> bool:
        """Store one attempt's outcomes; True if that left nothing open (see record_many)."""
        return queue_id in self.record_many([(queue_id, attempts)])

    def _emit_in(self, conn: sqlite3.Connection, events: Sequence[Event]) -> bool:
        return bool(events) and self.events is not None and self.events.emit_in(conn, events)

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
        with self._transaction() as conn:
            conn.executemany(
                "UPDATE recipients SET state = ?, attempts = attempts + 1,"
                " next_attempt = COALESCE(?, next_attempt),"
                " last_error = COALESCE(?, last_error)"
                " WHERE message_id = ? AND address = ?",
                rows,
            )
            for queue_id in {q for q, _ in outcomes}:
                still_open = conn.execute(
                    "SELECT 1 FROM recipients WHERE message_id = ?"
                    " AND state IN ('pending', 'deferred') LIMIT 1",
                    (queue_id,),
                ).fetchone()
                if still_open is not None:
                    continue
                row = conn.execute("SELECT path FROM messages WHERE id = ?", (queue_id,)).fetchone()
                if row is not None:
                    finished[queue_id] = row[0]
                    conn.execute("DELETE FROM recipients WHERE message_id = ?", (queue_id,))
                    conn.execute("DELETE FROM messages WHERE id = ?", (queue_id,))
            stored = self._emit_in(conn, events)
        if stored:
            self._committed()
        for path in finished.values():
            # As in delete(): a lost unlink leaves an orphan that recover() removes.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.queue_dir / path)
        return set(finished)

    def mark_delay_warned(self, queue_id: str, addresses: Sequence[str]) -> None:
        with self._transaction() as conn:
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
        with self._transaction() as conn:
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
        with self._transaction() as conn:
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
        """
        now = time.time()
        # Files first, rows second: a file whose row commits in between is
        # then seen with its row, never as an orphan.
        candidates = [(self.msg_dir, n) for n in os.listdir(self.msg_dir)]
        candidates += [(self.tmp_dir, n) for n in os.listdir(self.tmp_dir)]
        with self._lock:
            ids = {r[0] for r in self._conn.execute("SELECT id FROM messages")}
        removed = 0
        for directory, name in candidates:
            if directory == self.msg_dir and name in ids:
                continue
            path = directory / name
            try:
                if now - path.lstat().st_mtime < self.orphan_grace:
                    continue
                path.unlink()
            except FileNotFoundError:
                continue
            removed += 1
            log.info("queue: removed orphan file %s", path)
        missing = [i for i in ids if not (self.msg_dir / i).exists()]
        if missing:
            log.error("queue: %d message(s) have no file: %s", len(missing), ", ".join(missing))
        return removed

    @staticmethod
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

    def _message(self, row: _MessageRow, rcpts: Sequence[RecipientStatus]) -> QueuedMessage:
        queue_id, sender, received_at, size, envid, ret, path, held_at = row
        return QueuedMessage(
            queue_id,
            sender,
            received_at,
            size,
            envid,
            ret,
            self.queue_dir / path,
            tuple(rcpts),
            held_at,
        )


class StagedQueueMessage:
    """A queue file on disk whose rows are not yet in the database.

    :meth:`publish` inserts the rows (the message is then queued); without
    it, :meth:`close` removes the file.
    """

    def __init__(
        self,
        queue: Queue,
        queue_id: str,
        msg_path: str,
        message: tuple[object, ...],
        rows: Sequence[tuple[object, ...]],
        events: Sequence[Event],
    ) -> None:
        self.queue_id = queue_id
        self._events = events
        self._queue = queue
        self._msg_path = msg_path
        self._message = message
        self._rows = rows
        self._keep_file = False

    def publish(self) -> None:
        try:
            self._queue._insert(self._message, self._rows, self._events)
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
        if not self._keep_file:
            unlink_quietly(self._msg_path)
