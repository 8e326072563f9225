"""The webhooks' part of a migration: endpoints, events, deliveries and their attempts.

Copied in one transaction with the webhooks' progress row. A delivery's
claim (``lease_until``, ``leased_by``) names a dispatcher of the old node
and is left behind: a pending delivery is free for the cluster's
dispatchers at once. Deliveries keep their creation order (the order an
``ordered`` endpoint sends them in).
"""

from __future__ import annotations

from mailstead.migrate.tables import Table, insert_rows, read_rows
from mailstead.migrate.verify import rows_line
from mailstead.sqlconn import Row, SQLConnection

__all__ = ["TABLES", "copy_webhooks", "endpoint_ids", "webhooks_line"]

ENDPOINTS = Table(
    "webhook_endpoints",
    (
        ("id", "text"),
        ("url", "text"),
        ("events", "text"),
        ("secrets", "text"),
        ("domain", "text"),
        ("account", "text"),
        ("ordered", "int"),
        ("enabled", "int"),
        ("disabled_reason", "text"),
        ("source", "text"),
        ("created_at", "real"),
    ),
    "id",
)
EVENTS = Table(
    "webhook_events",
    (
        ("id", "text"),
        ("type", "text"),
        ("account", "text"),
        ("domain", "text"),
        ("created_at", "real"),
        ("payload", "blob"),
        ("raw_message", "blob"),
        ("body_limit", "int"),
        ("stored_as", "text"),
    ),
    "id",
)
DELIVERIES = Table(
    "webhook_deliveries",
    (
        ("id", "text"),
        ("event_id", "text"),
        ("endpoint_id", "text"),
        ("account", "text"),
        ("state", "text"),
        ("attempts", "int"),
        ("next_attempt", "real"),
        ("last_status", "int"),
        ("last_error", "text"),
        ("created_at", "real"),
        ("finished_at", "real"),
    ),
    "seq",
)
ATTEMPTS = Table(
    "webhook_attempts",
    (
        ("delivery_id", "text"),
        ("attempt", "int"),
        ("at", "real"),
        ("status", "int"),
        ("error", "text"),
        ("elapsed", "real"),
        ("response", "text"),
    ),
    "delivery_id, attempt",
)
TABLES = (ENDPOINTS, EVENTS, DELIVERIES, ATTEMPTS)


def endpoint_ids(conn: SQLConnection, source: str = "") -> set[str]:
    """The endpoints' ids; only those made by ``source`` (``cli``, ``config``) if given."""
    rows = conn.execute("SELECT id, source FROM webhook_endpoints")
    return {str(i) for i, made_by in rows if not source or made_by == source}


def copy_webhooks(source: SQLConnection, target: SQLConnection) -> int:
    """Insert every endpoint, event, delivery and attempt; how many endpoints.

    An endpoint from the configuration that a node of the cluster has
    already stored (same id) is left as it is: the configuration owns it.
    """
    present = endpoint_ids(target)
    endpoints = [r for r in read_rows(source, ENDPOINTS) if r[0] not in present]
    insert_rows(target, ENDPOINTS, endpoints)
    for table in (EVENTS, DELIVERIES, ATTEMPTS):
        insert_rows(target, table, read_rows(source, table))
    return len(endpoints)


def webhooks_line(conn: SQLConnection, endpoints: set[str] | None = None) -> str:
    """The webhooks described, limited to the ``endpoints`` (ids) if given; pending
    deliveries are counted apart (they are what the cluster will send)."""
    found = [r for r in read_rows(conn, ENDPOINTS) if endpoints is None or r[0] in endpoints]
    deliveries = [r for r in read_rows(conn, DELIVERIES) if endpoints is None or r[2] in endpoints]
    pending = sum(1 for r in deliveries if r[4] == "pending")
    rows: list[Row] = [*found, *deliveries]
    return rows_line(
        {"endpoints": len(found), "deliveries": len(deliveries), "pending": pending}, rows
    )
