"""The webhook outbox: endpoints, events and their deliveries, durable in the queue database.

The tables live in the queue's database (``<data_dir>/queue.sqlite3``, or
the cluster's PostgreSQL database with ``[storage] backend =
"postgresql"``; :mod:`mailstead.mta.queue_db`), so an event the queue
reports (message.queued, message.delivered, …) commits in the same
transaction as the queue change itself (:meth:`Outbox.emit_in`). Other
events commit on their own, right after the change they report
(:meth:`Outbox.emit`). Either way a crash may repeat an event's delivery,
never lose one.

An event is stored once (its JSON payload) and fanned out at once into one
*delivery* per subscribed endpoint. The dispatcher (``dispatcher.py``)
claims due deliveries with a lease, so with several worker processes, and
with PostgreSQL several nodes, each delivery is attempted by one of them
at a time (PostgreSQL claims with ``FOR UPDATE SKIP LOCKED``); a worker
that dies mid-POST leaves a lease that runs out, and the delivery is tried
again. ``webhook-id`` is the delivery's id: the same on every retry, new on
a replay.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from mailstead.config import Config
from mailstead.events import Event
from mailstead.mta.queue_db import (
    DatabaseError,
    PostgresDatabase,
    QueueDatabase,
    SQLConnection,
    SQLiteDatabase,
    node_name,
)
from mailstead.pgsql.connect import shared_pool
from mailstead.webhooks.endpoints import Endpoint, EndpointRegistry

# Attempted, Claimed, EndpointGone, new_delivery_id: re-exported for the
# dispatcher and the CLI, which know them as the outbox's.
from mailstead.webhooks.outbox_records import Attempted as Attempted
from mailstead.webhooks.outbox_records import Claimed as Claimed
from mailstead.webhooks.outbox_records import DeliveryRecord, DeliveryState, Stored, completed
from mailstead.webhooks.outbox_records import EndpointGone as EndpointGone
from mailstead.webhooks.outbox_records import new_delivery_id as new_delivery_id
from mailstead.webhooks.outbox_schema import POSTGRES_MIGRATIONS, open_outbox_database
from mailstead.webhooks.received_uids import UidTeller, with_uid, with_uid_fields
from mailstead.webhooks.staging import GroupStore, StagedEvents

__all__ = ["Outbox", "connect_outbox"]

log = logging.getLogger("mailstead.webhooks")


def _marks(values: Sequence[object]) -> str:
    """``?, ?, …``: one placeholder per value, for ``IN (…)`` on either engine."""
    return ", ".join("?" * len(values))


def connect_outbox(config: Config) -> Outbox:
    """The webhook outbox of ``config``: in the queue's SQLite database or the cluster's."""
    if config.storage.backend == "postgresql":
        database = PostgresDatabase(shared_pool(config.storage.dsn), "outbox", POSTGRES_MIGRATIONS)
        return Outbox(database=database, node=node_name(config.data_dir))
    return Outbox(config.data_dir / "queue.sqlite3")


class Outbox:
    """Owns the webhook tables of the queue database; safe to share between threads.

    ``on_emitted`` is called (from the emitting thread) after events were
    stored, with the ids of held-back deliveries that may be sent at once
    (see :class:`StagedEvents`), so the dispatcher can start at once.

    ``db_path`` names the SQLite database; ``database`` is another (the
    cluster's PostgreSQL database), where ``node`` names this node in its
    leases. With SQLite, writes go through one connection under one lock;
    reads (the endpoint list, listings, :meth:`next_due`) through another,
    so a reader never waits for a writer that holds SQLite's write lock,
    nor a writer for a reader.
    """

    def __init__(
        self,
        db_path: Path | None = None,
        *,
        database: QueueDatabase | None = None,
        node: str = "local",
        on_emitted: Callable[[Sequence[str]], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if database is None:
            if db_path is None:
                raise ValueError("an outbox needs a database")
            database = SQLiteDatabase(
                Path(db_path), "webhook outbox", open_outbox_database, separate_reader=True
            )
        self._db = database
        self.node = node
        self.on_emitted = on_emitted
        self._clock = clock
        self.endpoints = EndpointRegistry(self._transaction, self._db.reading, clock=clock)
        self._staging = GroupStore(self)
        self._uids = UidTeller(database.pool if isinstance(database, PostgresDatabase) else None)

    def close(self) -> None:
        self._db.close()
        self._uids.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _transaction(self) -> contextlib.AbstractContextManager[SQLConnection]:
        return self._db.transaction()

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

    def emit_in(self, conn: SQLConnection, events: Sequence[Event]) -> bool:
        endpoints = self.endpoints.active(conn)
        return bool(events and endpoints and self._store(conn, events, endpoints))

    def committed(self) -> None:
        if self.on_emitted is not None:
            self.on_emitted(())

    def _store(
        self,
        conn: SQLConnection,
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
                "INSERT INTO webhook_events (id, type, account, domain, created_at, payload,"
                " raw_message, body_limit, stored_as) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT DO NOTHING",
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
            " WHERE e.endpoint_id = d.endpoint_id"
            " AND (e.account = d.account OR (e.account IS NULL AND d.account IS NULL))"
            " AND e.state = 'pending' AND e.seq < d.seq)"
            if endpoint.ordered
            else ""
        )
        due = f"d.id IN ({_marks(only)})" if only else "d.next_attempt <= ?"
        # PostgreSQL: nodes claim at once; a row another is claiming is
        # passed over, and one it claimed meanwhile fails the lease test
        # when re-read (READ COMMITTED), so one delivery goes to one node.
        # SQLite: BEGIN IMMEDIATE already lets one claim run at a time.
        lock = " FOR UPDATE OF d SKIP LOCKED" if self._db.engine == "postgresql" else ""
        # Not durable (no fsync of its own): a lease lost in a crash only lets
        # the delivery be sent again, and serve frees every lease at start anyway.
        with self._db.transaction(durable=False) as conn:
            rows = conn.execute(
                "SELECT d.id, d.event_id, d.attempts FROM webhook_deliveries d"
                " WHERE d.endpoint_id = ? AND d.state = 'pending' AND d.lease_until <= ?"
                f" AND {due}{order_rule} ORDER BY d.seq LIMIT ?{lock}",
                (endpoint.id, now, *(only if only else (now,)), limit),
            ).fetchall()
            if not rows:
                return []
            conn.executemany(
                "UPDATE webhook_deliveries SET lease_until = ?, leased_by = ? WHERE id = ?",
                [(now + lease, self.node, r[0]) for r in rows],
            )
            event_ids = sorted({str(r[1]) for r in rows})
            events = {
                str(e[0]): Stored(str(e[1]), bytes(e[2]), _bytes(e[3]), e[4], e[5])
                for e in conn.execute(
                    "SELECT id, type, payload, raw_message, body_limit, stored_as"
                    f" FROM webhook_events WHERE id IN ({_marks(event_ids)})",
                    event_ids,
                )
            }
        # Outside the lock: telling UIDs and summarising are the costly parts.
        payloads = self._complete(events)
        return [
            Claimed(r[0], r[1], events[r[1]].type, endpoint, r[2], payloads[r[1]]) for r in rows
        ]

    def _complete(self, events: dict[str, Stored]) -> dict[str, bytes]:
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
        return {i: completed(payloads[i], e.raw_message, e.body_limit) for i, e in events.items()}

    def _pin(self, pinned: Sequence[tuple[bytes, str]]) -> None:
        """Keep told UIDs in the stored payloads, without an fsync of its own.

        Lost in a crash, a UID is told again from the index: the same one,
        unless the message was expunged meanwhile (then none).
        """
        try:
            with self._db.transaction(durable=False) as conn:
                conn.executemany(
                    "UPDATE webhook_events SET payload = ?, stored_as = NULL WHERE id = ?", pinned
                )
        except DatabaseError as exc:
            log.warning("keeping told UIDs in the outbox failed: %s", exc)

    def next_due(self) -> float | None:
        """When the earliest pending, unleased delivery of an enabled endpoint is due."""
        enabled = [e.id for e in self.endpoints.active()]
        if not enabled:
            return None
        with self._db.reading() as conn:
            row = conn.execute(
                "SELECT next_attempt FROM webhook_deliveries WHERE state = 'pending'"
                f" AND lease_until <= ? AND endpoint_id IN ({_marks(enabled)})"
                " ORDER BY next_attempt LIMIT 1",
                (self._clock(), *enabled),
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
                    "INSERT INTO webhook_attempts (delivery_id, attempt, at, status, error,"
                    " elapsed, response) VALUES (?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (delivery_id, attempt) DO UPDATE SET at = excluded.at,"
                    " status = excluded.status, error = excluded.error,"
                    " elapsed = excluded.elapsed, response = excluded.response",
                    (a.claimed.id, attempt, now, a.status, a.error, a.elapsed, a.response),
                )
                conn.execute(
                    "UPDATE webhook_deliveries SET state = ?, attempts = ?, next_attempt = ?,"
                    " lease_until = 0, leased_by = NULL, last_status = ?, last_error = ?,"
                    " finished_at = ? WHERE id = ?",
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
        with self._db.reading() as conn:
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
        """Free the leases of this node's dispatcher: for ``serve`` starting, when it holds none.

        A dispatcher killed mid-POST leaves its leases set; without this its
        deliveries would wait for the leases to run out after a restart.
        With SQLite this node is the only one, so every lease is freed; with
        PostgreSQL only those this node (``node``) took: the other nodes'
        dispatchers are alive and sending theirs.
        """
        mine = " AND leased_by = ?" if self._db.engine == "postgresql" else ""
        with self._transaction() as conn:
            return conn.execute(
                "UPDATE webhook_deliveries SET lease_until = 0, leased_by = NULL"
                f" WHERE state = 'pending' AND lease_until > 0{mine}",
                (self.node,) if mine else (),
            ).rowcount


def _bytes(value: object) -> bytes | None:
    """A nullable BLOB/bytea column as bytes."""
    return None if value is None else bytes(value)  # type: ignore[call-overload]
