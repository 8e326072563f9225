"""``mailstead migrate --to postgresql``: a node's data into the cluster database.

The order: refuse if a server uses the data directory; create the
components' tables with their own migrations; refuse if the target holds
other data for these accounts; copy what this migration has not copied yet
(the directory, each mailbox, the queue, the webhooks: each in its own
transaction with its progress row, :mod:`mailstead.migrate.state`); then
verify every unit, reading both sides again (:mod:`mailstead.migrate.verify`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from mailstead.config import Config
from mailstead.directory_db import PostgresDirectoryDB, SQLiteDirectoryDB
from mailstead.migrate import copy_directory as directory
from mailstead.migrate import copy_queue as queue
from mailstead.migrate import copy_webhooks as webhooks
from mailstead.migrate.copy_mail import copy_mailbox, mailbox_unit
from mailstead.migrate.local_mail import local_messages
from mailstead.migrate.plan import (
    MailPlan,
    MigrationError,
    check_mail_target,
    local_mail,
    open_database,
    refuse_if_serving,
)
from mailstead.migrate.progress import NO_PROGRESS, Progress
from mailstead.migrate.state import Unit, done_units, ensure_table, mark_done, source_name
from mailstead.migrate.verify import Report, compare, mailbox_line
from mailstead.mta.queue_db import PostgresDatabase
from mailstead.mta.queue_schema import POSTGRES_MIGRATIONS as QUEUE_MIGRATIONS
from mailstead.mta.queue_schema import open_queue_database
from mailstead.pgsql.compat import Connection
from mailstead.pgsql.connect import DatabaseUnavailable, Pool, redact
from mailstead.pgsql.migrate import SchemaTooNew
from mailstead.sqlconn import SQLConnection
from mailstead.store.pg_import import account_id_of, mailbox_counters, message_rows
from mailstead.store.pg_schema import StoreUnavailable, ensure_schema
from mailstead.webhooks.outbox_schema import POSTGRES_MIGRATIONS as OUTBOX_MIGRATIONS
from mailstead.webhooks.outbox_schema import open_outbox_database

__all__ = ["migrate_to_postgresql"]

DIRECTORY = Unit("directory")
QUEUE = Unit("queue")
WEBHOOKS = Unit("webhooks")


def migrate_to_postgresql(config: Config, dsn: str, progress: Progress = NO_PROGRESS) -> Report:
    """Copy ``config``'s data directory into the database at ``dsn``; the verification."""
    if config.storage.backend == "postgresql":
        raise MigrationError("this configuration already keeps its data in PostgreSQL")
    refuse_if_serving(config)
    pool = open_database(dsn)
    try:
        _create_tables(pool, dsn)
        return _Run(config, pool, progress).run()
    except (DatabaseUnavailable, SchemaTooNew, StoreUnavailable) as exc:
        raise MigrationError(str(exc)) from None
    finally:
        pool.close()


def _create_tables(pool: Pool, dsn: str) -> None:
    """Every component's tables at the version this code knows, by their own migrations."""
    ensure_schema(pool)
    PostgresDirectoryDB(pool, name=redact(dsn))
    PostgresDatabase(pool, "queue", QUEUE_MIGRATIONS)
    PostgresDatabase(pool, "outbox", OUTBOX_MIGRATIONS)
    with pool.connection() as raw:
        raw.commit()
        ensure_table(raw)


@contextmanager
def _target(pool: Pool) -> Iterator[Connection]:
    """One transaction on the target: committed at the end, rolled back on error."""
    with pool.connection() as raw:
        yield Connection(raw)


