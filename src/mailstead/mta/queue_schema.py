"""The queue's tables on each engine, and bringing older ones up to date.

``queue.sqlite3`` holds the envelope rows of :mod:`mailstead.mta.queue`
(the message files live beside it). Each schema version adds to the one
before; :func:`open_queue_database` takes a database of any older version
to the current one step by step, in one transaction.

On PostgreSQL (component ``queue`` of ``pgsql.migrate``) the same tables
carry the content too (``queue_bodies``, bytea: nodes share no disk) and
each message's claim: which node's queue delivers it, until when
(``claimed_by``, ``lease_until``; see ``Queue.due``).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from mailstead.sqlite_wal import connect_durable

__all__ = ["POSTGRES_MIGRATIONS", "open_queue_database"]

_SCHEMA_VERSION = 3
_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id          TEXT PRIMARY KEY,
    sender      TEXT NOT NULL,                 -- '' for the null reverse-path
    received_at REAL NOT NULL,                 -- Unix time
    size        INTEGER NOT NULL,              -- bytes in the message file
    envid       TEXT,                          -- RFC 3461 §4.4 ENVID
    ret         TEXT CHECK (ret IN ('FULL', 'HDRS')),  -- RFC 3461 §4.3
    path        TEXT NOT NULL,                 -- relative to <data_dir>/queue
    held_at     REAL                           -- Unix time of `queue hold`; NULL: not held
);
CREATE TABLE IF NOT EXISTS recipients (
    message_id   TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    address      TEXT NOT NULL,
    notify       TEXT,                         -- RFC 3461 §4.1, comma-separated
    orcpt        TEXT,                         -- RFC 3461 §4.2, 'type;xtext'
    state        TEXT NOT NULL DEFAULT 'pending'
                 CHECK (state IN ('pending', 'deferred', 'delivered', 'failed')),
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL,                -- Unix time the scheduler may try
    last_error   TEXT,
    delay_warned INTEGER NOT NULL DEFAULT 0,   -- a "delayed" DSN went out
    PRIMARY KEY (message_id, address)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS recipients_due ON recipients (state, next_attempt);
"""

# From version N to N + 1, for databases made by older versions.
_MIGRATIONS = {
    1: "ALTER TABLE recipients ADD COLUMN delay_warned INTEGER NOT NULL DEFAULT 0;",
    2: "ALTER TABLE messages ADD COLUMN held_at REAL;",
}


def open_queue_database(db_path: Path) -> sqlite3.Connection:
    """A durable connection to ``db_path``, its schema created or brought up to date."""
    conn = connect_durable(db_path, "queue")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > _SCHEMA_VERSION:
            raise sqlite3.DatabaseError(
                f"queue database schema {version} is newer than this program"
            )
        if 0 < version < _SCHEMA_VERSION:
            # Each step takes a database from one version to the next.
            steps = "".join(_MIGRATIONS[v] for v in range(version, _SCHEMA_VERSION))
            conn.executescript(
                f"BEGIN IMMEDIATE; {steps} PRAGMA user_version={_SCHEMA_VERSION}; COMMIT;"
            )
        elif version < _SCHEMA_VERSION:
            conn.executescript(
                f"BEGIN IMMEDIATE; {_SCHEMA} PRAGMA user_version={_SCHEMA_VERSION}; COMMIT;"
            )
    except BaseException:
        conn.close()
        raise
    return conn


# Version n of the PostgreSQL tables is POSTGRES_MIGRATIONS[:n]; append, never edit.
POSTGRES_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE messages (
            id          text PRIMARY KEY,
            sender      text NOT NULL,
            received_at double precision NOT NULL,
            size        bigint NOT NULL,
            envid       text,
            ret         text CHECK (ret IN ('FULL', 'HDRS')),
            path        text NOT NULL,             -- as in SQLite; the content is in queue_bodies
            held_at     double precision,
            claimed_by  text,                      -- the queue delivering it (Queue.due)
            lease_until double precision           -- until then; afterwards any node may
        )""",
        """CREATE TABLE queue_bodies (
            message_id text PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE,
            content    bytea NOT NULL
        )""",
        """CREATE TABLE recipients (
            message_id   text NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
            address      text NOT NULL,
            notify       text,
            orcpt        text,
            state        text NOT NULL DEFAULT 'pending'
                         CHECK (state IN ('pending', 'deferred', 'delivered', 'failed')),
            attempts     integer NOT NULL DEFAULT 0,
            next_attempt double precision NOT NULL,
            last_error   text,
            delay_warned integer NOT NULL DEFAULT 0,
            PRIMARY KEY (message_id, address)
        )""",
        "CREATE INDEX recipients_due ON recipients (state, next_attempt)",
        "CREATE INDEX messages_claimed_by ON messages (claimed_by)",
    ),
)
