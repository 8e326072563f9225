"""Connections to the cluster database: one pool per process, the password never shown.

A pool is opened after the fork (a libpq connection must not cross one) and
is bounded: a worker never holds more than ``max_size`` connections, so the
database's ``max_connections`` divides among nodes × workers. Every
connection commits synchronously: a ``250`` to DATA means the transaction is
on the database's disk (``docs/durability.md``), whatever the server's
default for ``synchronous_commit`` is.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import conninfo
from psycopg_pool import ConnectionPool, PoolTimeout

__all__ = [
    "DATABASE_ERRORS",
    "DatabaseUnavailable",
    "Pool",
    "connect",
    "open_pool",
    "redact",
    "shared_pool",
]

# Seconds: to open a connection, and to wait for one from a full pool (or
# while the database is away). Below the watchdog's 10 s, since much of the
# work runs on a worker's event loop.
CONNECT_TIMEOUT = 10
POOL_WAIT = 5.0
# What PostgreSQL shows in pg_stat_activity for our sessions.
APPLICATION_NAME = "mailstead"


class DatabaseUnavailable(Exception):
    """The database cannot be reached or refused us (one line, no password)."""


#: What a unit of work on the cluster database may raise when the database
#: fails it, for callers that answer with a temporary error.
DATABASE_ERRORS: tuple[type[Exception], ...] = (DatabaseUnavailable, psycopg.Error)


def redact(dsn: str) -> str:
    """``dsn`` with any password replaced by ``***``, for logs and error lines."""
    try:
        parts = conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "(an unparsable connection string)"
    if "password" in parts:
        parts["password"] = "***"
    return conninfo.make_conninfo(**{k: str(v) for k, v in parts.items()})


def _settings(dsn: str) -> str:
    return conninfo.make_conninfo(
        dsn,
        connect_timeout=CONNECT_TIMEOUT,
        application_name=APPLICATION_NAME,
        options="-c synchronous_commit=on",
    )


def connect(dsn: str, *, autocommit: bool = False) -> psycopg.Connection[tuple[object, ...]]:
    """One connection, for a command-line tool or a schema migration."""
    try:
        return psycopg.connect(_settings(dsn), autocommit=autocommit)
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(_reason(dsn, exc)) from None


def _reason(dsn: str, exc: BaseException) -> str:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"cannot reach the database {redact(dsn)}: {first}"


class Pool:
    """The bounded connection pool of one process; ``connection()`` lends one."""

    def __init__(
        self, dsn: str, *, min_size: int = 1, max_size: int = 4, name: str = "mailstead"
    ) -> None:
        self._dsn = dsn
        self._pool: ConnectionPool[psycopg.Connection[tuple[object, ...]]] = ConnectionPool(
            _settings(dsn),
            min_size=min_size,
            max_size=max_size,
            name=name,
            timeout=POOL_WAIT,
            open=False,
        )

    def open(self) -> None:
        """Open the pool and wait for its first connection (a bad DSN fails here, once)."""
        self._pool.open()
        try:
            self._pool.wait(timeout=CONNECT_TIMEOUT)
        except PoolTimeout:
            self._pool.close()
            # The pool hides libpq's reason: one direct attempt tells it.
            connect(self._dsn).close()
            raise DatabaseUnavailable(f"cannot reach the database {redact(self._dsn)}") from None

    @contextmanager
    def connection(
        self, timeout: float | None = None
    ) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
        """A connection for one unit of work: committed at the end, rolled back on error.

        ``timeout``: seconds to wait for a free one (default :data:`POOL_WAIT`);
        work on an event loop asks for a short wait and copes without.
        """
        try:
            with self._pool.connection(timeout=timeout) as conn:
                yield conn
        except PoolTimeout:
            raise DatabaseUnavailable(f"no free connection to {redact(self._dsn)}") from None

    def close(self) -> None:
        self._pool.close()


def open_pool(dsn: str, *, min_size: int = 1, max_size: int = 4) -> Pool:
    """A ready pool for this process (call after any fork)."""
    pool = Pool(dsn, min_size=min_size, max_size=max_size)
    pool.open()
    return pool


# Per process: a pool made before a fork belongs to the parent. Its
# connections are the parent's sockets, so the child keeps it referenced and
# untouched (closing it would end the parent's sessions) and opens its own.
_POOL_SIZE = 8
_pools: dict[str, Pool] = {}
_pools_pid = os.getpid()
_inherited: list[Pool] = []
_pools_lock = threading.Lock()


def shared_pool(dsn: str) -> Pool:
    """This process's pool for ``dsn``, opened at first use, shared by every component."""
    global _pools_pid
    with _pools_lock:
        if os.getpid() != _pools_pid:
            _inherited.extend(_pools.values())
            _pools.clear()
            _pools_pid = os.getpid()
        pool = _pools.get(dsn)
    if pool is not None:
        return pool
    # Opened outside the lock: against an unreachable database this takes
    # up to the connect timeout, which other callers must not wait out.
    opened = open_pool(dsn, max_size=_POOL_SIZE)
    with _pools_lock:
        pool = _pools.setdefault(dsn, opened)
    if pool is not opened:  # another thread was first
        opened.close()
    return pool
