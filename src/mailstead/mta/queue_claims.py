"""Which node delivers which queued message, when nodes share one queue (PostgreSQL).

Every pass of a node's outbound engine asks the queue for what is due
(``Queue.due``); with PostgreSQL that *claims* the messages for the asking
queue until a lease ends, in the same transaction:

1. the messages the engine is still delivering (its ``skip``) keep their
   claims for another lease;
2. up to N due messages that nobody holds, or whose lease ran out (their
   node died or stalled), or that this queue holds already, are claimed;
3. every other claim of this queue is handed back: the engine is done with
   it, and any node may take it at once.

A node that stops hands every claim back (:meth:`Claims.release`); one that
dies loses them when the lease ends (``[limits] queue_lease``, default
``limits.QueueLimits.lease``), and another node retries those messages,
unless the node itself starts again first and frees them
(:meth:`Claims.release_node`). The times are the engines' clocks, so
nodes' clocks must agree (NTP): a skew shortens or lengthens a lease by
as much. SQLite has one node and claims nothing: its workers split the
queue by id (``Outbound.shard``).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from mailstead.mta.queue_db import SQLConnection

__all__ = ["OPEN", "Claims"]

#: A recipient still to be delivered.
OPEN = "state IN ('pending', 'deferred')"

# Take up to N due messages nobody else holds, for this queue, until the
# lease ends. A row another node is claiming right now is locked: SKIP
# LOCKED passes over it instead of waiting, and READ COMMITTED re-checks the
# claim of a row that changed meanwhile, so two nodes never both take one
# message. Ours (claimed_by = this queue) may be taken again.
_CLAIM = (
    "UPDATE messages SET claimed_by = ?, lease_until = ? WHERE id IN ("
    " SELECT m.id FROM messages m WHERE m.held_at IS NULL AND NOT (m.id = ANY(?::text[]))"
    " AND (m.claimed_by IS NULL OR m.claimed_by = ? OR m.lease_until <= ?)"
    " AND EXISTS (SELECT 1 FROM recipients r WHERE r.message_id = m.id"
    f" AND r.{OPEN} AND r.next_attempt <= ?)"
    " ORDER BY m.id LIMIT ? FOR UPDATE SKIP LOCKED)"
    " RETURNING id"
)


class Claims:
    """The claims of one queue object (``holder``: node, process, object) on PostgreSQL."""

    def __init__(self, holder: str, lease: float) -> None:
        self.holder = holder
        self.lease = lease
        #: Whether anything was ever claimed: before, there is nothing to hand back.
        self.used = False

    def take(self, conn: SQLConnection, now: float, limit: int, busy: Collection[str]) -> list[str]:
        """Renew the claims on ``busy``, claim up to ``limit`` more, free the rest; the new ids."""
        keep = list(busy)
        until = now + self.lease
        self.used = True
        if keep:
            conn.execute(
                "UPDATE messages SET lease_until = ? WHERE claimed_by = ? AND id = ANY(?::text[])",
                (until, self.holder, keep),
            )
        ids = [
            str(row[0])
            for row in conn.execute(
                _CLAIM, (self.holder, until, keep, self.holder, now, now, limit)
            ).fetchall()
        ]
        self.release(conn, keep=keep + ids)
        return sorted(ids)

    @staticmethod
    def release_node(conn: SQLConnection, node: str) -> int:
        """Hand back every claim of every queue of ``node``; how many.

        Only for ``serve`` starting, before its workers: then none of the
        node's queues is alive (the data directory's lock keeps a second
        ``serve`` out), and what a killed one held need not wait for its lease.
        """
        return conn.execute(
            "UPDATE messages SET claimed_by = NULL, lease_until = NULL"
            " WHERE starts_with(claimed_by, ?)",
            (f"{node}:",),
        ).rowcount

    def release(self, conn: SQLConnection, keep: Sequence[str] = ()) -> int:
        """Hand back every claim of this queue but those on ``keep``; how many."""
        return conn.execute(
            "UPDATE messages SET claimed_by = NULL, lease_until = NULL"
            " WHERE claimed_by = ? AND NOT (id = ANY(?::text[]))",
            (self.holder, list(keep)),
        ).rowcount
