"""A progress bar only for work long enough to need one, and only on a terminal."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from mailstead.cli.progress import SHOW_AFTER, ProgressBar
from tests.cli.runner import run

MB = 1_000_000


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def work(bar: ProgressBar, clock: Clock, total: int, steps: list[tuple[float, int]]) -> None:
    """``begin(total)``, then each (seconds passed, octets done) as an ``advance``."""
    bar.begin(total)
    for seconds, octets in steps:
        clock.now += seconds
        bar.advance(octets)
    bar.close()


def test_slow_work_on_a_terminal_shows_a_bar() -> None:
    out, clock = Terminal(), Clock()
    bar = ProgressBar("backing up", file=out, clock=clock)
    work(bar, clock, 100 * MB, [(0.5, 10 * MB), (SHOW_AFTER, 10 * MB), (5, 80 * MB)])
    assert bar.shown
    assert "backing up" in out.getvalue()


@pytest.mark.parametrize(
    "steps",
    [
        [(0.1, 50 * MB), (0.1, 50 * MB)],  # over before a second passed
        [(0.2, 60 * MB), (SHOW_AFTER, 40 * MB)],  # more than half done when it would show
    ],
)
def test_short_work_shows_nothing(steps: list[tuple[float, int]]) -> None:
    out, clock = Terminal(), Clock()
    bar = ProgressBar("backing up", file=out, clock=clock)
    work(bar, clock, 100 * MB, steps)
    assert not bar.shown and out.getvalue() == ""


def test_no_terminal_no_bar() -> None:
    out, clock = io.StringIO(), Clock()
    bar = ProgressBar("restoring", file=out, clock=clock)
    work(bar, clock, 100 * MB, [(5, 1 * MB), (5, 99 * MB)])
    assert not bar.shown and out.getvalue() == ""


def test_a_backup_from_a_script_prints_only_its_result(config: Path, tmp_path: Path) -> None:
    result = run(config, "backup", str(tmp_path / "bk"))
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert result.stdout.startswith("backed up ") and result.stdout.count("\n") == 1
