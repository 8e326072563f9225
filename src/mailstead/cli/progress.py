"""Progress bars on stderr, only for work long enough to need one.

A bar that flashes for a tenth of a second is noise, and one in a cron mail
or a log file is garbage: a :class:`ProgressBar` appears only when stderr is
a terminal and the work, after :data:`SHOW_AFTER` seconds, is not yet half
done — whatever the disk's speed, short work never shows one. It is drawn
with rich and removed when the work ends, leaving the command's own summary
line.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

__all__ = ["SHOW_AFTER", "ProgressBar", "progress_bar"]

#: Seconds of work before a bar may appear (and only if not half done by then).
SHOW_AFTER = 1.0


class ProgressBar:
    """Owns the bar of one piece of work measured in octets: ``begin(total)``, then
    ``advance(octets)`` as they are done (the callbacks backup and restore take)."""

    def __init__(
        self,
        label: str,
        *,
        file: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label = label
        self._file = file if file is not None else sys.stderr
        self._clock = clock
        self._total = 0
        self._done = 0
        self._started = 0.0
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._terminal = self._file.isatty()

    @property
    def shown(self) -> bool:
        """Whether the bar is on the screen (or was, before :meth:`close`)."""
        return self._progress is not None

    def begin(self, total: int) -> None:
        self._total = max(total, 1)
        self._started = self._clock()

    def advance(self, octets: int) -> None:
        self._done += octets
        if self._progress is None and self._terminal and self._long_enough():
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=Console(file=self._file, force_terminal=True),
                transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task(self.label, total=self._total)
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, completed=min(self._done, self._total))

    def _long_enough(self) -> bool:
        return self._clock() - self._started >= SHOW_AFTER and self._done * 2 < self._total

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()


@contextmanager
def progress_bar(label: str) -> Iterator[ProgressBar]:
    """A :class:`ProgressBar` on stderr, taken down when the block ends (or fails)."""
    bar = ProgressBar(label)
    try:
        yield bar
    finally:
        bar.close()
