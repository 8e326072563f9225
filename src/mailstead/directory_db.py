"""Where the directory keeps its rows: a SQLite file, or the cluster's PostgreSQL database.

:class:`~mailstead.directory.Directory` holds the rules and one set of
queries (SQLite-style text, see :mod:`mailstead.sqlconn`); this module holds
what differs between the engines: the schema and its upgrades, and how a
write keeps other writers out while it checks and changes.

* SQLite (the embedded default): ``<data_dir>/directory.sqlite3`` in WAL
  mode, one connection per :class:`Directory` shared by threads under a
  lock; a write is ``BEGIN IMMEDIATE`` (SQLite's one writer at a time), the
  schema version is ``PRAGMA user_version``.
* PostgreSQL (``[storage] backend = "postgresql"``): connections from the
  process's shared pool, one per read or write; a write first takes a
  transaction-level advisory lock, so directory changes from every node run
  one at a time, like SQLite's, and the check-then-insert of a user or an
  alias cannot interleave with another node's. The schema is the
  ``directory`` component's (:func:`mailstead.pgsql.migrate.migrate`).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from pathlib import Path
from typing import Protocol

import psycopg

from mailstead.pgsql.compat import Connection
from mailstead.pgsql.connect import DatabaseUnavailable, Pool
from mailstead.pgsql.migrate import SchemaTooNew, migrate
from mailstead.sqlconn import SQLConnection
from mailstead.sqlite_wal import enable_wal

__all__ = [
    "POSTGRES_MIGRATIONS",
    "SQLITE_SCHEMA_VERSION",
    "DirectoryDB",
    "DirectoryError",
    "DirectorySettings",
    "PostgresDirectoryDB",
    "SQLiteDirectoryDB",
    "StorageSettings",
]


class DirectoryError(Exception):
    """A directory operation that cannot be done as asked (one-line message)."""


class StorageSettings(Protocol):
    """What :func:`~mailstead.directory.open_directory` reads of ``[storage]``."""

    @property
    def backend(self) -> str: ...

    @property
    def dsn(self) -> str: ...


class DirectorySettings(Protocol):
    """What :func:`~mailstead.directory.open_directory` reads of the configuration
    (:class:`mailstead.config.Config`, which the directory's layer may not import)."""

    @property
    def domains(self) -> Sequence[str]: ...

    @property
    def storage(self) -> StorageSettings: ...

    def db_path(self, name: str) -> Path: ...


class DirectoryDB(Protocol):
    """The storage seam of the directory: transactions over the users, aliases and quotas."""

    def read(self) -> AbstractContextManager[SQLConnection]:
        """A connection for a few consistent-enough reads."""
        ...

    def write(self) -> AbstractContextManager[SQLConnection]:
        """A write transaction that no other directory writer interleaves with;
        committed at the end, rolled back if the body raises."""
        ...

    def close(self) -> None: ...


# --------------------------------------------------------------------------- SQLite

# Bumped with every schema change; _migrate() upgrades older files.
SQLITE_SCHEMA_VERSION = 2

# WITHOUT ROWID: every lookup is by primary key, so the table is the index.
_SQLITE_SCHEMA = """
CREATE TABLE users (
    address  TEXT PRIMARY KEY,          -- canonical local@domain
    domain   TEXT NOT NULL,
    password TEXT NOT NULL               -- $scrypt$… hash, never plaintext
) WITHOUT ROWID;
CREATE TABLE alias_targets (
    alias    TEXT NOT NULL,             -- canonical local@domain, or @domain (catch-all)
    position INTEGER NOT NULL,          -- keeps the targets in the order given
    target   TEXT NOT NULL,             -- local part as given, domain normalised
    PRIMARY KEY (alias, position)
) WITHOUT ROWID;
"""

# Schema 2: per-user limits (RFC 9208 STORAGE in octets, MESSAGE); a user
# without a row, or a NULL, has no limit on that resource.
_SQLITE_QUOTAS = """
CREATE TABLE IF NOT EXISTS quotas (
    address  TEXT PRIMARY KEY,          -- canonical local@domain of a user
    storage  INTEGER,                   -- octets
    messages INTEGER
) WITHOUT ROWID
"""


class SQLiteDirectoryDB:
    """The directory in one SQLite file (WAL), so the CLI can change it while the server runs.

    One connection, shared by threads under a lock.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            # Password hashes live here: create the file private before SQLite
            # opens it (its -wal and -shm files copy this mode).
            os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
            self.db = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, timeout=10.0
            )
        except (OSError, sqlite3.Error) as exc:
            raise DirectoryError(f"cannot open directory {path}: {exc}") from None
        try:
            enable_wal(self.db)
            self.db.execute("PRAGMA synchronous = FULL")  # an added user survives a crash
            self._migrate()
        except sqlite3.Error as exc:
            self.db.close()
            raise DirectoryError(f"cannot open directory {path}: {exc}") from None
        except BaseException:
            self.db.close()
            raise

    def _migrate(self) -> None:
        with self.write() as db:
            (version,) = db.execute("PRAGMA user_version").fetchone() or (0,)
            if version > SQLITE_SCHEMA_VERSION:
                raise DirectoryError(
                    f"{self.path} has schema version {version}; "
                    f"this Mailstead supports up to {SQLITE_SCHEMA_VERSION}"
                )
            if version == 0:
                for statement in _SQLITE_SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
            if version < 2:
                db.execute(_SQLITE_QUOTAS)
            if version < SQLITE_SCHEMA_VERSION:
                db.execute(f"PRAGMA user_version = {SQLITE_SCHEMA_VERSION}")

    @contextmanager
    def read(self) -> Iterator[SQLConnection]:
        with self._lock:
            yield self.db

    @contextmanager
    def write(self) -> Iterator[SQLConnection]:
        with self._lock:
            # IMMEDIATE takes SQLite's write lock now, so a concurrent writer
            # (the CLI vs. the server) waits for it instead of failing mid-way.
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self.db.close()


# --------------------------------------------------------------------------- PostgreSQL

# The same tables; COLLATE "C" sorts addresses byte by byte, as SQLite does,
# whatever the database's locale, so listings come out in one order.
POSTGRES_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE users (
            address  text COLLATE "C" PRIMARY KEY,
            domain   text COLLATE "C" NOT NULL,
            password text NOT NULL
        )""",
        """CREATE TABLE alias_targets (
            alias    text COLLATE "C" NOT NULL,
            position integer NOT NULL,
            target   text COLLATE "C" NOT NULL,
            PRIMARY KEY (alias, position)
        )""",
        """CREATE TABLE quotas (
            address  text COLLATE "C" PRIMARY KEY,
            storage  bigint,
            messages bigint
        )""",
    ),
)

