"""A fake :class:`mailstead.clock.Clock` whose time moves only when a test says so.

Two ways to move it:

* :meth:`FakeClock.advance` — explicit: move time forward and wake every
  sleeper whose deadline has passed.
* *autojump* (``FakeClock(autojump_threshold=0)``), after trio's
  ``MockClock``: whenever the event loop has gone idle — no task touched the
  clock for a number of loop turns (and, with a positive threshold, for that
  many real seconds) — time jumps straight to the earliest sleeper's
  deadline. Code that sleeps through a five-day retry schedule then runs in
  milliseconds, with no ``advance`` calls in the test.

Autojump cannot see tasks blocked on real I/O (sockets, threads): like
trio's, it jumps past them once the loop looks idle. Give such tests a
positive ``autojump_threshold`` (real seconds of idleness required) or use
``advance``. Timeouts taken from the event loop (``asyncio.wait_for``,
``asyncio.timeout``) run on the loop's own clock, not on this one.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools

__all__ = ["FakeClock"]

# Loop turns with no clock activity before autojump considers the loop idle.
# A task woken by a jump usually needs a few turns (future callbacks, queue
# hand-offs) before it sleeps again; 50 covers such chains with a wide margin.
_IDLE_TURNS = 50


class FakeClock:
    """Owns a fake "now" and the set of tasks sleeping on it.

    ``start`` is the initial Unix time (default: 2023-11-14 22:13:20 UTC, a
    fixed value so tests are reproducible). ``autojump_threshold`` ``None``
    (the default) disables autojump; ``0`` jumps as soon as the loop is
    idle; a positive value additionally waits that many real seconds.
    """

    def __init__(
        self,
        start: float = 1_700_000_000.0,
        *,
        autojump_threshold: float | None = None,
        idle_turns: int = _IDLE_TURNS,
    ) -> None:
        if autojump_threshold is not None and autojump_threshold < 0:
            raise ValueError("autojump_threshold must be >= 0 or None")
        self._now = float(start)
        self.autojump_threshold = autojump_threshold
        self._idle_turns = idle_turns
        # (deadline, sequence, future): the sequence keeps equal deadlines FIFO.
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        # Bumped whenever a task starts sleeping or is woken; autojump waits
        # until it stops changing.
        self._activity = 0
        self._jumper: asyncio.Task[None] | None = None
        #: How many times autojump moved the time (for tests of the clock itself).
        self.jumps = 0

    # -- the Clock interface -----------------------------------------------

    def time(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._seq), future))
        self._activity += 1
        if self.autojump_threshold is not None:
            self._ensure_jumper(loop)
        try:
            await future
        finally:
            # A cancelled sleeper leaves a done future behind; it is dropped
            # from the heap lazily (see _prune).
            if not future.done():
                future.cancel()

    # -- test controls -----------------------------------------------------

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` and wake the sleepers that are due."""
        if seconds < 0:
            raise ValueError("time cannot go backwards")
        self._now += seconds
        self._wake()

    def set_time(self, when: float) -> None:
        """Move time forward to ``when`` (never backwards) and wake the due sleepers."""
        self.advance(max(0.0, when - self._now))

    @property
    def sleepers(self) -> int:
        """Tasks currently sleeping on this clock."""
        return sum(1 for _, _, f in self._sleepers if not f.done())

    def next_deadline(self) -> float | None:
        """When the earliest sleeper wakes, or None if nobody sleeps."""
        self._prune()
        return self._sleepers[0][0] if self._sleepers else None

    # -- internals ---------------------------------------------------------

    def _prune(self) -> None:
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)

    def _wake(self) -> None:
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)
                self._activity += 1

    def _ensure_jumper(self, loop: asyncio.AbstractEventLoop) -> None:
        jumper = self._jumper
        if jumper is not None and not jumper.done() and jumper.get_loop() is loop:
            return
        self._jumper = loop.create_task(self._autojump(), name="FakeClock.autojump")

    async def _autojump(self) -> None:
        """Jump to the next deadline whenever the loop is idle; end when nobody sleeps."""
        while True:
            seen = self._activity
            for _ in range(self._idle_turns):
                await asyncio.sleep(0)
            if self.autojump_threshold:
                await asyncio.sleep(self.autojump_threshold)  # real seconds, on purpose
            if self._activity != seen:
                continue  # something still ran; wait for it to settle
            deadline = self.next_deadline()
            if deadline is None:
                return
            self._now = max(self._now, deadline)
            self.jumps += 1
            self._wake()
