"""The webhook outbox: endpoints, events and their deliveries, durable in SQLite.

The tables live in the queue's database (``<data_dir>/queue.sqlite3``), so
an event the queue reports (message.queued, message.delivered, …) commits
in the same transaction as the queue change itself (:meth:`Outbox.emit_in`).
Other events commit on their own, right after the change they report
(:meth:`Outbox.emit`). Either way a crash may repeat an event's delivery,
never lose one.

An event is stored once (its JSON payload) and fanned out at once into one
*delivery* per subscribed endpoint. The dispatcher (``dispatcher.py``)
claims due deliveries with a lease, so with several worker processes each
delivery is attempted by one of them at a time; a worker that dies mid-POST
leaves a lease that runs out, and the delivery is tried again.
``webhook-id`` is the delivery's id: the same on every retry, new on a
replay.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import logging
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from mailstead.durable import fsync_dir
from mailstead.events import Event
from mailstead.message.summary import message_summary
from mailstead.sqlite_wal import connect_durable, immediate
from mailstead.webhooks.endpoints import Endpoint, EndpointRegistry
from mailstead.webhooks.received_uids import UidTeller, with_uid, with_uid_fields
from mailstead.webhooks.staging import GroupStore, StagedEvents

log = logging.getLogger("mailstead.webhooks")

DeliveryState = Literal["pending", "succeeded", "failed"]

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


def new_delivery_id() -> str:
    """``msg_`` + microseconds (hex) + random bits: the webhook-id of one delivery."""
    return f"msg_{time.time_ns() // 1000:014x}{secrets.token_hex(6)}"


class EndpointGone(LookupError):
    """The delivery's endpoint was deleted: there is nowhere to send it again."""


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery a dispatcher holds the lease on: what to POST, where, signed how."""

    id: str
    event_id: str
    event_type: str
    endpoint: Endpoint
    attempts: int  # before this one
    payload: bytes


@dataclass(frozen=True, slots=True)
class Attempted:
    """The outcome of one POST of a claimed delivery, to be recorded.

    ``next_attempt`` None and not ``succeeded``: given up. ``disable_reason``
    disables the endpoint too (a 410 Gone).
    """

    claimed: Claimed
    status: int | None
    error: str | None
    elapsed: float
    response: str | None
    next_attempt: float | None
    succeeded: bool
    disable_reason: str | None = None


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    """One delivery as `webhook deliveries` lists it."""

    id: str
    event_id: str
    event_type: str
    endpoint_id: str
    url: str
    state: DeliveryState
    attempts: int
    next_attempt: float
    last_status: int | None
    last_error: str | None
    created_at: float
    finished_at: float | None

    def as_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "event_id": self.event_id,
            "event_type": self.event_type,
            "endpoint_id": self.endpoint_id,
            "url": self.url,
            "state": self.state,
            "attempts": self.attempts,
            "next_attempt": self.next_attempt if self.state == "pending" else None,
            "last_status": self.last_status,
            "last_error": self.last_error,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
        }


class Outbox:
    """Owns the webhook tables of the queue database; safe to share between threads.

    ``on_emitted`` is called (from the emitting thread) after events were
    stored, with the ids of held-back deliveries that may be sent at once
    (see :class:`StagedEvents`), so the dispatcher can start at once.

    Writes go through one connection under one lock; reads (the endpoint
    list, listings, :meth:`next_due`) through another, so a reader never
    waits for a writer that holds SQLite's write lock, nor a writer for a
    reader.
    """

    def __init__(
        self,
        db_path: Path,
        *,
        on_emitted: Callable[[Sequence[str]], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db_path = Path(db_path)
        self.on_emitted = on_emitted
        self._clock = clock
        self._lock = threading.Lock()
        self._conn = self._connect()
        self._read_lock = threading.Lock()
        self._read_conn = sqlite3.connect(
            self.db_path, timeout=5.0, isolation_level=None, check_same_thread=False
        )
        self.endpoints = EndpointRegistry(self._transaction, self._reading, clock=clock)
        self._staging = GroupStore(self)
        self._uids = UidTeller()

    def _connect(self) -> sqlite3.Connection:
        is_new = not self.db_path.exists()
        conn = connect_durable(self.db_path, "webhook outbox")
        try:
            conn.executescript(f"BEGIN IMMEDIATE; {_SCHEMA} COMMIT;")
            _add_missing_columns(conn)
        except BaseException:
            conn.close()
            raise
        if is_new:
            fsync_dir(self.db_path.parent)
        return conn

    def close(self) -> None:
        with self._lock:
            self._conn.close()
        with self._read_lock:
            self._read_conn.close()
        self._uids.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _transaction(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return immediate(self._conn, self._lock)

    @contextlib.contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        with self._read_lock:
            yield self._read_conn

    # -- the event sink (mailstead.events.EventSink) ----------------------------

    def wants(self, event_type: str) -> bool:
        return any(e.subscribes(event_type) for e in self.endpoints.active())

    def emit(self, events: Sequence[Event]) -> None:
        endpoints = self.endpoints.active()  # never under the write lock
        if not events or not endpoints:
            return
        with self._transaction() as conn:
            stored = self._store(conn, events, endpoints)
        if stored and self.on_emitted is not None:
            self.on_emitted(())

    def stage(self, events: Sequence[Event]) -> StagedEvents:
        return StagedEvents(self, events)

    def emit_in(self, conn: sqlite3.Connection, events: Sequence[Event]) -> bool:
        endpoints = self.endpoints.active()
        return bool(events and endpoints and self._store(conn, events, endpoints))

    def committed(self) -> None:
        if self.on_emitted is not None:
            self.on_emitted(())

    def _store(
        self,
        conn: sqlite3.Connection,
        events: Sequence[Event],
        endpoints: Sequence[Endpoint],
        *,
        hold: float = 0.0,
    ) -> list[str]:
        """Insert each event some endpoint wants, with one delivery per endpoint; their ids.

        ``hold``: the deliveries are not due for that long (unless named in ``claim(only=)``).
        """
        now = self._clock()
        stored: list[str] = []
        for event in events:
            targets = [e for e in endpoints if e.receives(event)]
            if not targets:
                continue
            document = event.payload()
            if event.type == "message.received":
                document["data"] = with_uid_fields(document["data"])
            body = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
            conn.execute(
                "INSERT OR IGNORE INTO webhook_events (id, type, account, domain, created_at,"
                " payload, raw_message, body_limit, stored_as) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    event.id,
                    event.type,
                    event.account,
                    event.domain,
                    now,
                    body.encode(),
                    event.raw_message,
                    event.body_limit if event.raw_message is not None else None,
                    event.stored_as,
                ),
            )
            ids = [new_delivery_id() for _ in targets]
            conn.executemany(
                "INSERT INTO webhook_deliveries (id, event_id, endpoint_id, account,"
                " next_attempt, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (i, event.id, e.id, event.account, now + hold, now)
                    for i, e in zip(ids, targets, strict=True)
                ],
            )
            stored += ids
        return stored

    # -- the dispatcher's side ---------------------------------------------------

    def claim(
        self,
        endpoint: Endpoint,
        limit: int,
        lease: float,
        *,
        only: Sequence[str] = (),
    ) -> list[Claimed]:
        """Up to ``limit`` due deliveries to ``endpoint``, leased for ``lease`` seconds.

        For an ordered endpoint only the oldest pending delivery of each
        account is due, and only while no other of its account is leased.
        ``only``: just these deliveries, due or held back (handed over by
        ``on_emitted``, see :class:`StagedEvents`).
        """
        if limit <= 0:
            return []
        now = self._clock()
        order_rule = (
            " AND NOT EXISTS (SELECT 1 FROM webhook_deliveries e"
            " WHERE e.endpoint_id = d.endpoint_id AND e.account IS d.account"
            " AND e.state = 'pending' AND e.seq < d.seq)"
            if endpoint.ordered
            else ""
        )
        due = "d.id IN (SELECT value FROM json_each(?))" if only else "d.next_attempt <= ?"
        with self._transaction() as conn:
            rows = conn.execute(
                "SELECT d.id, d.event_id, d.attempts FROM webhook_deliveries d"
                " WHERE d.endpoint_id = ? AND d.state = 'pending' AND d.lease_until <= ?"
                f" AND {due}{order_rule} ORDER BY d.seq LIMIT ?",
                (endpoint.id, now, json.dumps(list(only)) if only else now, limit),
            ).fetchall()
            if not rows:
                return []
            conn.executemany(
                "UPDATE webhook_deliveries SET lease_until = ? WHERE id = ?",
                [(now + lease, r[0]) for r in rows],
            )
            events = {
                str(e[0]): _Stored(str(e[1]), bytes(e[2]), e[3], e[4], e[5])
                for e in conn.execute(
                    "SELECT id, type, payload, raw_message, body_limit, stored_as"
                    " FROM webhook_events WHERE id IN (SELECT value FROM json_each(?))",
                    (json.dumps(sorted({r[1] for r in rows})),),
                )
            }
        # Outside the lock: telling UIDs and summarising are the costly parts.
        payloads = self._complete(events)
        return [
            Claimed(r[0], r[1], events[r[1]].type, endpoint, r[2], payloads[r[1]]) for r in rows
        ]

    def _complete(self, events: dict[str, _Stored]) -> dict[str, bytes]:
        """The JSON body of each event: its copy's UID told, its message summarised.

        A UID, once told, is written into the stored payload, so every later
        attempt and replay says the same, even after the message is gone.
        """
        payloads = {i: e.payload for i, e in events.items()}
        # Those not told (not there yet, or gone) are asked again next attempt.
        told = self._uids.tell({i: e.stored_as for i, e in events.items() if e.stored_as})
        for i, uid in told.items():
            payloads[i] = with_uid(payloads[i], uid)
        if told:
            self._pin([(payloads[i], i) for i in told])
        return {i: _completed(payloads[i], e.raw_message, e.body_limit) for i, e in events.items()}

    def _pin(self, pinned: Sequence[tuple[bytes, str]]) -> None:
        """Keep told UIDs in the stored payloads, without an fsync of its own.

        Lost in a crash, a UID is told again from the index: the same one,
        unless the message was expunged meanwhile (then none).
        """
        conn = self._conn
        with self._lock:
            try:
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(
                    "UPDATE webhook_events SET payload = ?, stored_as = NULL WHERE id = ?", pinned
                )
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                log.warning("keeping told UIDs in the outbox failed: %s", exc)
            finally:
                conn.execute("PRAGMA synchronous=FULL")

    def next_due(self) -> float | None:
        """When the earliest pending, unleased delivery of an enabled endpoint is due."""
        enabled = [e.id for e in self.endpoints.active()]
        if not enabled:
            return None
        with self._reading() as conn:
            row = conn.execute(
                "SELECT next_attempt FROM webhook_deliveries WHERE state = 'pending'"
                " AND lease_until <= ? AND endpoint_id IN (SELECT value FROM json_each(?))"
                " ORDER BY next_attempt LIMIT 1",
                (self._clock(), json.dumps(enabled)),
            ).fetchone()
        return None if row is None else float(row[0])

    def record(self, attempted: Sequence[Attempted]) -> None:
        """Log the attempts and move each delivery on (done, failed, or due again), in one commit.

        The dispatcher records the POSTs that end together in one batch: one
        fsync for many deliveries.
        """
        now = self._clock()
        with self._transaction() as conn:
            for a in attempted:
                attempt = a.claimed.attempts + 1
                state: DeliveryState = (
                    "succeeded"
                    if a.succeeded
                    else ("pending" if a.next_attempt is not None else "failed")
                )
                conn.execute(
                    "INSERT OR REPLACE INTO webhook_attempts (delivery_id, attempt, at, status,"
                    " error, elapsed, response) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (a.claimed.id, attempt, now, a.status, a.error, a.elapsed, a.response),
                )
                conn.execute(
                    "UPDATE webhook_deliveries SET state = ?, attempts = ?, next_attempt = ?,"
                    " lease_until = 0, last_status = ?, last_error = ?, finished_at = ?"
                    " WHERE id = ?",
                    (
                        state,
                        attempt,
                        a.next_attempt if a.next_attempt is not None else now,
                        a.status,
                        a.error,
                        None if state == "pending" else now,
                        a.claimed.id,
                    ),
                )
                if a.disable_reason is not None:
                    self.endpoints.disable_in(conn, a.claimed.endpoint.id, a.disable_reason)

    # -- inspection and replay -----------------------------------------------------

    def deliveries(
        self,
        *,
        state: DeliveryState | None = None,
        since: float | None = None,
        limit: int = 1000,
    ) -> builtins.list[DeliveryRecord]:
        """The most recent deliveries first, optionally only those in ``state`` since ``since``."""
        where: builtins.list[str] = ["1 = 1"]
        args: builtins.list[object] = []
        if state is not None:
            where.append("d.state = ?")
            args.append(state)
        if since is not None:
            where.append("d.created_at >= ?")
            args.append(since)
        with self._reading() as conn:
            rows = conn.execute(
                "SELECT d.id, d.event_id, v.type, d.endpoint_id, COALESCE(p.url, ''), d.state,"
                " d.attempts, d.next_attempt, d.last_status, d.last_error, d.created_at,"
                " d.finished_at FROM webhook_deliveries d"
                " JOIN webhook_events v ON v.id = d.event_id"
                " LEFT JOIN webhook_endpoints p ON p.id = d.endpoint_id"
                f" WHERE {' AND '.join(where)} ORDER BY d.seq DESC LIMIT ?",
                (*args, limit),
            ).fetchall()
        return [DeliveryRecord(*r) for r in rows]

    def replay(self, delivery_id: str) -> str:
        """Deliver the event of ``delivery_id`` to its endpoint again, under a new webhook-id.

        A new id, so a receiver that deduplicates by webhook-id handles it
        again (the event's own ``id`` in the payload stays the same).
        Returns the new delivery's id; KeyError if there is no such delivery,
        :class:`EndpointGone` if its endpoint was deleted since.
        """
        now = self._clock()
        with self._transaction() as conn:
            row = conn.execute(
                "SELECT d.event_id, d.endpoint_id, d.account, p.id FROM webhook_deliveries d"
                " LEFT JOIN webhook_endpoints p ON p.id = d.endpoint_id WHERE d.id = ?",
                (delivery_id,),
            ).fetchone()
            if row is None:
                raise KeyError(delivery_id)
            if row[3] is None:
                raise EndpointGone(f"{delivery_id}: its endpoint {row[1]} no longer exists")
            new_id = new_delivery_id()
            conn.execute(
                "INSERT INTO webhook_deliveries (id, event_id, endpoint_id, account,"
                " next_attempt, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (new_id, row[0], row[1], row[2], now, now),
            )
        if self.on_emitted is not None:
            self.on_emitted(())
        return new_id

    def replay_failed(self, since: float | None = None) -> builtins.list[str]:
        """Replay every failed delivery (created since ``since``) whose endpoint
        still exists; the new ids."""
        live = {e.id for e in self.endpoints.list()}
        failed = self.deliveries(state="failed", since=since)
        return [self.replay(d.id) for d in failed if d.endpoint_id in live]

    def release_leases(self) -> int:
        """Free every lease: for ``serve`` starting, when no worker can hold one.

        A worker killed mid-POST leaves its lease set; without this its
        delivery would wait for the lease to run out after a restart.
        """
        with self._transaction() as conn:
            return conn.execute(
                "UPDATE webhook_deliveries SET lease_until = 0"
                " WHERE state = 'pending' AND lease_until > 0"
            ).rowcount


def _add_missing_columns(conn: sqlite3.Connection) -> None:
    """Bring an outbox made by an older version up to the schema (ALTER TABLE ADD COLUMN)."""
    have = {row[1] for row in conn.execute("PRAGMA table_info(webhook_events)")}
    for column, kind in (("raw_message", "BLOB"), ("body_limit", "INTEGER"), ("stored_as", "TEXT")):
        if column not in have:
            conn.execute(f"ALTER TABLE webhook_events ADD COLUMN {column} {kind}")


@dataclass(frozen=True, slots=True)
class _Stored:
    """An event's row, as a claim reads it."""

    type: str
    payload: bytes
    raw_message: bytes | None
    body_limit: int | None
    stored_as: str | None


def _completed(payload: bytes, raw_message: bytes | None, body_limit: int | None) -> bytes:
    """The JSON body to send: with ``data.message`` summarised from the stored message."""
    if raw_message is None:
        return payload
    document = json.loads(payload)
    document["data"]["message"] = message_summary(
        bytes(raw_message), max_body_bytes=body_limit or 0
    )
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
