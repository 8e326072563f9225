"""The ``[run]`` table `mailstead init` writes, and its one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailstead.config import ConfigError, RunConfig, default_config_text, load_config

D = 'domains = ["example.test"]\n'


def _load(tmp_path: Path, text: str) -> RunConfig:
    path = tmp_path / "mailstead.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(path).run


def test_the_written_config_names_the_default_account(tmp_path: Path) -> None:
    # A checkout's trial server on loopback may run as root (`make run` in a
    # container); a service installed by init --system may not.
    for system in (False, True):
        run = _load(tmp_path, default_config_text("example.test", "mx.example.test", system=system))
        assert run == RunConfig(user="mailstead", group="mailstead", allow_root=not system)


def test_absent_table_gives_the_defaults(tmp_path: Path) -> None:
    assert _load(tmp_path, D) == RunConfig()


def test_names_and_numbers(tmp_path: Path) -> None:
    run = _load(tmp_path, D + '[run]\nuser = "65534"\ngroup = "mail-users"\nallow_root = true\n')
    assert run == RunConfig(user="65534", group="mail-users", allow_root=True)


@pytest.mark.parametrize(
    ("table", "error"),
    [
        ('user = ""', 'run.user: expected a user name, got ""'),
        ('user = "a b"', 'run.user: expected a user name, got "a b"'),
        ("group = 5", "run.group: expected a string, got 5"),
        ('allow_root = "yes"', 'run.allow_root: expected true or false, got "yes"'),
        ('uid = "x"', "run.uid: unknown key (expected one of: allow_root, group, user)"),
    ],
)
def test_bad_values_are_one_line(tmp_path: Path, table: str, error: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, f"{D}[run]\n{table}\n")
    assert str(caught.value) == f"{tmp_path / 'mailstead.toml'}: {error}"
