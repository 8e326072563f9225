"""Running `mailstead` in-process, as an operator would from a shell."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner, Result

from mailstead.cli import main


def run(config: Path, *args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(main, ["--config", str(config), *args], input=stdin)