# Seconds a lookup waits for a pooled connection (the watchdog kills a
# worker whose loop is stuck for 10 s).
_READ_WAIT = 2.0

# Any fixed number, other than the migrations' own: the advisory lock every
# directory write takes, on every node.
_WRITE_LOCK = 0x64697265  # "dire"


class PostgresDirectoryDB:
    """The directory in the cluster's database: every node sees a change at its next lookup."""

    def __init__(self, pool: Pool, *, name: str) -> None:
        #: The database as shown in messages (``redact``-ed: no password).
        self.name = name
        self._pool = pool
        with self._errors(), self._pool.connection() as raw:
            #: Schema steps this opening ran (0: the tables were up to date).
            self.steps_run = migrate(raw, "directory", POSTGRES_MIGRATIONS)

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """The database's failures as one-line :class:`DirectoryError` s."""
        try:
            yield
        except (DatabaseUnavailable, SchemaTooNew) as exc:
            raise DirectoryError(str(exc)) from None
        except psycopg.OperationalError as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise DirectoryError(f"directory database {self.name}: {first}") from None

    @contextmanager
    def _session(self) -> Iterator[SQLConnection]:
        with self._errors(), self._pool.connection() as raw:
            yield Connection(raw)

    @contextmanager
    def read(self) -> Iterator[SQLConnection]:
        # Lookups run on the event loop (RCPT, a login's user check): a short
        # wait for a pooled connection, so a database outage answers 451
        # instead of stalling every session of the worker; and no BEGIN and
        # COMMIT round trips around what is usually one SELECT.
        with self._errors(), self._pool.connection(timeout=_READ_WAIT) as raw:
            raw.autocommit = True
            try:
                yield Connection(raw)
            finally:
                with suppress(psycopg.Error):  # a broken connection is dropped anyway
                    raw.autocommit = False

    @contextmanager
    def write(self) -> Iterator[SQLConnection]:
        with self._session() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(?)", (_WRITE_LOCK,))
            yield conn

    def close(self) -> None:
        """Nothing to close: the pool is the process's, shared with the other components."""
