"""The cache of recently verified passwords: what it spares, and what it never answers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mailstead import passwords as passwords_module
from mailstead.directory import Directory
from mailstead.password_cache import PasswordCache
from tests.password_checks import record_full_checks

HASH = "$scrypt$ln=4,r=8,p=1$stored-hash-one"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_answers_for_the_same_password_and_stored_hash() -> None:
    cache = PasswordCache(60)
    cache.remember("alice@example.test", HASH, "secret")
    assert cache.verified("alice@example.test", HASH, "secret")


@pytest.mark.parametrize(
    ("user", "stored", "password"),
    [
        ("alice@example.test", HASH, "Secret"),  # another password
        ("alice@example.test", HASH, "secret "),
        ("alice@example.test", HASH, ""),
        ("alice@example.test", HASH + "x", "secret"),  # the password was changed
        ("bob@example.test", HASH, "secret"),  # another user
    ],
)
def test_misses_for_anything_else(user: str, stored: str, password: str) -> None:
    cache = PasswordCache(60)
    cache.remember("alice@example.test", HASH, "secret")
    assert not cache.verified(user, stored, password)


def test_forgets_after_the_ttl() -> None:
    clock = Clock()
    cache = PasswordCache(60, clock=clock)
    cache.remember("alice@example.test", HASH, "secret")
    clock.now += 59.9
    assert cache.verified("alice@example.test", HASH, "secret")
    clock.now += 0.1
    assert not cache.verified("alice@example.test", HASH, "secret")


def test_ttl_zero_remembers_nothing() -> None:
    cache = PasswordCache(0)
    cache.remember("alice@example.test", HASH, "secret")
    assert len(cache) == 0
    assert not cache.verified("alice@example.test", HASH, "secret")


def test_least_recently_verified_go_first_when_full() -> None:
    cache = PasswordCache(60, max_entries=2)
    for user in ("a@example.test", "b@example.test", "a@example.test", "c@example.test"):
        cache.remember(user, HASH, "pw")
    assert len(cache) == 2
    assert not cache.verified("b@example.test", HASH, "pw")
    assert cache.verified("a@example.test", HASH, "pw")
    assert cache.verified("c@example.test", HASH, "pw")


def test_holds_no_password_or_key_in_the_clear() -> None:
    cache = PasswordCache(60)
    cache.remember("alice@example.test", "$scrypt$x", "correct horse")
    assert "correct horse" not in repr(cache._entries)
    _, digest, _ = cache._entries["alice@example.test"]
    assert len(digest) == 32  # HMAC-SHA256


def test_two_caches_make_different_digests() -> None:
    one, two = PasswordCache(60), PasswordCache(60)
    for cache in (one, two):
        cache.remember("alice@example.test", HASH, "secret")
    assert one._entries["alice@example.test"][1] != two._entries["alice@example.test"][1]


# ----------------------------------------------------------------------- with the directory


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The passwords that went through the full scrypt check."""
    monkeypatch.setattr(passwords_module, "_SCRYPT_LN", 4)
    return record_full_checks(monkeypatch)


@pytest.fixture
def directory(tmp_path: Path, checks: list[str]) -> Iterator[Directory]:
    cache = PasswordCache(3600)
    with Directory(tmp_path / "d.sqlite3", ["example.test"], password_cache=cache) as d:
        d.add_user("alice@example.test", "first password")
        checks.clear()
        yield d


def test_second_login_skips_the_scrypt_check(directory: Directory, checks: list[str]) -> None:
    alice = "alice@example.test"
    for _ in range(3):
        assert directory.authenticate(alice, "first password") == alice
    assert checks == ["first password"]
    # Any spelling of the address that names the same user hits as well.
    assert directory.authenticate("ALICE@Example.TEST", "first password") == alice
    assert checks == ["first password"]


def test_wrong_passwords_always_pay_in_full(directory: Directory, checks: list[str]) -> None:
    directory.authenticate("alice@example.test", "first password")
    for _ in range(3):
        assert directory.authenticate("alice@example.test", "guess") is None
    assert directory.authenticate("nobody@example.test", "first password") is None
    assert checks == ["first password", "guess", "guess", "guess", "first password"]


def test_a_new_password_ends_the_old_one_at_once(directory: Directory, checks: list[str]) -> None:
    directory.authenticate("alice@example.test", "first password")
    # As `mailstead user passwd` does, from another process: only the table changes.
    with Directory(directory._path, ["example.test"]) as other:
        other.set_password("alice@example.test", "second password")
    assert directory.authenticate("alice@example.test", "first password") is None
    assert directory.authenticate("alice@example.test", "second password") == "alice@example.test"
    assert directory.authenticate("alice@example.test", "second password") == "alice@example.test"
    assert checks == ["first password", "first password", "second password"]


def test_a_deleted_user_cannot_log_in(directory: Directory) -> None:
    directory.authenticate("alice@example.test", "first password")
    with Directory(directory._path, ["example.test"]) as other:
        other.delete_user("alice@example.test")
    assert directory.authenticate("alice@example.test", "first password") is None
