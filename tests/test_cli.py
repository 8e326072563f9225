"""The `mailstead` command line, driven as an operator would (DESIGN.md §3)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from mailstead.cli import main


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "mailstead.toml"
    result = CliRunner().invoke(
        main,
        [
            "--config",
            str(path),
            "init",
            "--domain",
            "example.test",
            "--hostname",
            "mail.example.test",
        ],
    )
    assert result.exit_code == 0, result.output
    return path


def run(config: Path, *args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(main, ["--config", str(config), *args], input=stdin)


def test_init_creates_everything_once(tmp_path: Path) -> None:
    path = tmp_path / "etc" / "mailstead.toml"
    first = CliRunner().invoke(main, ["--config", str(path), "init", "--domain", "Bücher.example"])
    assert first.exit_code == 0, first.output
    for what in [
        "config",
        "data directory",
        "mail root",
        "self-signed TLS certificate",
        "user directory",
    ]:
        assert f"created {what} " in first.output
    assert (tmp_path / "etc" / "var" / "mail").is_dir()
    assert (tmp_path / "etc" / "var" / "tls" / "cert.pem").is_file()
    assert (tmp_path / "etc" / "var" / "directory.sqlite3").is_file()
    assert os.stat(path).st_mode & 0o077 == 0
    again = CliRunner().invoke(main, ["--config", str(path), "init"])
    assert again.exit_code == 0
    assert again.output == f"nothing to do: {path} is already initialised\n"


def test_config_path_from_environment(tmp_path: Path) -> None:
    path = tmp_path / "env.toml"
    result = CliRunner().invoke(main, ["init"], env={"MAILSTEAD_CONFIG": str(path)})
    assert result.exit_code == 0, result.output
    assert path.is_file()


def test_user_lifecycle(config: Path) -> None:
    assert run(
        config, "user", "add", "Alice@Example.TEST", "--password-stdin", stdin="s3cret\n"
    ).output == ("added user alice@example.test\n")
    assert run(config, "user", "list").output == "alice@example.test\n"
    assert json.loads(run(config, "user", "list", "--json").output) == [
        {"address": "alice@example.test"}
    ]
    assert (
        run(
            config, "user", "passwd", "alice@example.test", "--password-stdin", stdin="new\n"
        ).exit_code
        == 0
    )
    assert run(config, "user", "del", "alice@example.test").exit_code == 0
    assert json.loads(run(config, "user", "list", "--json").output) == []


def test_password_is_one_line_without_its_newline(config: Path) -> None:
    from mailstead.config import load_config
    from mailstead.directory import Directory

    run(
        config,
        "user",
        "add",
        "alice@example.test",
        "--password-stdin",
        stdin="pass word \r\nignored\n",
    )
    cfg = load_config(config)
    with Directory(cfg.db_path("directory"), cfg.domains) as d:
        assert d.authenticate("alice@example.test", "pass word ") == "alice@example.test"


def test_alias_lifecycle(config: Path) -> None:
    result = run(config, "alias", "add", "Team@example.test", "a@example.test", "b@remote.test")
    assert result.exit_code == 0, result.output
    assert run(config, "alias", "add", "@example.test", "a@example.test").exit_code == 0
    assert json.loads(run(config, "alias", "list", "--json").output) == [
        {"alias": "@example.test", "targets": ["a@example.test"]},
        {"alias": "team@example.test", "targets": ["a@example.test", "b@remote.test"]},
    ]
    assert (
        "team@example.test -> a@example.test, b@remote.test\n"
        in run(config, "alias", "list").output
    )
    assert run(config, "alias", "del", "team@example.test").exit_code == 0
    assert len(json.loads(run(config, "alias", "list", "--json").output)) == 1


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