class _Run:
    """Owns one run: the source's open databases and accounts, the target's pool."""

    def __init__(self, config: Config, pool: Pool, progress: Progress) -> None:
        self.config = config
        self.pool = pool
        self.progress = progress
        self.source = source_name(config.data_dir)
        self.copied: list[str] = []

    def run(self) -> Report:
        with _target(self.pool) as conn:
            done = done_units(conn, self.source)
        plan = local_mail(self.config)
        directory_db = SQLiteDirectoryDB(self.config.db_path("directory"))
        queue_db = self._queue_database()
        try:
            with directory_db.read() as source_dir, _target(self.pool) as conn:
                self._check_target(conn, source_dir, queue_db, plan, done)
            self.progress.begin(sum(n for unit, n in plan.mailbox_units() if unit not in done))
            if DIRECTORY not in done:
                with directory_db.read() as source_dir, _target(self.pool) as conn:
                    users = directory.copy_directory(source_dir, conn)
                    mark_done(conn, DIRECTORY, self.source, users)
                self._finished(DIRECTORY)
            for address, names in plan.accounts.items():
                self._copy_account(
                    plan, address, [n for n in names if Unit("mailbox", address, n) not in done]
                )
            if queue_db is not None:
                self._copy_queue(queue_db, done)
            return self._verify(plan, directory_db, queue_db)
        finally:
            directory_db.close()
            if queue_db is not None:
                queue_db.close()

    def _copy_account(self, plan: MailPlan, address: str, names: list[str]) -> None:
        if not names:
            return
        with plan.open(address) as account:
            for name in names:
                mailbox = account.mailbox(name)
                with _target(self.pool) as conn:
                    copy_mailbox(conn, account, mailbox, self.source, self.progress)
                self._finished(mailbox_unit(mailbox))

    def _finished(self, unit: Unit) -> None:
        self.copied.append(str(unit))
        self.progress.finished(unit)

    def _queue_database(self) -> sqlite3.Connection | None:
        path = self.config.db_path("queue")
        if not path.exists():
            return None
        open_outbox_database(path).close()  # an old file gains the outbox's tables
        return open_queue_database(path)

    def _check_target(
        self,
        conn: Connection,
        source_dir: SQLConnection,
        queue_db: sqlite3.Connection | None,
        plan: MailPlan,
        done: set[Unit],
    ) -> None:
        if DIRECTORY not in done:
            clash = directory.conflicts(source_dir, conn)
            if clash:
                raise MigrationError(
                    f"the target already has users or aliases named {', '.join(clash[:3])}"
                    " that this migration did not copy; migrate into an empty database"
                )
        check_mail_target(conn, plan, done)
        if queue_db is not None and QUEUE not in done:
            clash = sorted(queue.queue_ids(queue_db) & queue.queue_ids(conn))
            if clash:
                raise MigrationError(f"the target's queue already holds message {clash[0]}")
        if queue_db is not None and WEBHOOKS not in done:
            clash = sorted(webhooks.endpoint_ids(queue_db, "cli") & webhooks.endpoint_ids(conn))
            if clash:
                raise MigrationError(f"the target already has webhook endpoint {clash[0]}")

    def _copy_queue(self, queue_db: sqlite3.Connection, done: set[Unit]) -> None:
        if QUEUE not in done:
            contents = queue.file_contents(self.config.data_dir / "queue")
            with _target(self.pool) as conn:
                count = queue.copy_queue(queue_db, contents, conn)
                mark_done(conn, QUEUE, self.source, count)
            self._finished(QUEUE)
        if WEBHOOKS not in done:
            with _target(self.pool) as conn:
                count = webhooks.copy_webhooks(queue_db, conn)
                mark_done(conn, WEBHOOKS, self.source, count)
            self._finished(WEBHOOKS)

    # -- verification --------------------------------------------------------

    def _verify(
        self, plan: MailPlan, directory_db: SQLiteDirectoryDB, queue_db: sqlite3.Connection | None
    ) -> Report:
        source: dict[str, str] = {}
        target: dict[str, str] = {}
        with directory_db.read() as source_dir, _target(self.pool) as conn:
            keys = directory.directory_keys(source_dir)
            source["directory"] = directory.directory_line(source_dir)
            target["directory"] = directory.directory_line(conn, keys)
            for address, names in plan.accounts.items():
                with plan.open(address) as account:
                    for name in names:
                        mailbox = account.mailbox(name)
                        unit = str(mailbox_unit(mailbox))
                        source[unit] = mailbox_line(mailbox.counters, local_messages(mailbox.box))
                        target_line = _target_mailbox(conn, address, name)
                        if target_line is not None:
                            target[unit] = target_line
            if queue_db is not None:
                ids = queue.queue_ids(queue_db)
                files = queue.file_contents(self.config.data_dir / "queue")
                source["queue"] = queue.queue_line(queue_db, files)
                target["queue"] = queue.queue_line(conn, queue.row_contents(conn), ids)
                endpoints = webhooks.endpoint_ids(queue_db)
                source["webhooks"] = webhooks.webhooks_line(queue_db)
                target["webhooks"] = webhooks.webhooks_line(conn, endpoints)
        return compare(source, target, self.copied)


def _target_mailbox(conn: Connection, address: str, name: str) -> str | None:
    account_id = account_id_of(conn, address)
    found = None if account_id is None else mailbox_counters(conn, account_id, name)
    if found is None:
        return None
    mailbox_id, counters = found
    return mailbox_line(counters, message_rows(conn, mailbox_id))
