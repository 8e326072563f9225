"""`mailstead init`, and where the root group finds the config."""

from __future__ import annotations

import os
from pathlib import Path

from click.testing import CliRunner

from mailstead.cli import main


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
