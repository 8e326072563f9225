"""``mailstead check config`` with a cluster database: reachable, and not newer than the code.

Read only: the tables' versions are compared with what this code knows
(cluster_schema.py); tables missing or older are what ``serve`` and
``mailstead init`` make or upgrade, so they are no problem.
"""

from __future__ import annotations

from mailstead.checks.problem import Problem
from mailstead.cluster_schema import ClusterSchemaError, read_cluster_schema
from mailstead.config import Config

__all__ = ["database_problems"]

_KEY = "storage.dsn"


def database_problems(config: Config) -> list[Problem]:
    """What keeps ``serve`` from using ``[storage] dsn`` (nothing with SQLite)."""
    if config.storage.backend != "postgresql":
        return []
    try:
        versions = read_cluster_schema(config.storage.dsn)
    except ClusterSchemaError as exc:
        return [Problem("error", _KEY, str(exc))]
    return [
        Problem(
            "error",
            _KEY,
            f"the database's {v.component} tables are at version {v.found}, but this"
            f" Mailstead knows only up to {v.known}: upgrade Mailstead on this node",
        )
        for v in versions
        if v.found > v.known
    ]
