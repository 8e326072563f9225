"""The webhook outbox's tables on each engine, and bringing older ones up to date.

In SQLite they live in ``queue.sqlite3`` beside the queue's (the queue's
events commit with its changes); an outbox made by an older version gains
the columns added since (ALTER TABLE ADD COLUMN). On PostgreSQL they are
component ``outbox`` of ``pgsql.migrate``, in the cluster database beside
the queue's tables, with the same columns.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from mailstead.sqlite_wal import connect_durable

__all__ = ["POSTGRES_MIGRATIONS", "open_outbox_database"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS webhook_endpoints (
    id          TEXT PRIMARY KEY,
    url         TEXT NOT NULL,
    events      TEXT NOT NULL,              -- JSON list of patterns
    secrets     TEXT NOT NULL,              -- JSON list of [secret, retire_at|null], newest first
    domain      TEXT,                       -- only events of this domain, if set
    account     TEXT,                       -- only events of this account, if set
    ordered     INTEGER NOT NULL DEFAULT 0, -- one delivery at a time per account, in order
    enabled     INTEGER NOT NULL DEFAULT 1,
    disabled_reason TEXT,
    source      TEXT NOT NULL CHECK (source IN ('config', 'cli')),
    created_at  REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS webhook_events (
    id          TEXT PRIMARY KEY,
    type        TEXT NOT NULL,
    account     TEXT,
    domain      TEXT,
    created_at  REAL NOT NULL,
    payload     BLOB NOT NULL,              -- the JSON body, UTF-8
    raw_message BLOB,                       -- message.received: summarised into the
    body_limit  INTEGER,                    -- payload's data.message when sent
    stored_as   TEXT                        -- message.received: where the copy is, until
                                            -- its UID is in the payload (store.StoredAs)
);
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    seq          INTEGER PRIMARY KEY,       -- creation order (ordered endpoints)
    id           TEXT NOT NULL UNIQUE,      -- the webhook-id header
    event_id     TEXT NOT NULL REFERENCES webhook_events(id) ON DELETE CASCADE,
    endpoint_id  TEXT NOT NULL,
    account      TEXT,
    state        TEXT NOT NULL DEFAULT 'pending'
                 CHECK (state IN ('pending', 'succeeded', 'failed')),
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL,
    lease_until  REAL NOT NULL DEFAULT 0,   -- claimed by a dispatcher until then
    leased_by    TEXT,                      -- the node that claimed it (release_leases)
    last_status  INTEGER,
    last_error   TEXT,
    created_at   REAL NOT NULL,
    finished_at  REAL
);
-- claim: one endpoint's pending deliveries in creation order;
-- next_due: the earliest pending one.
CREATE INDEX IF NOT EXISTS webhook_deliveries_claim
    ON webhook_deliveries (endpoint_id, state, seq);
CREATE INDEX IF NOT EXISTS webhook_deliveries_next
    ON webhook_deliveries (state, next_attempt);
CREATE TABLE IF NOT EXISTS webhook_attempts (
    delivery_id TEXT NOT NULL,
    attempt     INTEGER NOT NULL,
    at          REAL NOT NULL,
    status      INTEGER,
    error       TEXT,
    elapsed     REAL NOT NULL,
    response    TEXT,                       -- the first bytes of the answer
    PRIMARY KEY (delivery_id, attempt)
) WITHOUT ROWID;
"""


def open_outbox_database(path: Path) -> sqlite3.Connection:
    """A durable connection to ``path`` with the outbox's tables made or brought up to date."""
    conn = connect_durable(path, "webhook outbox")
    try:
        conn.executescript(f"BEGIN IMMEDIATE; {_SCHEMA} COMMIT;")
        _add_missing_columns(conn)
    except BaseException:
        conn.close()
        raise
    return conn


# Columns added after the first release: (table, column, type).
_ADDED_COLUMNS = (
    ("webhook_events", "raw_message", "BLOB"),
    ("webhook_events", "body_limit", "INTEGER"),
    ("webhook_events", "stored_as", "TEXT"),
    ("webhook_deliveries", "leased_by", "TEXT"),
)


def _add_missing_columns(conn: sqlite3.Connection) -> None:
    """Bring an outbox made by an older version up to the schema (ALTER TABLE ADD COLUMN)."""
    have: dict[str, set[str]] = {}
    for table, column, kind in _ADDED_COLUMNS:
        if table not in have:
            have[table] = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        if column not in have[table]:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")


# Version n of the PostgreSQL tables is POSTGRES_MIGRATIONS[:n]; append, never edit.
# Flags stay integers (0/1) as in SQLite, so one set of DML serves both.
POSTGRES_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE webhook_endpoints (
            id              text PRIMARY KEY,
            url             text NOT NULL,
            events          text NOT NULL,
            secrets         text NOT NULL,
            domain          text,
            account         text,
            ordered         integer NOT NULL DEFAULT 0,
            enabled         integer NOT NULL DEFAULT 1,
            disabled_reason text,
            source          text NOT NULL CHECK (source IN ('config', 'cli')),
            created_at      double precision NOT NULL
        )""",
        """CREATE TABLE webhook_events (
            id          text PRIMARY KEY,
            type        text NOT NULL,
            account     text,
            domain      text,
            created_at  double precision NOT NULL,
            payload     bytea NOT NULL,
            raw_message bytea,
            body_limit  integer,
            stored_as   text
        )""",
        """CREATE TABLE webhook_deliveries (
            seq          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            id           text NOT NULL UNIQUE,
            event_id     text NOT NULL REFERENCES webhook_events(id) ON DELETE CASCADE,
            endpoint_id  text NOT NULL,
            account      text,
            state        text NOT NULL DEFAULT 'pending'
                         CHECK (state IN ('pending', 'succeeded', 'failed')),
            attempts     integer NOT NULL DEFAULT 0,
            next_attempt double precision NOT NULL,
            lease_until  double precision NOT NULL DEFAULT 0,
            leased_by    text,
            last_status  integer,
            last_error   text,
            created_at   double precision NOT NULL,
            finished_at  double precision
        )""",
        "CREATE INDEX webhook_deliveries_claim ON webhook_deliveries (endpoint_id, state, seq)",
        "CREATE INDEX webhook_deliveries_next ON webhook_deliveries (state, next_attempt)",
        "CREATE INDEX webhook_deliveries_event ON webhook_deliveries (event_id)",
        """CREATE TABLE webhook_attempts (
            delivery_id text NOT NULL,
            attempt     integer NOT NULL,
            at          double precision NOT NULL,
            status      integer,
            error       text,
            elapsed     double precision NOT NULL,
            response    text,
            PRIMARY KEY (delivery_id, attempt)
        )""",
    ),
)
