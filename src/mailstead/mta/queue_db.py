"""The queue database: the queue's and the webhook outbox's tables, on either engine.

The outbound queue (:mod:`mailstead.mta.queue`) and the webhook outbox
(:mod:`mailstead.webhooks.outbox`) keep their tables in one database, so an
event the queue reports commits in the same transaction as the queue change
(``EventSink.emit_in``). That database is ``<data_dir>/queue.sqlite3`` by
default, or the cluster's PostgreSQL database with ``[storage] backend =
"postgresql"``. Both components write ONE set of DML (``?`` placeholders,
run on PostgreSQL through :class:`mailstead.pgsql.compat.Connection`); what
differs between the engines is here: how a transaction is opened and made
durable, and :attr:`QueueDatabase.engine` for the few statements that must
differ in meaning (claiming rows with ``FOR UPDATE SKIP LOCKED``).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Literal

import psycopg

from mailstead.durable import fsync_dir
from mailstead.pgsql.compat import Connection
from mailstead.pgsql.connect import Pool
from mailstead.pgsql.migrate import migrate
from mailstead.sqlconn import SQLConnection
from mailstead.sqlite_wal import connect_durable, immediate

__all__ = [
    "DatabaseError",
    "Engine",
    "PostgresDatabase",
    "QueueDatabase",
    "SQLConnection",
    "SQLiteDatabase",
    "holder_name",
    "node_name",
]

Engine = Literal["sqlite", "postgresql"]


#: What a failed statement or commit raises, on either engine.
DatabaseError = (sqlite3.Error, psycopg.Error)


def node_name(data_dir: Path) -> str:
    """This node's name in the shared database: host and data directory.

    Stable across restarts (a restarted node frees what its predecessor
    held) and distinct for two nodes on one host (each has its data_dir).
    """
    return f"{socket.gethostname()}:{Path(data_dir).resolve()}"


def holder_name(node: str) -> str:
    """One holder of claims within ``node``: a process, and an object within it."""
    return f"{node}:{os.getpid()}:{secrets.token_hex(4)}"


class QueueDatabase:
    """Transactions on the queue database; one subclass per engine.

    ``transaction`` writes (committed at the end, rolled back on error);
    ``durable=False`` lets a commit skip the wait for the disk, for writes
    that may be lost in a power cut (the caller says why); ``pipelined``
    promises that the block needs no ``rowcount``, so PostgreSQL may send
    its statements and the commit in one round trip (a row fetched in
    between costs one more).
    ``reading`` reads.
    """

    engine: Engine

    def transaction(
        self, *, durable: bool = True, pipelined: bool = False
    ) -> contextlib.AbstractContextManager[SQLConnection]:
        raise NotImplementedError

    def reading(self) -> contextlib.AbstractContextManager[SQLConnection]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class SQLiteDatabase(QueueDatabase):
    """``queue.sqlite3`` (WAL, every durable commit fsynced), shared by threads under a lock.

    ``schema`` creates or upgrades the caller's tables on the new
    connection. With ``separate_reader`` reads go through a second
    connection under a second lock, so a reader never waits for a writer
    holding SQLite's write lock.
    """

    engine: Engine = "sqlite"

    def __init__(
        self,
        path: Path,
        what: str,
        schema: Callable[[Path], sqlite3.Connection] | None = None,
        *,
        separate_reader: bool = False,
    ) -> None:
        self.path = Path(path)
        is_new = not self.path.exists()
        self.conn = schema(self.path) if schema is not None else connect_durable(self.path, what)
        if is_new:
            fsync_dir(self.path.parent)  # the database file's own name
        self.lock = threading.Lock()
        self._read_conn = self.conn
        self._read_lock = self.lock
        if separate_reader:
            self._read_conn = sqlite3.connect(
                self.path, timeout=5.0, isolation_level=None, check_same_thread=False
            )
            self._read_lock = threading.Lock()

    @contextlib.contextmanager
    def transaction(
        self, *, durable: bool = True, pipelined: bool = False
    ) -> Iterator[SQLConnection]:
        if durable:
            with immediate(self.conn, self.lock) as conn:
                yield conn
            return
        with self.lock:
            # NORMAL: the commit is consistent after a crash, durable with
            # the next FULL commit or checkpoint. SQLite changes it only
            # between transactions, hence under our lock, around one.
            self.conn.execute("PRAGMA synchronous=NORMAL")
            try:
                # self.lock is held already: immediate() gets a free one.
                with immediate(self.conn, threading.Lock()) as conn:
                    yield conn
            finally:
                self.conn.execute("PRAGMA synchronous=FULL")

    @contextlib.contextmanager
    def reading(self) -> Iterator[SQLConnection]:
        with self._read_lock:
            yield self._read_conn

    def close(self) -> None:
        with self.lock:
            self.conn.close()
        if self._read_conn is not self.conn:
            with self._read_lock:
                self._read_conn.close()


class PostgresDatabase(QueueDatabase):
    """The cluster database, through this process's shared pool.

    Every transaction is one pooled connection, committed when the block
    ends (``synchronous_commit`` is on for every pooled connection, so a
    durable commit is on the database's disk). The component's tables are
    brought to the version the code knows first (``pgsql.migrate``).
    """

    engine: Engine = "postgresql"

    def __init__(self, pool: Pool, component: str, migrations: Sequence[Sequence[str]]) -> None:
        self.pool = pool
        with pool.connection() as raw:
            raw.commit()  # migrate() wants a connection outside a transaction
            migrate(raw, component, migrations)

    @contextlib.contextmanager
    def transaction(
        self, *, durable: bool = True, pipelined: bool = False
    ) -> Iterator[SQLConnection]:
        with self.pool.connection() as raw:
            if not durable:
                raw.execute("SET LOCAL synchronous_commit TO off")
            if not pipelined:
                yield Connection(raw)
                return
            with raw.pipeline():
                yield Connection(raw)
                raw.commit()  # sent with the statements; one wait for all

    @contextlib.contextmanager
    def reading(self) -> Iterator[SQLConnection]:
        with self.pool.connection() as raw:
            yield Connection(raw)

    def close(self) -> None:
        """Nothing to close: the pool is the process's, shared by every component."""
