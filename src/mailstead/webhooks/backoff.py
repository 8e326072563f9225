"""When to retry a webhook delivery, and when to give up (pure).

No clock reads and no hidden randomness: the dispatcher passes ``now`` and
a random source, so a test walks the whole schedule exactly.

The model: attempt 1 is the first POST. After the *n*-th failed attempt the
delivery waits ``SCHEDULE[n-1]`` seconds, lengthened by up to
``JITTER_SPREAD`` of itself so that events failing together do not come back
together; after ``MAX_ATTEMPTS`` failures it gives up (the dispatcher marks
the delivery failed). A quick first retry rides out a blip; the long tail
covers an endpoint down for most of a day.
"""

from __future__ import annotations

from typing import Protocol

__all__ = [
    "JITTER_SPREAD",
    "MAX_ATTEMPTS",
    "MAX_RETRY_AFTER",
    "SCHEDULE",
    "RandomSource",
    "next_attempt",
]

#: Seconds to wait after the 1st, 2nd, … failure: ~4 s, 5 min, 30 min, 2 h,
#: 5 h, 10 h, 10 h. With the jitter the first retry stays within 5 s.
SCHEDULE: tuple[float, ...] = (4.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)

#: Attempts in all: the first POST and one retry per schedule step.
MAX_ATTEMPTS = len(SCHEDULE) + 1

#: Largest share of an interval the jitter adds (4 s becomes at most 4.8 s).
JITTER_SPREAD = 0.2

#: Longest Retry-After honoured, in seconds (24 h): a larger one is cut to
#: this, so a wrong header cannot park a delivery for weeks.
MAX_RETRY_AFTER = 24 * 3600.0


class RandomSource(Protocol):
    """Where the jitter comes from (``random.Random`` fits)."""

    def random(self) -> float:
        """A float in [0, 1)."""
        ...


def next_attempt(
    attempt_number: int,
    now: float,
    retry_after: float | None,
    rng: RandomSource,
) -> float | None:
    """When to try again after attempt ``attempt_number`` (1-based) failed at ``now``.

    None means give up: that was attempt ``MAX_ATTEMPTS``. ``retry_after``
    is the endpoint's Retry-After in seconds, if it sent one; the retry is
    never earlier than it asked (RFC 9110 §10.2.3), up to
    ``MAX_RETRY_AFTER``. The result is always later than ``now``.
    """
    if attempt_number < 1:
        raise ValueError("next_attempt is for after a failed attempt (attempt_number >= 1)")
    if attempt_number >= MAX_ATTEMPTS:
        return None
    base = SCHEDULE[attempt_number - 1]
    delay = base * (1.0 + JITTER_SPREAD * rng.random())
    if retry_after is not None:
        delay = max(delay, min(max(retry_after, 0.0), MAX_RETRY_AFTER))
    return now + delay
