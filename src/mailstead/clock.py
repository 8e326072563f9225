"""The clock the server reads and sleeps on, passed in so tests can fake it.

docs/architecture.md: time comes in through a small interface like the resolver
and the streams do. Code that schedules work (the outbound queue runner,
webhook retries) takes a :class:`Clock`; production passes
:class:`SystemClock`, tests pass :class:`mailstead.testing.clock.FakeClock`,
which runs a five-day retry schedule in milliseconds.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

__all__ = ["Clock", "SystemClock"]


class Clock(Protocol):
    """Wall-clock time in Unix seconds and an asyncio sleep measured on it."""

    def time(self) -> float:
        """Seconds since the Unix epoch (what the queue stores as ``next_attempt``)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (zero or less: just yield to the event loop once)."""
        ...


class SystemClock:
    """The real clock: :func:`time.time` and :func:`asyncio.sleep`.

    Owns nothing; stateless, so one instance can be shared by everything.
    """

    __slots__ = ()

    def time(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))
