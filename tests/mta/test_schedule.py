"""The retry schedule: pure arithmetic, and five simulated days on a fake clock."""

from __future__ import annotations

import asyncio
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailstead.config import DEFAULT_DELAY_WARNING, DeliveryConfig
from mailstead.mta.schedule import (
    Plan,
    delay_warning_at,
    delay_warning_due,
    is_expired,
    jitter_fraction,
    next_attempt,
    plan,
    retry_interval,
)
from mailstead.testing.clock import FakeClock

T0 = 1_700_000_000.0
DEFAULTS = DeliveryConfig()
SCHEDULE = DEFAULTS.retry_schedule  # 1m, 5m, 15m, 30m, 1h, 2h, 4h, 8h
LIFETIME = DEFAULTS.max_lifetime  # 5d
WARN = DEFAULTS.delay_warning  # 4h
H = 3600

# Seconds after arrival of every attempt when each one fails temporarily and
# takes no time: the schedule, then 8h repeated, then one last try exactly
# at the 5-day deadline (432000 s).
EXPECTED_OFFSETS = [
    0, 60, 360, 1260, 3060, 6660, 13860, 28260,
    57060, 85860, 114660, 143460, 172260, 201060, 229860,
    258660, 287460, 316260, 345060, 373860, 402660, 431460,
    432000,
]  # fmt: skip


def test_the_default_schedule_is_the_documented_one() -> None:
    assert SCHEDULE == (60, 300, 900, 1800, 3600, 7200, 14400, 28800)
    assert LIFETIME == 5 * 86400
    assert DEFAULT_DELAY_WARNING == 4 * H


def simulate(received_at: float = T0) -> tuple[list[float], float]:
    """Attempt times until the schedule gives up, and the time it gave up."""
    times: list[float] = []
    now = received_at  # a new message is due at once
    while True:
        times.append(now)
        when = next_attempt(received_at, len(times), now, SCHEDULE, LIFETIME)
        if when is None:
            return times, now
        now = when


def test_five_days_of_attempts_with_the_default_schedule() -> None:
    times, gave_up = simulate()
    assert [t - T0 for t in times] == EXPECTED_OFFSETS
    assert len(times) == 23
    assert gave_up == T0 + LIFETIME  # expiry exactly at max_lifetime


def test_the_last_interval_repeats() -> None:
    assert [retry_interval(n, SCHEDULE) for n in (1, 2, 7, 8, 9, 100)] == [
        60,
        300,
        14400,
        28800,
        28800,
        28800,
    ]


def test_retry_interval_is_for_after_a_failure() -> None:
    with pytest.raises(ValueError):
        retry_interval(0, SCHEDULE)


def test_expiry_boundary() -> None:
    deadline = T0 + LIFETIME
    assert not is_expired(T0, deadline - 0.001, LIFETIME)
    assert is_expired(T0, deadline, LIFETIME)
    assert next_attempt(T0, 30, deadline, SCHEDULE, LIFETIME) is None
    # Just before the deadline the retry is clamped onto it, not skipped.
    assert next_attempt(T0, 30, deadline - 1, SCHEDULE, LIFETIME) == deadline


def test_jitter_lengthens_within_the_spread_and_is_reproducible() -> None:
    f = jitter_fraction("0123456789ABCDEF01234567", 3)
    assert f == jitter_fraction("0123456789ABCDEF01234567", 3)
    assert f != jitter_fraction("0123456789ABCDEF01234568", 3)
    assert 0.0 <= f < 1.0
    when = next_attempt(T0, 3, T0 + 1000, SCHEDULE, LIFETIME, jitter=f)
    assert when is not None
    assert T0 + 1000 + 900 <= when <= T0 + 1000 + 900 * 1.1
    assert next_attempt(T0, 3, T0 + 1000, SCHEDULE, LIFETIME, jitter=0.5) == T0 + 1000 + 945


@pytest.mark.parametrize(
    ("schedule", "lifetime", "jitter"),
    [((), LIFETIME, 0.0), ((60, 0), LIFETIME, 0.0), (SCHEDULE, 0, 0.0), (SCHEDULE, LIFETIME, 1.0)],
)
def test_bad_arguments_are_refused(schedule: tuple[int, ...], lifetime: int, jitter: float) -> None:
    with pytest.raises(ValueError):
        next_attempt(T0, 1, T0, schedule, lifetime, jitter=jitter)


def test_plan_per_outcome() -> None:
    assert plan("delivered", T0, 1, T0, SCHEDULE, LIFETIME) == Plan("delivered", None, "delivered")
    assert plan("permanent", T0, 1, T0, SCHEDULE, LIFETIME) == Plan("failed", None, "permanent")
    assert plan("temporary", T0, 1, T0, SCHEDULE, LIFETIME) == Plan("deferred", T0 + 60, "retry")
    assert plan("temporary", T0, 23, T0 + LIFETIME, SCHEDULE, LIFETIME) == Plan(
        "failed", None, "expired"
    )


