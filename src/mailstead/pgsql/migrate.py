"""Versioned schemas: each component brings its tables up to the version its code knows.

Every component (``directory``, ``queue``, ``outbox``, ``store`` …) owns an
ordered list of migrations; migration *n* takes its tables from version
*n − 1* to *n*. ``migrate`` runs the missing ones in one transaction under
an advisory lock, so nodes starting at the same time take turns and a
failed step leaves the previous version whole. A database whose version is
newer than the code is refused with a line the operator can act on: an old
node must never write tables a newer one has reshaped.
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg

__all__ = ["SchemaTooNew", "migrate", "schema_version"]

# Any fixed number: the key of the advisory lock every node takes to migrate.
_MIGRATION_LOCK = 0x6D61696C  # "mail"

_VERSIONS_TABLE = """
CREATE TABLE IF NOT EXISTS mailstead_schema (
    component  text PRIMARY KEY,
    version    integer NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
)
"""


class SchemaTooNew(Exception):
    """The database was shaped by a newer Mailstead than this one."""


def schema_version(conn: psycopg.Connection[tuple[object, ...]], component: str) -> int:
    """The version of ``component``'s tables (0: not created yet)."""
    exists = conn.execute("SELECT to_regclass('mailstead_schema') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return 0
    row = conn.execute(
        "SELECT version FROM mailstead_schema WHERE component = %s", (component,)
    ).fetchone()
    return int(str(row[0])) if row else 0


def migrate(
    conn: psycopg.Connection[tuple[object, ...]],
    component: str,
    migrations: Sequence[Sequence[str]],
) -> int:
    """Bring ``component`` to ``len(migrations)``; returns how many steps ran.

    Each migration is a sequence of SQL statements. ``conn`` must not be in
    a transaction; it is committed on success and rolled back on failure.
    """
    target = len(migrations)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        conn.execute(_VERSIONS_TABLE)
        current = schema_version(conn, component)
        if current > target:
            raise SchemaTooNew(
                f"the database's {component} tables are at version {current}, but this "
                f"Mailstead knows only up to {target}: upgrade Mailstead on this node"
            )
        for statements in migrations[current:]:
            for statement in statements:
                conn.execute(statement.encode())
        if current < target:
            conn.execute(
                "INSERT INTO mailstead_schema (component, version) VALUES (%s, %s) "
                "ON CONFLICT (component) DO UPDATE"
                " SET version = EXCLUDED.version, updated_at = now()",
                (component, target),
            )
    return target - current
