"""Idempotency stores: remember which ``webhook-id`` values were handled, for a while.

The receiver claims an id before running the handlers and releases it if a
handler raises, so the sender's retry runs them again; a successful delivery
keeps its claim until the entry expires. The time to live must outlast the
sender's retries and twice the timestamp tolerance (a replayed request is
refused by its old timestamp after that).

Standard library only; every store is safe to share between threads.
"""

from __future__ import annotations

import logging
import math
import re
import secrets
import socket
import sqlite3
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

__all__ = [
    "DEFAULT_TTL",
    "IdempotencyStore",
    "IdempotencyStoreError",
    "MemoryIdempotencyStore",
    "RedisCommandError",
    "RedisIdempotencyStore",
    "RedisProtocolError",
    "RedisStoreError",
    "RedisUnavailableError",
    "SQLiteIdempotencyStore",
]

log = logging.getLogger("mailstead.webhooks.idempotency")

# A day: longer than any replay window (2 x 5 min) and than a sender's
# crash-and-resend, short enough to stay small.
DEFAULT_TTL = 24 * 3600.0


class IdempotencyStore(Protocol):
    """Which webhook ids are taken: ``claim`` is atomic, so of two racing deliveries one wins."""

    def claim(self, webhook_id: str) -> bool:
        """Mark ``webhook_id`` as seen; True if it was not already (the caller handles it)."""
        ...

    def release(self, webhook_id: str) -> None:
        """Forget ``webhook_id`` (its handling failed), so a retry is handled again."""
        ...


class MemoryIdempotencyStore:
    """Ids seen by this process, at most ``max_entries`` (oldest dropped first) for ``ttl`` s.

    Lost on restart and not shared between processes: use
    :class:`SQLiteIdempotencyStore` (or a Redis-compatible one) for several workers.
    """

    def __init__(
        self,
        *,
        ttl: float = DEFAULT_TTL,
        max_entries: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl <= 0 or max_entries <= 0:
            raise ValueError("ttl and max_entries must be positive")
        self._ttl = ttl
        self._max = max_entries
        self._clock = clock
        self._expiry: OrderedDict[str, float] = OrderedDict()  # oldest claim first
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._expiry)

    def claim(self, webhook_id: str) -> bool:
        now = self._clock()
        with self._lock:
            while self._expiry and next(iter(self._expiry.values())) <= now:
                self._expiry.popitem(last=False)
            if webhook_id in self._expiry:
                return False
            self._expiry[webhook_id] = now + self._ttl
            if len(self._expiry) > self._max:
                self._expiry.popitem(last=False)
            return True

    def release(self, webhook_id: str) -> None:
        with self._lock:
            self._expiry.pop(webhook_id, None)


class SQLiteIdempotencyStore:
    """Ids in an SQLite table with an expiry, shared by every process that opens the file."""

    _PURGE_EVERY = 1000  # claims between sweeps of expired rows

    def __init__(
        self,
        path: str | Path,
        *,
        ttl: float = DEFAULT_TTL,
        table: str = "webhook_ids",
        clock: Callable[[], float] = time.time,
    ) -> None:
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        if not table.isidentifier():
            raise ValueError(f"not a table name: {table!r}")
        self._ttl = ttl
        self._table = table
        self._clock = clock
        self._lock = threading.Lock()
        self._claims = 0
        # Autocommit mode: each statement below is its own transaction.
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA busy_timeout = 5000")
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute(
            f"CREATE TABLE IF NOT EXISTS {table} (id TEXT PRIMARY KEY, expires REAL NOT NULL)"
        )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def claim(self, webhook_id: str) -> bool:
        now = self._clock()
        with self._lock:
            self._claims += 1
            if self._claims % self._PURGE_EVERY == 0:
                self._db.execute(f"DELETE FROM {self._table} WHERE expires <= ?", (now,))
            # One statement, so atomic between processes: a new id is inserted,
            # an expired one taken over, a live one left alone (0 rows changed).
            cursor = self._db.execute(
                f"INSERT INTO {self._table} (id, expires) VALUES (?, ?) "
                "ON CONFLICT (id) DO UPDATE SET expires = excluded.expires "
                "WHERE expires <= ?",
                (webhook_id, now + self._ttl, now),
            )
            return cursor.rowcount == 1

    def release(self, webhook_id: str) -> None:
        with self._lock:
            self._db.execute(f"DELETE FROM {self._table} WHERE id = ?", (webhook_id,))


# -- Redis-compatible servers ---------------------------------------------------


class IdempotencyStoreError(Exception):
    """The store could not say whether an id is new: the delivery must be retried."""


