"""An unknown key names the key it was probably meant to be, at every level of the file,
whether `serve` (and every command) loads the config or `check config` reports it."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from mailstead.cli import main
from mailstead.config import ConfigError, load_config
from mailstead.config.reader import unknown_key

D = 'domains = ["example.test"]\n'


@pytest.mark.parametrize(
    ("toml", "reason"),
    [
        ('domain = ["example.test"]\n', "domain: unknown key; did you mean `domains`?"),
        ("hostnme = 'x'\n" + D, "hostnme: unknown key; did you mean `hostname`?"),
        ("Workers = 2\n" + D, "Workers: unknown key; did you mean `workers`?"),
        (D + "[lisen]\nsmtp = []\n", "lisen: unknown key; did you mean `listen`?"),
        (D + "[listen]\nsmpt = []\n", "listen.smpt: unknown key; did you mean `smtp`?"),
        (D + "[storage]\nfromat = 'mbox'\n", "storage.fromat: unknown key; did you mean `format`?"),
        (
            D + "[delivery]\nretry-schedule = ['1m']\n",
            "delivery.retry-schedule: unknown key; did you mean `retry_schedule`?",
        ),
        (
            D + "[[webhooks]]\nurl = 'https://a.example/h'\nsecrte = 'x'\n",
            "webhooks[0].secrte: unknown key; did you mean `secret`?",
        ),
    ],
)
def test_a_close_key_is_suggested(tmp_path: Path, toml: str, reason: str) -> None:
    path = tmp_path / "mailstead.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}: {reason} (expected one of: ")


def test_nothing_is_suggested_when_nothing_is_close() -> None:
    assert unknown_key("frobnicate", ["format", "backend"]) == (
        "unknown key (expected one of: backend, format)"
    )


def test_check_config_and_every_command_say_the_same(tmp_path: Path) -> None:
    path = tmp_path / "mailstead.toml"
    path.write_text("domain = ['example.test']\n")
    runner = CliRunner()
    check = runner.invoke(main, ["--config", str(path), "check", "config"])
    assert check.exit_code == 1
    assert "error: domain: unknown key; did you mean `domains`? (expected" in check.output
    serve_like = runner.invoke(main, ["--config", str(path), "user", "list"])
    assert serve_like.exit_code == 1
    assert serve_like.stderr.startswith(
        f"mailstead: {path}: domain: unknown key; did you mean `domains`?"
    )
