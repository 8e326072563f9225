"""Where the content of queued mail is kept: files under data_dir, or rows in the database.

With SQLite (one node) a queued message's content is the file
``<data_dir>/queue/msg/<id>``, made durable before its envelope rows commit
(:class:`MessageFiles`): write to ``tmp/``, fsync, link into ``msg/``,
fsync ``msg/``. A crash in between leaves a file without rows, which
:meth:`MessageFiles.recover` removes. With PostgreSQL nodes share no disk:
the content is a ``bytea`` row inserted in the same transaction as the
envelope (:class:`MessageRows`), so "committed" covers both at once.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import time
from collections.abc import Callable, Collection, Sequence
from pathlib import Path

from mailstead.durable import Buffer, DirectorySyncer, make_dirs, unlink_quietly, write_all
from mailstead.mta.envelope import new_queue_id
from mailstead.mta.queue_db import QueueDatabase, SQLConnection

__all__ = ["MessageBodies", "MessageFiles", "MessageRows"]

log = logging.getLogger("mailstead.mta.queue")

_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
_ID_ATTEMPTS = 5


class MessageBodies:
    """The content side of the queue; :class:`MessageFiles` or :class:`MessageRows`.

    ``stage`` does the slow part before the transaction (the file write);
    ``insert_in`` adds what must commit with the envelope; ``discard``
    removes a staged body that was never published; ``removed`` follows the
    commit that deleted envelopes.
    """

    def stage(self, parts: Sequence[Buffer], wanted: str | None) -> tuple[str, bytes | None]:
        """A queue id and, for rows, the content to insert (None: it is in a file)."""
        raise NotImplementedError

    def insert_in(self, conn: SQLConnection, queue_id: str, content: bytes | None) -> None:
        raise NotImplementedError

    def read(self, db: QueueDatabase, queue_id: str) -> bytes | None:
        """The content of message ``queue_id``, or None if it is not queued."""
        raise NotImplementedError

    def discard(self, queue_id: str) -> None:
        raise NotImplementedError

    def removed(self, paths: Collection[str]) -> None:
        raise NotImplementedError

    def recover(self, read_known: Callable[[], Collection[str]], grace: float) -> int:
        """Remove what a crash left without an envelope; how many (``read_known``: queued ids)."""
        raise NotImplementedError


class MessageFiles(MessageBodies):
    """Owns ``<data_dir>/queue/msg`` and ``<data_dir>/queue/tmp``: one file per queued message."""

    def __init__(self, queue_dir: Path) -> None:
        self.queue_dir = queue_dir
        self.msg_dir = queue_dir / "msg"
        self.tmp_dir = queue_dir / "tmp"
        make_dirs(self.msg_dir, self.tmp_dir, mode=0o700)
        self._msg_sync = DirectorySyncer(self.msg_dir)

    def stage(self, parts: Sequence[Buffer], wanted: str | None) -> tuple[str, bytes | None]:
        queue_id, _ = self.write(parts, wanted)
        return queue_id, None

    def insert_in(self, conn: SQLConnection, queue_id: str, content: bytes | None) -> None:
        """Nothing: the file is durable already."""

    def read(self, db: QueueDatabase, queue_id: str) -> bytes | None:
        with db.reading() as conn:
            row = conn.execute("SELECT path FROM messages WHERE id = ?", (queue_id,)).fetchone()
        # Outside the database's lock; a file that vanished meanwhile (the
        # message left the queue) raises FileNotFoundError.
        return None if row is None else (self.queue_dir / str(row[0])).read_bytes()

    def discard(self, queue_id: str) -> None:
        unlink_quietly(str(self.msg_dir / queue_id))

    def removed(self, paths: Collection[str]) -> None:
        # No directory fsync: if the unlink is lost in a crash, the file is an
        # orphan and recover() removes it.
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.queue_dir / path)

    def write(self, parts: Sequence[Buffer], wanted: str | None) -> tuple[str, str]:
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

    def recover(self, read_known: Callable[[], Collection[str]], grace: float) -> int:
        """Remove files older than ``grace`` seconds that have no envelope row.

        Such files come from a crash between writing the file and committing
        its rows (the sender got no 250, so nothing is lost); younger ones
        may belong to an enqueue in flight in another process.
        """
        now = time.time()
        # Files first, rows second: a file whose row commits in between is
        # then seen with its row, never as an orphan.
        listing = [(self.msg_dir, n) for n in os.listdir(self.msg_dir)]
        listing += [(self.tmp_dir, n) for n in os.listdir(self.tmp_dir)]
        known = set(read_known())
        removed = 0
        for directory, name in listing:
            if directory == self.msg_dir and name in known:
                continue
            path = directory / name
            try:
                if now - path.lstat().st_mtime < grace:
                    continue
                path.unlink()
            except FileNotFoundError:
                continue
            removed += 1
            log.info("queue: removed orphan file %s", path)
        missing = [i for i in known if not (self.msg_dir / i).exists()]
        if missing:
            log.error("queue: %d message(s) have no file: %s", len(missing), ", ".join(missing))
        return removed


class MessageRows(MessageBodies):
    """The content of each queued message as a ``bytea`` row beside its envelope (PostgreSQL).

    The row goes in with the envelope, in one transaction, and leaves with
    it (``ON DELETE CASCADE``): there is no orphan to recover.
    """

    def stage(self, parts: Sequence[Buffer], wanted: str | None) -> tuple[str, bytes | None]:
        return wanted or new_queue_id(), b"".join(parts)

    def insert_in(self, conn: SQLConnection, queue_id: str, content: bytes | None) -> None:
        conn.execute(
            "INSERT INTO queue_bodies (message_id, content) VALUES (?, ?)", (queue_id, content)
        )

    def read(self, db: QueueDatabase, queue_id: str) -> bytes | None:
        with db.reading() as conn:
            row = conn.execute(
                "SELECT content FROM queue_bodies WHERE message_id = ?", (queue_id,)
            ).fetchone()
        return None if row is None else bytes(row[0])

    def discard(self, queue_id: str) -> None:
        """Nothing: an unpublished body was never written."""

    def removed(self, paths: Collection[str]) -> None:
        """Nothing: the rows left with their envelope."""

    def recover(self, read_known: Callable[[], Collection[str]], grace: float) -> int:
        return 0