class RedisStoreError(IdempotencyStoreError):
    """A Redis-compatible server did not settle a claim or release (the router answers 500)."""


class RedisUnavailableError(RedisStoreError, ConnectionError):
    """The server cannot be reached, or the connection broke again after a reconnect."""


class RedisProtocolError(RedisStoreError):
    """A reply is not the RESP2 expected, or is larger than the bounds below."""


class RedisCommandError(RedisStoreError):
    """The server answered with an error reply, such as a refused AUTH (WRONGPASS, NOAUTH)."""


# Replies are a status, an integer, a token or nil: nothing near these sizes.
_MAX_LINE = 1024
_MAX_BULK = 4096
_INTEGER = re.compile(rb"-?[0-9]{1,19}")

# One round trip, atomic on the server, and safe to send again after a lost
# reply: it deletes the key only while it still holds our token. WATCH/MULTI
# would take three round trips, a retry loop, and per-connection state that a
# reconnect silently drops.
_COMPARE_AND_DELETE = (
    b"if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
)

_Reply = bytes | int | None  # status or bulk string, integer, nil


class _Lost(Exception):
    """The connection broke or timed out after a command went out: its outcome is unknown."""


def _encode(args: tuple[bytes, ...]) -> bytes:
    # RESP2: every command is an array of bulk strings.
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        parts.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(parts)


def _integer(raw: bytes) -> int:
    if not _INTEGER.fullmatch(raw):
        raise RedisProtocolError(f"not a RESP integer: {raw[:40]!r}")
    return int(raw)