def test_delay_warning() -> None:
    assert delay_warning_at(T0, WARN) == T0 + 4 * H
    assert not delay_warning_due(T0, T0 + 4 * H - 1, WARN)
    assert delay_warning_due(T0, T0 + 4 * H, WARN)
    assert not delay_warning_due(T0, T0 + 4 * H, WARN, already_warned=True)
    assert not delay_warning_due(T0, T0 + 10 * H, warn_after=0)  # disabled
    assert delay_warning_at(T0, 0) is None


@given(
    received_at=st.floats(min_value=0, max_value=4e9),
    elapsed=st.floats(min_value=0, max_value=60 * 86400),
    attempts=st.integers(min_value=1, max_value=10_000),
    schedule=st.lists(st.integers(min_value=1, max_value=7 * 86400), min_size=1, max_size=12),
    lifetime=st.integers(min_value=1, max_value=30 * 86400),
    jitter=st.floats(min_value=0, max_value=1, exclude_max=True),
)
def test_next_attempt_is_after_now_and_within_the_lifetime(
    received_at: float,
    elapsed: float,
    attempts: int,
    schedule: list[int],
    lifetime: int,
    jitter: float,
) -> None:
    now = received_at + elapsed
    when = next_attempt(received_at, attempts, now, schedule, lifetime, jitter=jitter)
    if is_expired(received_at, now, lifetime):
        assert when is None
    else:
        assert when is not None
        assert now < when <= received_at + lifetime


# --------------------------------------------------------------------------- fake clock


async def retry_loop(
    clock: FakeClock, received_at: float
) -> tuple[list[float], list[float], float]:
    """A queue runner in miniature: every attempt fails temporarily.

    It wakes for the next attempt or for the delay warning, whichever is
    first, as the real runner does; returns (attempt times, warning times,
    time of expiry).
    """
    attempts: list[float] = []
    warnings: list[float] = []
    due: float | None = received_at
    warned = False
    while True:
        warn_at = None if warned else delay_warning_at(received_at, WARN)
        wake = min(t for t in (due, warn_at) if t is not None)
        await clock.sleep(wake - clock.time())
        now = clock.time()
        if delay_warning_due(received_at, now, WARN, already_warned=warned):
            warnings.append(now)
            warned = True
        if due is not None and now >= due:
            attempts.append(now)
            due = next_attempt(received_at, len(attempts), now, SCHEDULE, LIFETIME)
            if due is None:
                return attempts, warnings, now


def test_five_simulated_days_on_an_autojumping_clock() -> None:
    clock = FakeClock(T0, autojump_threshold=0)
    started = time.monotonic()

    async def main() -> tuple[list[float], list[float], float]:
        # A second, unrelated sleeper must not disturb the schedule.
        async def ticker() -> None:
            while True:
                await clock.sleep(7 * 60)

        other = asyncio.create_task(ticker())
        try:
            return await retry_loop(clock, T0)
        finally:
            other.cancel()

    attempts, warnings, expired_at = asyncio.run(main())
    assert [t - T0 for t in attempts] == EXPECTED_OFFSETS
    assert [t - T0 for t in warnings] == [4 * H]  # exactly once, at 4h
    assert expired_at == T0 + LIFETIME
    assert clock.time() == T0 + LIFETIME
    assert time.monotonic() - started < 5  # milliseconds in practice


def test_fake_clock_advance_wakes_only_due_sleepers() -> None:
    clock = FakeClock(T0)
    woke: list[str] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append(name)

    async def main() -> None:
        tasks = [asyncio.create_task(sleeper(n, s)) for n, s in (("b", 20), ("a", 10))]
        await asyncio.sleep(0)
        assert clock.sleepers == 2
        clock.advance(9)
        await asyncio.sleep(0)
        assert woke == []
        clock.advance(1)
        await asyncio.sleep(0)
        assert woke == ["a"]
        assert clock.next_deadline() == T0 + 20
        clock.set_time(T0 + 100)
        await asyncio.gather(*tasks)
        assert woke == ["a", "b"]
        assert clock.time() == T0 + 100

    asyncio.run(main())


def test_fake_clock_does_not_move_without_autojump_or_advance() -> None:
    clock = FakeClock(T0)

    async def main() -> None:
        task = asyncio.create_task(clock.sleep(60))
        for _ in range(200):
            await asyncio.sleep(0)
        assert not task.done()
        assert clock.time() == T0
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert clock.sleepers == 0
        with pytest.raises(ValueError):
            clock.advance(-1)

    asyncio.run(main())


def test_autojump_waits_for_busy_tasks_and_skips_cancelled_sleepers() -> None:
    clock = FakeClock(T0, autojump_threshold=0)
    seen: list[float] = []

    async def main() -> None:
        doomed = asyncio.create_task(clock.sleep(5))
        await asyncio.sleep(0)
        doomed.cancel()
        # A chain of hand-offs through an asyncio.Queue between two sleeps:
        # the jump must not happen while the consumer is still busy.
        q: asyncio.Queue[int] = asyncio.Queue()

        async def consumer() -> None:
            for _ in range(3):
                await q.get()
                seen.append(clock.time())

        c = asyncio.create_task(consumer())
        for _ in range(3):
            await clock.sleep(3600)
            await q.put(1)
        await c

    asyncio.run(main())
    assert seen == [T0 + 3600, T0 + 7200, T0 + 10800]
