"""A freshly initialised configuration for the command tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

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
