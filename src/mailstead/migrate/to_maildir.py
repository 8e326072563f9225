"""``mailstead migrate --to maildir DIR``: the cluster's data out into a node's data directory.

DIR becomes what a single node's ``data_dir`` holds: ``directory.sqlite3``,
``mail/<domain>/<local>/Maildir/`` with each account's index (the same
UIDs, UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ and flags as in the cluster),
``queue.sqlite3`` with the queue's and the webhooks' rows, and the queued
messages' files under ``queue/``. Point a configuration's ``data_dir`` at
it with ``[storage] backend = "sqlite"`` (the default) and serve.

Resumable: each unit (the directory, each account, the queue with the
webhooks) is written whole, then recorded in DIR's progress file
(:class:`~mailstead.migrate.state.ExportState`); a unit without its record
is removed and written again. Verified like the import, both sides read
again.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

from mailstead.config import Config
from mailstead.directory_db import SQLiteDirectoryDB
from mailstead.durable import fsync_dir, write_all
from mailstead.migrate import copy_directory as directory
from mailstead.migrate import copy_queue as queue
from mailstead.migrate import copy_webhooks as webhooks
from mailstead.migrate.local_mail import local_messages, open_local
from mailstead.migrate.plan import MigrationError, open_database, refuse_if_serving
from mailstead.migrate.progress import NO_PROGRESS, Progress
from mailstead.migrate.state import EXPORT_STATE, ExportState, Unit
from mailstead.migrate.tables import insert_rows, read_rows
from mailstead.migrate.verify import Report, compare, mailbox_line
from mailstead.mta.queue_schema import open_queue_database
from mailstead.pgsql.compat import Connection
from mailstead.pgsql.connect import DatabaseUnavailable, Pool, redact
from mailstead.store.account import Account
from mailstead.store.maildir_import import import_maildir_mailbox
from mailstead.store.paths import account_dir, maildir_path
from mailstead.store.pg_import import (
    ImportedMessage,
    account_addresses,
    account_id_of,
    expunge_log,
    mailbox_counters,
    mailbox_names,
    message_rows,
    subscriptions_of,
)
from mailstead.webhooks.outbox_schema import open_outbox_database

__all__ = ["migrate_to_maildir"]

DIRECTORY = Unit("directory")
QUEUE = Unit("queue")


def migrate_to_maildir(config: Config, target: Path, progress: Progress = NO_PROGRESS) -> Report:
    """Write the cluster database of ``config`` out into the new data directory ``target``."""
    if config.storage.backend != "postgresql":
        raise MigrationError(
            "--to maildir exports from PostgreSQL; this configuration keeps its data"
            " under data_dir already ([storage] backend)"
        )
    refuse_if_serving(config)
    target = target.resolve()
    if target.exists() and any(target.iterdir()) and not (target / EXPORT_STATE).exists():
        raise MigrationError(f"{target} is not empty; export into a new directory")
    target.mkdir(parents=True, exist_ok=True, mode=0o700)
    pool = open_database(config.storage.dsn)
    state = ExportState(target / EXPORT_STATE)
    try:
        return _Export(pool, target, state, redact(config.storage.dsn), progress).run()
    except DatabaseUnavailable as exc:
        raise MigrationError(str(exc)) from None
    finally:
        state.close()
        pool.close()


class _Export:
    """Owns one export run: the source pool, the target directory and its progress file."""

    def __init__(
        self, pool: Pool, target: Path, state: ExportState, source: str, progress: Progress
    ) -> None:
        self.pool = pool
        self.target = target
        self.mail_root = target / "mail"
        self.state = state
        self.source = source
        self.progress = progress
        self.copied: list[str] = []

    def run(self) -> Report:
        done = self.state.done(self.source)
        with self.pool.connection() as raw:
            conn = Connection(raw)
            addresses = account_addresses(conn)
            total = conn.execute("SELECT coalesce(sum(size), 0) FROM mail_messages").fetchone()
        self.progress.begin(int(total[0]) if total else 0)
        if DIRECTORY not in done:
            self._directory()
        for address in addresses:
            unit = Unit("account", address)
            if unit not in done:
                self._account(address)
                self._finished(unit)
        if QUEUE not in done:
            self._queue()
        return self._verify(addresses)

    def _finished(self, unit: Unit, messages: int = 0) -> None:
        self.state.mark_done(unit, self.source, messages)
        self.copied.append(str(unit))
        self.progress.finished(unit)

    def _directory(self) -> None:
        db = SQLiteDirectoryDB(self.target / "directory.sqlite3")
        try:
            with self.pool.connection() as raw, db.write() as local:
                for table in directory.TABLES:
                    local.execute(f"DELETE FROM {table.name}")
                    insert_rows(local, table, read_rows(Connection(raw), table))
        finally:
            db.close()
        self._finished(DIRECTORY)

    def _account(self, address: str) -> None:
        home = account_dir(self.mail_root, address)
        if home.exists():  # an earlier run stopped inside it
            shutil.rmtree(home)
        account = Account(maildir_path(self.mail_root, address))
        try:
            with self.pool.connection() as raw:
                conn = Connection(raw)
                account_id = account_id_of(conn, address)
                assert account_id is not None
                for name in mailbox_names(conn, account_id):
                    found = mailbox_counters(conn, account_id, name)
                    assert found is not None
                    mailbox_id, counters = found
                    import_maildir_mailbox(
                        account,
                        counters,
                        self._counted(message_rows(conn, mailbox_id)),
                        expunge_log(conn, mailbox_id),
                    )
                for name in subscriptions_of(conn, account_id):
                    account.set_subscribed(name, True)
        finally:
            account.index.close()
        fsync_dir(home.parent)

    def _counted(self, messages: Iterable[ImportedMessage]) -> Iterator[ImportedMessage]:
        for msg in messages:
            yield msg
            self.progress.advance(msg.size)

    def _queue(self) -> None:
        """The queue's and the webhooks' rows in one transaction, after the files."""
        path = self.target / "queue.sqlite3"
        open_outbox_database(path).close()
        local = open_queue_database(path)
        try:
            with self.pool.connection() as raw:
                conn = Connection(raw)
                messages = read_rows(conn, queue.MESSAGES)
                contents = queue.row_contents(conn)
                for row in messages:
                    _write_durably(self.target / "queue" / str(row[6]), contents(row))
                local.execute("BEGIN IMMEDIATE")
                try:
                    for table in (*reversed(webhooks.TABLES), queue.RECIPIENTS, queue.MESSAGES):
                        local.execute(f"DELETE FROM {table.name}")
                    insert_rows(local, queue.MESSAGES, messages)
                    insert_rows(local, queue.RECIPIENTS, read_rows(conn, queue.RECIPIENTS))
                    for table in webhooks.TABLES:
                        insert_rows(local, table, read_rows(conn, table))
                    local.execute("COMMIT")
                except BaseException:
                    local.execute("ROLLBACK")
                    raise
        finally:
            local.close()
        self._finished(QUEUE, len(messages))

    # -- verification --------------------------------------------------------

    def _verify(self, addresses: list[str]) -> Report:
        source: dict[str, str] = {}
        target: dict[str, str] = {}
        db = SQLiteDirectoryDB(self.target / "directory.sqlite3")
        local_queue = open_queue_database(self.target / "queue.sqlite3")
        try:
            with self.pool.connection() as raw, db.read() as local_dir:
                conn = Connection(raw)
                source["directory"] = directory.directory_line(conn)
                target["directory"] = directory.directory_line(local_dir)
                for address in addresses:
                    self._verify_account(conn, address, source, target)
                files = queue.file_contents(self.target / "queue")
                source["queue"] = queue.queue_line(conn, queue.row_contents(conn))
                target["queue"] = queue.queue_line(local_queue, files)
                source["webhooks"] = webhooks.webhooks_line(conn)
                target["webhooks"] = webhooks.webhooks_line(local_queue)
        finally:
            db.close()
            local_queue.close()
        return compare(source, target, self.copied)

    def _verify_account(
        self, conn: Connection, address: str, source: dict[str, str], target: dict[str, str]
    ) -> None:
        account_id = account_id_of(conn, address)
        local = open_local("maildir", self.mail_root, address)
        if account_id is None:
            return
        try:
            for name in mailbox_names(conn, account_id):
                found = mailbox_counters(conn, account_id, name)
                if found is None:
                    continue
                mailbox_id, counters = found
                unit = f"{address} {name}"
                source[unit] = mailbox_line(counters, message_rows(conn, mailbox_id))
                if local is not None and name in local.names():
                    mine = local.mailbox(name)
                    target[unit] = mailbox_line(mine.counters, local_messages(mine.box))
        finally:
            if local is not None:
                local.close()


def _write_durably(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        write_all(fd, [data])
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_dir(path.parent)
