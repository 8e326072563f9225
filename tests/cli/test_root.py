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
    assert json.loads(listed.stdout) == [
        {"address": "bob@example.test", "messages": 0, "unseen": 0, "size": 0}
    ]


def test_version(config: Path) -> None:
    from mailstead import __version__

    result = run(config, "--version")
    assert (result.exit_code, result.stdout) == (0, f"mailstead {__version__}\n")


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["user", "add"],
            "mailstead: Missing argument 'ADDRESS'. (see 'mailstead user add --help')",
        ),
        (
            ["usr", "list"],
            "mailstead: No such command 'usr'. Did you mean 'user'? (see 'mailstead --help')",
        ),
        (
            ["user", "list", "--jsn"],
            "mailstead: No such option '--jsn'. Did you mean '--json'?"
            " (see 'mailstead user list --help')",
        ),
        (
            ["user", "del", "a@example.test", "b@example.test"],
            "mailstead: Got unexpected extra argument (b@example.test)"
            " (see 'mailstead user del --help')",
        ),
        (
            ["mailbox", "show", "a@example.test", "INBOX", "x"],
            "mailstead: Invalid value for 'UID': 'x' is not a valid integer range."
            " (see 'mailstead mailbox show --help')",
        ),
        (
            ["--confg", "x"],
            "mailstead: No such option '--confg'. Did you mean '--config'?"
            " (see 'mailstead --help')",
        ),
    ],
)
def test_usage_errors_are_one_line_with_the_reason(
    config: Path, args: list[str], line: str
) -> None:
    result = run(config, *args)
    assert result.exit_code == 2
    assert (result.stdout, result.stderr) == ("", line + "\n")


def test_usage_errors_are_one_line_from_the_real_entry_point(config: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mailstead",
            "--config",
            str(config),
            "alias",
            "add",
            "x@example.test",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        "mailstead: Missing argument 'TARGET...'. (see 'python -m mailstead alias add --help')\n"
    )
