"""The webhook retry schedule: exact with a fixed random source."""

from __future__ import annotations

import random

import pytest

from mailstead.webhooks.backoff import MAX_ATTEMPTS, MAX_RETRY_AFTER, next_attempt

T0 = 1_700_000_000.0
H = 3600.0


class Fixed:
    """A random source that always answers the same fraction."""

    def __init__(self, value: float) -> None:
        self.value = value

    def random(self) -> float:
        return self.value


def delays(rng: Fixed) -> list[float | None]:
    out: list[float | None] = []
    for attempt in range(1, MAX_ATTEMPTS + 1):
        when = next_attempt(attempt, T0, None, rng)
        out.append(None if when is None else when - T0)
    return out


def test_schedule_without_jitter() -> None:
    assert delays(Fixed(0.0)) == [4.0, 300.0, 1800.0, 2 * H, 5 * H, 10 * H, 10 * H, None]


def test_jitter_lengthens_up_to_a_fifth() -> None:
    expected = [4.4, 330.0, 1980.0, 2.2 * H, 5.5 * H, 11 * H, 11 * H]
    assert delays(Fixed(0.5)) == [*map(pytest.approx, expected), None]


def test_first_retry_within_five_seconds_whatever_the_jitter() -> None:
    assert next_attempt(1, T0, None, Fixed(0.999999)) - T0 < 5.0  # type: ignore[operator]


def test_gives_up_after_the_last_attempt() -> None:
    assert MAX_ATTEMPTS == 8
    assert next_attempt(7, T0, None, Fixed(0.0)) == T0 + 10 * H
    assert next_attempt(8, T0, None, Fixed(0.0)) is None
    assert next_attempt(9, T0, None, Fixed(0.0)) is None


@pytest.mark.parametrize(
    ("attempt", "retry_after", "delay"),
    [
        (1, 120.0, 120.0),  # later than the schedule: the server wins
        (2, 60.0, 300.0),  # earlier than the schedule: the schedule wins
        (1, 0.0, 4.0),
        (1, -5.0, 4.0),  # a date in the past
        (3, 3 * 24 * H, MAX_RETRY_AFTER),  # capped at 24 h
        (7, 20 * H, 20 * H),
    ],
)
def test_retry_after_is_a_floor(attempt: int, retry_after: float, delay: float) -> None:
    assert next_attempt(attempt, T0, retry_after, Fixed(0.0)) == T0 + delay


def test_retry_after_does_not_postpone_giving_up() -> None:
    assert next_attempt(MAX_ATTEMPTS, T0, 60.0, Fixed(0.0)) is None


def test_always_later_than_now_with_a_real_random_source() -> None:
    rng = random.Random(13)
    for attempt in range(1, MAX_ATTEMPTS):
        when = next_attempt(attempt, T0, None, rng)
        assert when is not None and when > T0


def test_attempt_numbers_start_at_one() -> None:
    with pytest.raises(ValueError):
        next_attempt(0, T0, None, Fixed(0.0))
