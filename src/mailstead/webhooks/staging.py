"""message.received events as one copy of a delivery transaction, group-committed.

Each message's events must be committed before its 250 and before any
mailbox copy is visible; a delivery that fails takes them back. Concurrent
deliveries share one commit (:class:`GroupStore`). Their deliveries are
held back for :data:`SETTLE` seconds, unless the storing process says the
message is readable (``Outbox.on_emitted``), so a POST never announces a
message a client cannot read yet.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from mailstead.events import Event
from mailstead.webhooks.endpoints import Endpoint

if TYPE_CHECKING:
    from mailstead.webhooks.outbox import Outbox

__all__ = ["SETTLE", "GroupStore", "StagedEvents"]

# How long the deliveries of a message.received are held back: the process
# that stored them hands them to the dispatcher as soon as the message is
# readable; this covers its crash between the two.
SETTLE = 2.0


class StagedEvents:
    """Events as one copy of a delivery transaction (:func:`mailstead.durable.publish_all`).

    :meth:`publish` commits them with their deliveries, before any mailbox
    copy is visible; :meth:`undo` deletes them again (another copy failed:
    the message was not accepted). Their deliveries are held back for
    :data:`SETTLE` seconds; :meth:`close`, once every copy is in, hands
    their ids to the dispatcher (``on_emitted``), which may send them at
    once. So a POST never announces a message that is not readable yet, and
    if this process dies first the dispatcher sends them after the hold.
    """

    def __init__(self, outbox: Outbox, events: Sequence[Event]) -> None:
        self._outbox = outbox
        self._events = events
        self._ids: list[str] = []

    def publish(self) -> None:
        outbox = self._outbox
        endpoints = outbox.endpoints.active()  # never under the write lock
        self._ids = outbox._staging.store(self._events, endpoints)

    def undo(self) -> None:
        if self._ids:
            with self._outbox._transaction() as conn:
                conn.executemany(
                    "DELETE FROM webhook_events WHERE id = ?", [(e.id,) for e in self._events]
                )
            self._ids = []

    def close(self) -> None:
        ids, self._ids = self._ids, []
        if ids and self._outbox.on_emitted is not None:
            self._outbox.on_emitted(ids)


class _Waiter:
    """One StagedEvents.publish waiting for the transaction that stores its events."""

    __slots__ = ("endpoints", "error", "events", "ids", "stored")

    def __init__(self, events: Sequence[Event], endpoints: Sequence[Endpoint]) -> None:
        self.events = events
        self.endpoints = endpoints
        self.ids: list[str] = []
        self.stored = False
        self.error: BaseException | None = None


class GroupStore:
    """Stores the staged events of concurrent deliveries in one transaction (group commit).

    Each message's events must be committed before its 250, one fsync each
    if done alone; deliveries arriving while a commit runs join the next
    one, which one of them runs, so N concurrent messages cost about two
    commits instead of N (as durable.DirectorySyncer does for directories).
    If that commit fails, every message in it fails (and is answered 451).
    """

    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox
        self._cond = threading.Condition(threading.Lock())
        self._running = False
        self._waiting: list[_Waiter] = []

    def store(self, events: Sequence[Event], endpoints: Sequence[Endpoint]) -> list[str]:
        waiter = _Waiter(events, endpoints)
        with self._cond:
            self._waiting.append(waiter)
            while self._running and not waiter.stored:
                self._cond.wait()
            if not waiter.stored:  # nobody took it: lead the next commit
                self._running = True
                batch, self._waiting = self._waiting, []
        if not waiter.stored:
            self._commit(batch)
        if waiter.error is not None:
            # One exception object per thread: the leader's is shared by all.
            raise OSError(f"storing webhook events failed: {waiter.error}") from waiter.error
        return waiter.ids

    def _commit(self, batch: list[_Waiter]) -> None:
        outbox = self._outbox
        error: BaseException | None = None
        try:
            with outbox._transaction() as conn:
                for w in batch:
                    w.ids = outbox._store(conn, w.events, w.endpoints, hold=SETTLE)
        except BaseException as exc:
            error = exc
        finally:
            with self._cond:
                for w in batch:
                    w.stored = True
                    w.error = error
                    if error is not None:
                        w.ids = []
                self._running = False
                self._cond.notify_all()
