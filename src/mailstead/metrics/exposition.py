"""A scrape's answer: every process's counts and the queue's state in Prometheus text format."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric

from mailstead.metrics import instruments, shared
from mailstead.metrics.queue_stats import QueueSource, QueueStats

__all__ = ["CONTENT_TYPE", "render"]

#: The Content-Type of :func:`render`'s text: the classic text format every
#: Prometheus reads (prometheus_client's own default moved on to 1.0.0).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _Memory:
    """A collector relaying this process's in-memory registry (no shared directory)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterable[Metric]:
        return self.registry.collect()


def render(queue: QueueSource) -> bytes:
    """The metrics text: the shared files when this process serves from them, else its own
    counts; and the ``queue``'s size. Blocking (files, a database): not on the loop."""
    registry = CollectorRegistry(auto_describe=False)
    directory = shared.serving_dir()
    if directory is not None:
        registry.register(shared.SharedFiles(directory))
    else:
        memory = instruments.memory_registry()
        if memory is not None:
            registry.register(_Memory(memory))
    registry.register(QueueStats(queue))
    text: bytes = generate_latest(registry)
    return text
