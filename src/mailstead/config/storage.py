"""``[storage]``: where mail and the shared state are kept.

The embedded default (``backend = "sqlite"``) keeps everything under
``data_dir``: SQLite databases and Maildir or mbox files. With ``backend =
"postgresql"`` the state several nodes share lives in one PostgreSQL
database named by ``dsn`` (or ``$MAILSTEAD_DSN``), and ``data_dir`` keeps only
what is local to a node (docs/scaling.md).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from mailstead.config.reader import Reader, show

__all__ = ["DSN_ENVIRONMENT", "StorageBackend", "StorageConfig", "StorageFormat", "load_storage"]

StorageFormat = Literal["maildir", "mbox"]
StorageBackend = Literal["sqlite", "postgresql"]

#: Read when ``[storage] dsn`` is empty, so the password can stay out of the file.
DSN_ENVIRONMENT = "MAILSTEAD_DSN"


@dataclass(frozen=True, slots=True)
class StorageConfig:
    """How local mailboxes are stored, and which database holds the shared state."""

    #: ``"maildir"`` (one file per message) or ``"mbox"`` (one file per folder).
    format: StorageFormat = "maildir"
    #: ``"sqlite"`` (everything under data_dir) or ``"postgresql"`` (one database for every node).
    backend: StorageBackend = "sqlite"
    #: libpq connection string or URI; may carry a password, so never logged
    #: as it is (``mailstead.pgsql.connect.redact``).
    dsn: str = field(default="", repr=False)


def load_storage(r: Reader, data: Mapping[str, object]) -> StorageConfig:
    """The ``[storage]`` table of ``data``."""
    t = r.table(data, "storage", "", ("format", "backend", "dsn"))
    fmt = r.string(t.get("format", "maildir"), "storage.format")
    if fmt not in ("maildir", "mbox"):
        r.fail("storage.format", f'expected "maildir" or "mbox", got {show(fmt)}')
    backend = r.string(t.get("backend", "sqlite"), "storage.backend")
    if backend not in ("sqlite", "postgresql"):
        r.fail("storage.backend", f'expected "sqlite" or "postgresql", got {show(backend)}')
    dsn = r.string(t.get("dsn", ""), "storage.dsn").strip()
    if backend == "postgresql":
        dsn = dsn or os.environ.get(DSN_ENVIRONMENT, "").strip()
        if not dsn:
            r.fail(
                "storage.dsn", f'required with backend = "postgresql" (or set ${DSN_ENVIRONMENT})'
            )
        problem = _dsn_problem(dsn)
        if problem:
            # The value itself is not repeated: it may hold a password.
            r.fail("storage.dsn", problem)
    return StorageConfig(
        format="maildir" if fmt == "maildir" else "mbox",
        backend="postgresql" if backend == "postgresql" else "sqlite",
        dsn=dsn,
    )


def _dsn_problem(dsn: str) -> str:
    """Why ``dsn`` cannot name a PostgreSQL database, or "" (libpq checks the rest)."""
    if "://" in dsn:
        scheme = urlsplit(dsn).scheme
        if scheme not in ("postgresql", "postgres"):
            return f"expected a postgresql:// URI, got a {scheme or 'schemeless'}:// one"
        return ""
    if "=" not in dsn:
        return (
            'expected a postgresql:// URI or "key=value" pairs such as "host=db dbname=mailstead"'
        )
    return ""
