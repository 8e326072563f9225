"""Small fakes the outbox and dispatcher tests share."""

from __future__ import annotations


class Clock:
    """A wall clock that moves only when a test sets ``now``; called like ``time.time``."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
