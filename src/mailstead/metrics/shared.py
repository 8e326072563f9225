"""Counts shared by the worker processes of one ``serve``: prometheus_client's multiprocess mode.

``serve`` binds its sockets, then forks the mail workers and the webhook
dispatcher; each process counts into memory-mapped files of its own
(``counter_<pid>.db``, ``gauge_livesum_<pid>.db`` …) in
``<data_dir>/metrics/``, and whichever process answers a scrape (or
``mailstead status``) adds the files up. :func:`start_serving` runs in the
process that binds, before the fork: it empties the directory (what a
previous run left is not this run's) and switches this process, and so
every process forked from it, to counting in files.

Counters of a worker that died stay counted: its file stays, so a total
never goes down when a worker is replaced. Its *live* gauges (open
sessions) do not: the files of a process that no longer exists are
removed (``mark_process_dead``) before the files are added up. The
supervisor would know first when a worker dies, but it is not ours to
change, and checking that each file's process still exists costs one
``kill(pid, 0)`` per process at a scrape.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable
from pathlib import Path

from prometheus_client import values
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from mailstead.config import Config
from mailstead.metrics import instruments
from mailstead.metrics.instruments import PROTOCOLS

__all__ = [
    "SharedFiles",
    "metrics_dir",
    "serving_dir",
    "sessions_by_protocol",
    "start_serving",
]

# prometheus_client reads the directory from this variable when it opens a file.
_ENV = "PROMETHEUS_MULTIPROC_DIR"
# gauge_<mode>_<pid>.db: a live gauge's file names the process that writes it.
_LIVE_FILE = re.compile(r"gauge_live[a-z]*_(\d+)\.db")

_serving: Path | None = None


def metrics_dir(config: Config) -> Path:
    """Where the processes serving ``config`` keep their counts."""
    return config.data_dir / "metrics"


def serving_dir() -> Path | None:
    """The directory this process counts into; None when it counts in memory."""
    return _serving


def start_serving(directory: Path) -> None:
    """Empty ``directory`` and count into it from now on, here and in every fork.

    prometheus_client picks its value class when it is imported, from the
    environment; by then this process has long imported it, so the class
    is replaced here (as prometheus_client's own tests do) and the
    instruments made again with it.
    """
    global _serving
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()
    os.environ[_ENV] = str(directory)
    # A new class: its open files are its own, so none of a previous
    # directory (an earlier server in the same test process) is written.
    values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]
    instruments.reset(shared=True)
    _serving = directory


def stop_serving() -> None:
    """Count in memory again (tests that served from a directory now gone)."""
    global _serving
    os.environ.pop(_ENV, None)
    values.ValueClass = values.MutexValue
    instruments.reset(shared=False)
    _serving = None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # somebody else's process now: not ours, but be safe
        return True
    return True


def live_files(directory: Path, pattern: str = "*.db") -> list[str]:
    """The files of ``directory`` to add up: the live gauges of dead processes are
    removed, files still being created are left out."""
    files = []
    for path in directory.glob(pattern):
        found = _LIVE_FILE.fullmatch(path.name)
        if found is not None and not _alive(int(found[1])):
            with contextlib.suppress(OSError):  # another scrape removed it first
                mark_process_dead(int(found[1]), str(directory))  # type: ignore[no-untyped-call]
            continue
        with contextlib.suppress(FileNotFoundError):
            # A process creates its file empty and sizes it a moment later:
            # read in between, it would fail the scrape. Empty, it holds no count.
            if path.stat().st_size > 0:
                files.append(str(path))
    return files


class SharedFiles:
    """A collector adding up every process's files in one directory (a scrape's source)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def collect(self) -> Iterable[Metric]:
        files = live_files(self.directory)
        merged: Iterable[Metric] = MultiProcessCollector.merge(files, accumulate=True)  # type: ignore[no-untyped-call]
        return merged


def sessions_by_protocol(config: Config) -> dict[str, int]:
    """Sessions open now per protocol, every worker of the server serving ``config`` together.

    Zeros when no server is running (its processes' files are gone or
    theirs are dead). Sessions are counted whether or not ``[listen]
    metrics`` is set: the files are kept while serving either way.
    """
    counts = dict.fromkeys(PROTOCOLS, 0)
    directory = metrics_dir(config)
    if not directory.is_dir():
        return counts
    files = live_files(directory, "gauge_livesum_*.db")
    merged: Iterable[Metric] = MultiProcessCollector.merge(files, accumulate=True)  # type: ignore[no-untyped-call]
    for metric in merged:
        if metric.name != "mailstead_sessions":
            continue
        for sample in metric.samples:
            protocol = sample.labels.get("protocol", "")
            if protocol in counts:
                counts[protocol] += int(sample.value)
    return counts
