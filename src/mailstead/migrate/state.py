"""The migration's own progress in the target database: what is copied already.

One row per unit copied (the directory, each mailbox, the queue, the
webhooks), inserted in the same transaction as the unit's data: a unit is
either in the target with its row or not at all, so a run interrupted
anywhere and started again skips what has a row and copies the rest, once.
The rows name the installation they came from (``source``: host and data
directory), which tells this migration's own state from another's data.
The table is component ``migration`` of :func:`mailstead.pgsql.migrate.migrate`.

An export (``--to maildir``) keeps the same rows in a small SQLite file in
the directory it writes (:class:`ExportState`): there a unit's files and
rows are written first and its progress row last, and a unit without its
row is removed and written again by the next run.
"""

from __future__ import annotations

import socket
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import psycopg

from mailstead.pgsql.compat import Connection
from mailstead.pgsql.migrate import migrate

__all__ = [
    "COMPONENT",
    "EXPORT_STATE",
    "MIGRATIONS",
    "ExportState",
    "Unit",
    "done_units",
    "ensure_table",
    "mark_done",
    "source_name",
]

COMPONENT = "migration"

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE mailstead_migration (
            kind     text NOT NULL,             -- 'directory', 'mailbox', 'queue', 'webhooks'
            account  text NOT NULL DEFAULT '',  -- a mailbox's address
            mailbox  text NOT NULL DEFAULT '',  -- a mailbox's name
            source   text NOT NULL,             -- host:data_dir it was copied from
            messages bigint NOT NULL DEFAULT 0,
            digest   text NOT NULL DEFAULT '',  -- the source side's checksum when copied
            done_at  timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (source, kind, account, mailbox)
        )""",
    ),
)


@dataclass(frozen=True, slots=True)
class Unit:
    """One piece of the copy: ``kind``, and for a mailbox its account and name."""

    kind: str
    account: str = ""
    mailbox: str = ""

    def __str__(self) -> str:
        return f"{self.account} {self.mailbox}" if self.kind == "mailbox" else self.kind


def source_name(data_dir: Path) -> str:
    """Which installation a copy came from: this host and its data directory."""
    return f"{socket.gethostname()}:{Path(data_dir).resolve()}"


def ensure_table(raw: psycopg.Connection[tuple[object, ...]]) -> None:
    """Create the progress table if absent (``raw`` outside a transaction)."""
    migrate(raw, COMPONENT, MIGRATIONS)


def done_units(conn: Connection, source: str) -> set[Unit]:
    """Every unit copied so far from the installation ``source``."""
    return {
        Unit(str(kind), str(account), str(mailbox))
        for kind, account, mailbox in conn.execute(
            "SELECT kind, account, mailbox FROM mailstead_migration WHERE source = ?", (source,)
        )
    }


def mark_done(
    conn: Connection, unit: Unit, source: str, messages: int = 0, digest: str = ""
) -> None:
    """Record ``unit`` as copied, in the transaction that copied it."""
    conn.execute(
        "INSERT INTO mailstead_migration (kind, account, mailbox, source, messages, digest)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (unit.kind, unit.account, unit.mailbox, source, messages, digest),
    )


#: The export's progress file in the directory it writes.
EXPORT_STATE = "mailstead-migration.sqlite3"


class ExportState:
    """Owns the export's progress file: the units written out whole so far."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn = sqlite3.connect(path, isolation_level=None)
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS mailstead_migration ("
            " kind TEXT NOT NULL, account TEXT NOT NULL DEFAULT '',"
            " mailbox TEXT NOT NULL DEFAULT '', source TEXT NOT NULL,"
            " messages INTEGER NOT NULL DEFAULT 0, digest TEXT NOT NULL DEFAULT '',"
            " done_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,"
            " PRIMARY KEY (source, kind, account, mailbox))"
        )

    def done(self, source: str) -> set[Unit]:
        return {
            Unit(str(kind), str(account), str(mailbox))
            for kind, account, mailbox in self._conn.execute(
                "SELECT kind, account, mailbox FROM mailstead_migration WHERE source = ?",
                (source,),
            )
        }

    def mark_done(self, unit: Unit, source: str, messages: int = 0) -> None:
        """Record ``unit`` as written, after its files and rows are durable."""
        self._conn.execute(
            "INSERT OR REPLACE INTO mailstead_migration (kind, account, mailbox, source, messages)"
            " VALUES (?, ?, ?, ?, ?)",
            (unit.kind, unit.account, unit.mailbox, source, messages),
        )

    def close(self) -> None:
        self._conn.close()