class _Connection:
    """One TCP connection: a command out, its reply in, each reply read within bounds."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._in = sock.makefile("rb")

    def close(self) -> None:
        self._in.close()
        self._sock.close()

    def call(self, *args: bytes) -> _Reply:
        try:
            self._sock.sendall(_encode(args))
            return self._reply()
        except OSError as exc:  # reset, broken pipe, timeout
            raise _Lost(str(exc) or type(exc).__name__) from exc

    def _reply(self) -> _Reply:
        line = self._in.readline(_MAX_LINE + 2)
        if not line:
            raise _Lost("the server closed the connection")
        if not line.endswith(b"\r\n"):
            raise RedisProtocolError(f"reply line over {_MAX_LINE} bytes or cut short")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest
        if kind == b"-":
            # The reply was read whole, so the connection stays usable.
            raise RedisCommandError(rest.decode("utf-8", "replace"))
        if kind == b":":
            return _integer(rest)
        if kind == b"$":
            size = _integer(rest)
            if size == -1:
                return None
            if not 0 <= size <= _MAX_BULK:
                raise RedisProtocolError(f"bulk reply of {size} bytes (at most {_MAX_BULK})")
            data = self._in.read(size + 2)
            if len(data) < size + 2:
                raise _Lost("the server closed the connection mid-reply")
            if not data.endswith(b"\r\n"):
                raise RedisProtocolError("bulk reply longer than announced")
            return data[:-2]
        raise RedisProtocolError(f"unexpected reply type {kind!r}")


class RedisIdempotencyStore:
    """Ids as expiring keys in a Redis-compatible server, shared by every worker on every host.

    Speaks RESP2 to Redis, Valkey, KeyDB or Dragonfly over one kept
    connection, one command at a time (a lock), reopened when it breaks.
    A claim is ``SET prefix+id token NX PX ttl`` with a random token per
    claim. If the connection breaks before the reply, the outcome is read
    back on a new one: the key holding our token means the claim is ours,
    another value means a duplicate, no key means the SET never landed and
    it is sent again (same token). ``release`` deletes the key only while it
    holds this store's token (a Lua compare-and-delete), so it never frees
    another worker's claim. A claim that raised or a release that failed may
    have left our token behind; it is compare-and-deleted before this
    store's next command, so the sender's retry is not taken for a duplicate.

    Raises :class:`RedisUnavailableError` when the server cannot be reached,
    :class:`RedisCommandError` when it refuses (a wrong password), and
    :class:`RedisProtocolError` for a malformed or oversized reply.
    """

    _TOKENS_KEPT = 10_000  # our latest winning claims, for release
    _UNSETTLED_KEPT = 1000

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 6379,
        *,
        password: str | None = None,
        db: int = 0,
        prefix: str = "mailstead:webhook-id:",
        ttl: float = DEFAULT_TTL,
        connect_timeout: float = 5.0,
        read_timeout: float = 5.0,
    ) -> None:
        if ttl <= 0 or connect_timeout <= 0 or read_timeout <= 0:
            raise ValueError("ttl and timeouts must be positive")
        if db < 0:
            raise ValueError("db must not be negative")
        self._address = (host, port)
        self._where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self._password = password
        self._db = db
        self._prefix = prefix.encode()
        # PX (milliseconds) rather than EX keeps a fractional ttl exact.
        self._ttl_ms = b"%d" % math.ceil(ttl * 1000)
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._lock = threading.Lock()
        self._conn: _Connection | None = None
        self._tokens: OrderedDict[str, bytes] = OrderedDict()  # oldest first
        self._unsettled: deque[tuple[bytes, bytes]] = deque(maxlen=self._UNSETTLED_KEPT)

    def close(self) -> None:
        with self._lock:
            self._drop()

    def claim(self, webhook_id: str) -> bool:
        key = self._prefix + webhook_id.encode()
        token = secrets.token_hex(16).encode()
        with self._lock:
            self._settle()
            try:
                won = self._claim(key, token)
            except RedisStoreError:
                # The SET may have landed: undo it later, or the sender's
                # retry would find the id taken and never be handled.
                self._unsettled.append((key, token))
                raise
            if won:
                self._tokens.pop(webhook_id, None)
                self._tokens[webhook_id] = token
                if len(self._tokens) > self._TOKENS_KEPT:
                    self._tokens.popitem(last=False)
            return won

    def release(self, webhook_id: str) -> None:
        """Free ``webhook_id`` if this store's claim on it still holds; deferred if unreachable."""
        with self._lock:
            token = self._tokens.pop(webhook_id, None)
            if token is None:
                return  # not claimed here: another worker's claim stays
            key = self._prefix + webhook_id.encode()
            try:
                self._settle()
                self._retrying(b"EVAL", _COMPARE_AND_DELETE, b"1", key, token)
            except RedisStoreError as exc:
                self._unsettled.append((key, token))
                if not isinstance(exc, RedisUnavailableError):
                    raise
                # Not raised: the handler's own exception is the one to report.
                log.warning("webhook %s: release deferred, %s", webhook_id, exc)

    def _claim(self, key: bytes, token: bytes) -> bool:
        set_nx = (b"SET", key, token, b"NX", b"PX", self._ttl_ms)
        try:
            return self._call(*set_nx) == b"OK"  # nil: the key exists
        except _Lost:
            pass
        # The SET went out but its reply did not come back: ask what landed.
        # Were the lost SET applied only after this, it carries our token too.
        held = self._once(b"GET", key)
        if held is None:
            if self._once(*set_nx) == b"OK":
                return True
            held = self._once(b"GET", key)
        return held == token

    def _settle(self) -> None:
        """Compare-and-delete the tokens left in doubt, oldest first, while the connection holds."""
        while self._unsettled:
            key, token = self._unsettled[0]
            try:
                self._call(b"EVAL", _COMPARE_AND_DELETE, b"1", key, token)
            except _Lost:
                return  # the command that follows reconnects; the rest wait
            self._unsettled.popleft()

    def _call(self, *args: bytes) -> _Reply:
        """One command on the kept connection, opened if need be; _Lost if it broke."""
        try:
            if self._conn is None:
                self._conn = self._open()
            return self._conn.call(*args)
        except (_Lost, RedisProtocolError):
            self._drop()  # the stream's position is unknown
            raise

    def _once(self, *args: bytes) -> _Reply:
        """A command after a reconnect: a second broken connection gives up."""
        try:
            return self._call(*args)
        except _Lost as exc:
            raise RedisUnavailableError(f"Redis at {self._where}: connection lost: {exc}") from None

    def _retrying(self, *args: bytes) -> _Reply:
        """An idempotent command, sent again once on a new connection if the first broke."""
        try:
            return self._call(*args)
        except _Lost:
            return self._once(*args)

    def _open(self) -> _Connection:
        try:
            sock = socket.create_connection(self._address, timeout=self._connect_timeout)
        except OSError as exc:
            raise RedisUnavailableError(f"Redis at {self._where} unreachable: {exc}") from None
        sock.settimeout(self._read_timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = _Connection(sock)
        setup: list[tuple[bytes, ...]] = []
        if self._password is not None:
            setup.append((b"AUTH", self._password.encode()))
        if self._db:
            setup.append((b"SELECT", b"%d" % self._db))
        for command in setup:
            try:
                conn.call(*command)
            except _Lost as exc:
                conn.close()
                raise RedisUnavailableError(f"Redis at {self._where}: {exc}") from None
            except RedisCommandError as exc:
                conn.close()
                name = command[0].decode()
                raise RedisCommandError(f"Redis at {self._where} refused {name}: {exc}") from None
            except RedisProtocolError:
                conn.close()
                raise
        return conn

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
