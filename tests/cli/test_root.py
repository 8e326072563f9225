"""What every command shares: one-line errors on stderr, the config, the entry points."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.runner import run


@pytest.mark.parametrize(
    ("args", "stdin", "reason"),
    [
        (
            ["user", "add", "a@other.test", "--password-stdin"],
            "pw\n",
            "other.test is not a local domain",
        ),
        (["user", "add", "../../x@example.test", "--password-stdin"], "pw\n", "local part"),
        (["user", "add", "a@example.test"], None, "--password-stdin"),
        (["user", "add", "a@example.test", "--password-stdin"], "", "empty password"),
        (["user", "add", "a@example.test", "--password-stdin"], "\n", "empty password"),
        (["user", "del", "nobody@example.test"], None, "no such user nobody@example.test"),
        (["user", "passwd", "nobody@example.test", "--password-stdin"], "pw\n", "no such user"),
        (["alias", "add", "x@example.test", "not-an-address"], None, "is not an address"),
        (["alias", "del", "x@example.test"], None, "no such alias x@example.test"),
    ],
)
def test_errors_are_one_line_on_stderr(
    config: Path, args: list[str], stdin: str | None, reason: str
) -> None:
    result = run(config, *args, stdin=stdin)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith("mailstead: ")
    assert reason in result.stderr
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr


def test_missing_config_says_how_to_fix_it(tmp_path: Path) -> None:
    result = run(tmp_path / "absent.toml", "user", "list")
    assert result.exit_code == 1
    assert (
        result.stderr
        == f"mailstead: no config at {tmp_path / 'absent.toml'}; run `mailstead init`\n"
    )


def test_invalid_config_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "mailstead.toml"
    path.write_text('domains = ["example.test"]\n[listen]\nsmtp = ["foo"]\n')
    result = run(path, "user", "list")
    assert result.exit_code == 1
    assert (
        result.stderr
        == f'mailstead: {path}: listen.smtp[0]: expected "host:port", got "foo" (missing port)\n'
    )


def test_python_dash_m_entry_point(config: Path) -> None:
    command = [sys.executable, "-m", "mailstead", "--config", str(config)]
    added = subprocess.run(
        [*command, "user", "add", "bob@example.test", "--password-stdin"],
        input="pw\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (added.returncode, added.stdout, added.stderr) == (
        0,
        "added user bob@example.test\n",
        "",
    )
    listed = subprocess.run(
        [*command, "user", "list", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert json.loads(listed.stdout) == [{"address": "bob@example.test"}]
