"""Prometheus metrics: what the mail path counts, shared by every worker, and how a scrape reads it.

The mail path calls the counting functions (instruments.py); ``serve``
makes its processes count into files of a shared directory (shared.py);
the ``[listen] metrics`` sockets answer ``GET /metrics`` with
:func:`render` (net/metrics_http.py); the queue's size is read at the
scrape (queue_stats.py). docs/metrics.md lists every metric.
"""

from __future__ import annotations

from mailstead.metrics.exposition import CONTENT_TYPE, render
from mailstead.metrics.instruments import (
    PROTOCOLS,
    auth_failed,
    delivery_delay,
    domain_label,
    local_delivery_time,
    message_outcome,
    messages_received,
    recipient_outcome,
    session_ended,
    session_started,
    set_local_domains,
    tls_failed,
    tls_negotiated,
    webhook_attempt,
)
from mailstead.metrics.shared import (
    metrics_dir,
    serving_dir,
    sessions_by_protocol,
    start_serving,
    stop_serving,
)

__all__ = [
    "CONTENT_TYPE",
    "PROTOCOLS",
    "auth_failed",
    "delivery_delay",
    "domain_label",
    "local_delivery_time",
    "message_outcome",
    "messages_received",
    "metrics_dir",
    "recipient_outcome",
    "render",
    "serving_dir",
    "session_ended",
    "session_started",
    "sessions_by_protocol",
    "set_local_domains",
    "start_serving",
    "stop_serving",
    "tls_failed",
    "tls_negotiated",
    "webhook_attempt",
]
