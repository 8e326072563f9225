"""Idempotency stores: atomic claims, release, expiry, bounds, sharing between processes."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from mailstead.webhooks.idempotency import (
    IdempotencyStore,
    MemoryIdempotencyStore,
    SQLiteIdempotencyStore,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


StoreFactory = Callable[[Clock, Path], IdempotencyStore]

STORES: dict[str, StoreFactory] = {
    "memory": lambda clock, tmp: MemoryIdempotencyStore(ttl=60, clock=clock),
    "sqlite": lambda clock, tmp: SQLiteIdempotencyStore(tmp / "ids.db", ttl=60, clock=clock),
}


@pytest.fixture(params=sorted(STORES))
def store_and_clock(
    request: pytest.FixtureRequest, tmp_path: Path
) -> tuple[IdempotencyStore, Clock]:
    clock = Clock()
    return STORES[request.param](clock, tmp_path), clock


def test_claim_once(store_and_clock: tuple[IdempotencyStore, Clock]) -> None:
    store, _ = store_and_clock
    assert store.claim("msg_1") is True
    assert store.claim("msg_1") is False
    assert store.claim("msg_2") is True


def test_release_lets_the_next_claim_win(store_and_clock: tuple[IdempotencyStore, Clock]) -> None:
    store, _ = store_and_clock
    store.claim("msg_1")
    store.release("msg_1")
    assert store.claim("msg_1") is True
    store.release("never-claimed")  # harmless


def test_claims_expire(store_and_clock: tuple[IdempotencyStore, Clock]) -> None:
    store, clock = store_and_clock
    store.claim("msg_1")
    clock.now += 59.9
    assert store.claim("msg_1") is False
    clock.now += 0.2
    assert store.claim("msg_1") is True
    assert store.claim("msg_1") is False


def test_racing_claims_have_one_winner(store_and_clock: tuple[IdempotencyStore, Clock]) -> None:
    store, _ = store_and_clock
    wins: list[bool] = []
    start = threading.Barrier(8)

    def race() -> None:
        start.wait()
        wins.append(store.claim("msg_race"))

    threads = [threading.Thread(target=race) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(wins) == [False] * 7 + [True]


def test_memory_store_is_bounded_oldest_first() -> None:
    store = MemoryIdempotencyStore(max_entries=3)
    for i in range(5):
        store.claim(f"msg_{i}")
    assert len(store) == 3
    assert store.claim("msg_0") is True  # dropped, so new again
    assert store.claim("msg_4") is False


def test_sqlite_store_is_shared_between_connections(tmp_path: Path) -> None:
    # Two stores on one file stand for two worker processes.
    first = SQLiteIdempotencyStore(tmp_path / "ids.db")
    second = SQLiteIdempotencyStore(tmp_path / "ids.db")
    assert first.claim("msg_1") is True
    assert second.claim("msg_1") is False
    second.release("msg_1")
    assert first.claim("msg_1") is True
    first.close()
    second.close()


def test_sqlite_store_sweeps_expired_rows(tmp_path: Path) -> None:
    clock = Clock()
    store = SQLiteIdempotencyStore(tmp_path / "ids.db", ttl=1, clock=clock)
    for i in range(999):
        store.claim(f"old_{i}")
    clock.now += 2
    store.claim("the_thousandth")  # every 1000th claim sweeps
    rows = store._db.execute("SELECT count(*) FROM webhook_ids").fetchone()
    assert rows == (1,)


@pytest.mark.parametrize(
    "make",
    [
        lambda tmp: MemoryIdempotencyStore(ttl=0),
        lambda tmp: MemoryIdempotencyStore(max_entries=0),
        lambda tmp: SQLiteIdempotencyStore(tmp / "x.db", ttl=-1),
        lambda tmp: SQLiteIdempotencyStore(tmp / "x.db", table="ids; DROP TABLE x"),
    ],
)
def test_bad_options_are_refused(make: Callable[[Path], object], tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        make(tmp_path)
