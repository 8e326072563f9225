"""``[storage] backend`` and ``dsn``: the cluster database is named, or the file is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailstead.config import ConfigError, load_config

D = 'domains = ["example.test"]\n'


def load(tmp_path: Path, storage: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "mailstead.toml"
    path.write_text(D + "[storage]\n" + storage)
    return load_config(path).storage


def test_sqlite_is_the_default(tmp_path: Path) -> None:
    storage = load(tmp_path, "")
    assert (storage.backend, storage.dsn) == ("sqlite", "")


def test_postgresql_with_a_dsn(tmp_path: Path) -> None:
    storage = load(
        tmp_path, "backend = 'postgresql'\ndsn = 'postgresql://mailstead@db:5432/mail'\n"
    )
    assert (storage.backend, storage.dsn) == ("postgresql", "postgresql://mailstead@db:5432/mail")
    assert "db:5432" not in repr(storage)  # a DSN may carry a password


def test_the_dsn_may_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILSTEAD_DSN", "host=db dbname=mail password=s3cret")
    storage = load(tmp_path, "backend = 'postgresql'\n")
    assert storage.dsn == "host=db dbname=mail password=s3cret"


@pytest.mark.parametrize(
    ("storage", "message"),
    [
        ("backend = 'mysql'\n", 'storage.backend: expected "sqlite" or "postgresql", got "mysql"'),
        (
            "backend = 'postgresql'\n",
            'storage.dsn: required with backend = "postgresql" (or set $MAILSTEAD_DSN)',
        ),
        (
            "backend = 'postgresql'\ndsn = 'mysql://root:hunter2@db/mail'\n",
            "storage.dsn: expected a postgresql:// URI, got a mysql:// one",
        ),
        (
            "backend = 'postgresql'\ndsn = 'hunter2'\n",
            'storage.dsn: expected a postgresql:// URI or "key=value"',
        ),
        ("dsn = 3\n", "storage.dsn: expected a string, got 3"),
    ],
)
def test_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, storage: str, message: str
) -> None:
    monkeypatch.delenv("MAILSTEAD_DSN", raising=False)
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, storage)
    assert message in str(caught.value)
    assert "hunter2" not in str(caught.value)
