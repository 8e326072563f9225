"""Live sessions per protocol, from the metrics the workers keep.

The metrics package (``mailstead.metrics``, issue 17 item 5) counts the
sessions of every worker process; its
``sessions_by_protocol(config) -> dict[str, int]`` sums them. It is looked
up when asked, not imported at the top: a build without it (or without
``prometheus-client``) still answers ``status``, with the sessions unknown.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable

from mailstead.config import Config

__all__ = ["live_sessions"]

log = logging.getLogger("mailstead")

_MODULE = "mailstead.metrics"


def _counter() -> Callable[[Config], object] | None:
    try:
        module = importlib.import_module(_MODULE)
    except ImportError as exc:
        log.debug("sessions unknown: %s", exc)
        return None
    counter = getattr(module, "sessions_by_protocol", None)
    return counter if callable(counter) else None


def live_sessions(config: Config) -> dict[str, int] | None:
    """Sessions open now by protocol (``smtp``, ``imap`` …); None when unknown."""
    counter = _counter()
    if counter is None:
        return None
    try:
        counts = counter(config)
    except Exception as exc:  # a status reply must not fail on a metrics problem
        log.warning("sessions unknown: %s: %s", _MODULE, exc)
        return None
    if not isinstance(counts, dict):
        return None
    return {
        str(name): int(n)
        for name, n in counts.items()
        if isinstance(n, int | float) and not isinstance(n, bool)
    }
