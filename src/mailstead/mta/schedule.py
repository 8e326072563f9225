"""When to try a queued recipient again, when to give up, when to warn (pure).

Pure functions of their arguments: no clock reads, no randomness, no I/O.
The queue runner passes in ``now`` from its :class:`mailstead.clock.Clock`
and the schedule from :class:`mailstead.config.DeliveryConfig`, so a test
walks five simulated days of retries in a loop of plain arithmetic.

The model (RFC 5321 §4.5.4.1 asks for a retry interval of at least 30
minutes and a give-up time of at least 4-5 days; the configured schedule
front-loads shorter intervals, as Postfix and Exim do):

* A new message is due at once (the queue stores ``next_attempt =
  received_at``).
* After the *n*-th failed attempt the recipient waits ``schedule[n-1]``
  seconds, measured from the moment of that failure; the last interval
  repeats for ever.
* ``received_at + max_lifetime`` is a hard deadline: a retry that would
  fall after it is moved onto it, so one last attempt happens exactly at
  the deadline; a temporary failure at or after the deadline gives up
  (the caller then bounces with a "failed" DSN, RFC 3464).
* Optionally a jitter lengthens each interval by up to
  ``jitter_spread`` of itself. The fraction is passed in (see
  :func:`jitter_fraction`, derived from the queue id), so retries of many
  messages queued in the same second spread out, yet every run is
  reproducible.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "DEFAULT_JITTER_SPREAD",
    "Outcome",
    "Plan",
    "check_schedule",
    "deadline",
    "delay_warning_at",
    "delay_warning_due",
    "is_expired",
    "jitter_fraction",
    "next_attempt",
    "plan",
    "retry_interval",
]

#: Largest share of an interval that jitter may add (10%: a 1h wait becomes
#: at most 1h06m).
DEFAULT_JITTER_SPREAD = 0.1

#: What the last attempt to one recipient came to: accepted (2yz), a
#: temporary failure (4yz, connection or DNS trouble) or a permanent one (5yz).
Outcome = Literal["delivered", "temporary", "permanent"]


def check_schedule(schedule: Sequence[float], max_lifetime: float) -> None:
    """Raise ValueError unless the schedule is usable (config validation helper)."""
    if not schedule:
        raise ValueError("the retry schedule needs at least one interval")
    if any(interval <= 0 for interval in schedule):
        raise ValueError("every retry interval must be longer than zero")
    if max_lifetime <= 0:
        raise ValueError("max_lifetime must be longer than zero")


def deadline(received_at: float, max_lifetime: float) -> float:
    """The moment the message expires: ``received_at + max_lifetime``."""
    return received_at + max_lifetime


def is_expired(received_at: float, now: float, max_lifetime: float) -> bool:
    """True from ``received_at + max_lifetime`` on (the deadline itself included)."""
    return now >= received_at + max_lifetime


def retry_interval(attempts: int, schedule: Sequence[float]) -> float:
    """Seconds to wait after the ``attempts``-th failed attempt (1-based).

    The last interval repeats: with the default schedule the 8th, 9th, …
    failure each wait 8h.
    """
    if attempts < 1:
        raise ValueError("retry_interval is for after a failed attempt (attempts >= 1)")
    if not schedule:
        raise ValueError("the retry schedule needs at least one interval")
    return float(schedule[min(attempts, len(schedule)) - 1])


def jitter_fraction(key: str, attempts: int) -> float:
    """A reproducible fraction in [0, 1) for ``key`` (a queue id) and attempt number.

    Derived by hashing, so the same message retries at the same times in
    every run, while messages with different ids spread out.
    """
    digest = hashlib.blake2b(f"{key}\0{attempts}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def next_attempt(
    received_at: float,
    attempts: int,
    now: float,
    schedule: Sequence[float],
    max_lifetime: float,
    *,
    jitter: float = 0.0,
    jitter_spread: float = DEFAULT_JITTER_SPREAD,
) -> float | None:
    """When to try again after the ``attempts``-th temporary failure at ``now``.

    Returns None when the message has expired (``now`` is at or past the
    deadline): give up and bounce. Otherwise the result is always later than
    ``now`` and never later than ``received_at + max_lifetime``.

    ``jitter`` is a fraction in [0, 1) chosen by the caller (e.g.
    :func:`jitter_fraction`); the interval grows by ``jitter * jitter_spread``
    of itself. Zero (the default) gives the exact schedule.
    """
    check_schedule(schedule, max_lifetime)
    if not 0.0 <= jitter < 1.0:
        raise ValueError("jitter must be a fraction in [0, 1)")
    if not 0.0 <= jitter_spread <= 1.0:
        raise ValueError("jitter_spread must be in [0, 1]")
    end = deadline(received_at, max_lifetime)
    if now >= end:
        return None
    interval = retry_interval(attempts, schedule) * (1.0 + jitter * jitter_spread)
    # RFC 5321 §4.5.4.1: give up after the configured lifetime; the last try
    # is made at the deadline rather than skipped or made late.
    return min(now + interval, end)


def delay_warning_at(received_at: float, warn_after: float) -> float | None:
    """When a "delayed" DSN becomes due, or None if warnings are disabled (0).

    ``warn_after`` is ``DeliveryConfig.delay_warning`` (the default lives there).

    The runner wakes at ``min(next_attempt, delay_warning_at)`` so the warning
    goes out on time even when no attempt falls on that moment.
    """
    return None if warn_after <= 0 else received_at + warn_after


def delay_warning_due(
    received_at: float,
    now: float,
    warn_after: float,
    already_warned: bool = False,
) -> bool:
    """Whether to send the one "delayed" DSN now (RFC 3464 §2.3.3 ``delayed``).

    Once per recipient: ``already_warned`` is the queue's ``delay_warned``.
    The caller also checks :func:`mailstead.mta.dsn.should_notify` (NOTIFY=DELAY,
    RFC 3461 §4.1) and skips the warning for a message that has just expired
    (that one gets the "failed" DSN instead).
    """
    when = delay_warning_at(received_at, warn_after)
    return not already_warned and when is not None and now >= when


@dataclass(frozen=True, slots=True)
class Plan:
    """What to do with one recipient after an attempt.

    ``state`` is the queue state to record; ``next_attempt`` is set for
    ``deferred``; ``reason`` says why a recipient failed: the remote server
    refused for good (``permanent``) or the lifetime ran out (``expired``).
    """

    state: Literal["delivered", "deferred", "failed"]
    next_attempt: float | None = None
    reason: Literal["delivered", "retry", "permanent", "expired"] = "retry"


def plan(
    outcome: Outcome,
    received_at: float,
    attempts: int,
    now: float,
    schedule: Sequence[float],
    max_lifetime: float,
    *,
    jitter: float = 0.0,
    jitter_spread: float = DEFAULT_JITTER_SPREAD,
) -> Plan:
    """Decide a recipient's fate from the outcome of its ``attempts``-th attempt at ``now``."""
    if outcome == "delivered":
        return Plan("delivered", None, "delivered")
    if outcome == "permanent":
        return Plan("failed", None, "permanent")
    when = next_attempt(
        received_at,
        attempts,
        now,
        schedule,
        max_lifetime,
        jitter=jitter,
        jitter_spread=jitter_spread,
    )
    if when is None:
        return Plan("failed", None, "expired")
    return Plan("deferred", when, "retry")
