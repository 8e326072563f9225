"""Every component's tables in the cluster database, looked at or made in one go.

With ``[storage] backend = "postgresql"`` each component brings its own
tables to its version when it opens (``pgsql.migrate``). ``serve`` does it
for all of them once before forking, so a database that cannot be reached,
or that a newer Mailstead has shaped, stops the server with one line
instead of every worker dying at start; ``mailstead init`` makes them too,
and ``mailstead check config`` only reads their versions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import psycopg

from mailstead import directory_db
from mailstead.mailauth import abuse_db
from mailstead.mta import queue_schema
from mailstead.net import auth_penalty_db
from mailstead.pgsql.connect import DatabaseUnavailable, connect, redact
from mailstead.pgsql.migrate import SchemaTooNew, migrate, schema_version
from mailstead.store import pg_schema
from mailstead.webhooks import outbox_schema

__all__ = [
    "COMPONENTS",
    "ClusterSchemaError",
    "ComponentVersion",
    "prepare_cluster_schema",
    "read_cluster_schema",
]

#: (component, its migrations): every set of tables a node uses, in the
#: order a fresh database gets them.
COMPONENTS: tuple[tuple[str, Sequence[Sequence[str]]], ...] = (
    ("directory", directory_db.POSTGRES_MIGRATIONS),
    ("abuse", abuse_db.POSTGRES_MIGRATIONS),
    (auth_penalty_db.COMPONENT, auth_penalty_db.POSTGRES_MIGRATIONS),
    ("queue", queue_schema.POSTGRES_MIGRATIONS),
    ("outbox", outbox_schema.POSTGRES_MIGRATIONS),
    (pg_schema.COMPONENT, pg_schema.MIGRATIONS),
)


class ClusterSchemaError(Exception):
    """The cluster database cannot be used: unreachable, or newer than this code (one line)."""


@dataclass(frozen=True, slots=True)
class ComponentVersion:
    """One component's tables: the version in the database and the one this code knows."""

    component: str
    found: int  # 0: not made yet
    known: int


def prepare_cluster_schema(dsn: str) -> list[str]:
    """Create or upgrade every component's tables; the components changed.

    One connection for all: each component's migrations run in their own
    transaction under the migration lock (nodes starting together take turns).
    """
    changed = []
    try:
        with connect(dsn) as conn:
            for component, migrations in COMPONENTS:
                if migrate(conn, component, migrations):
                    changed.append(component)
    except (DatabaseUnavailable, SchemaTooNew) as exc:
        raise ClusterSchemaError(str(exc)) from None
    except psycopg.Error as exc:
        raise ClusterSchemaError(_failed(dsn, exc)) from None
    return changed


def read_cluster_schema(dsn: str) -> list[ComponentVersion]:
    """Every component's version in the database, changing nothing."""
    try:
        with connect(dsn) as conn:
            return [
                ComponentVersion(component, schema_version(conn, component), len(migrations))
                for component, migrations in COMPONENTS
            ]
    except DatabaseUnavailable as exc:
        raise ClusterSchemaError(str(exc)) from None
    except psycopg.Error as exc:
        raise ClusterSchemaError(_failed(dsn, exc)) from None


def _failed(dsn: str, exc: psycopg.Error) -> str:
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    return f"the database {redact(dsn)}: {first}"
