"""What the supervisor knows of its worker processes, readable by the control thread.

Made before the first fork, in shared memory: each worker writes its own
pid and state (it knows when it has started serving), the supervisor
clears a slot when it reaps the process and counts restarts. The control
thread only reads. A slot is a few aligned integers, each written whole,
so a reader sees a value before or after a write, never half of one.
"""

from __future__ import annotations

import ctypes
import enum
import multiprocessing
import os
import time
from dataclasses import dataclass

__all__ = ["WorkerBoard", "WorkerSlot", "WorkerState"]


class WorkerState(enum.IntEnum):
    """Where a worker process is in its life."""

    GONE = 0  # exited; the supervisor is about to start another
    STARTING = 1  # forked, not yet serving
    SERVING = 2  # its listeners or the dispatcher run: it may be signalled


@dataclass(frozen=True, slots=True)
class WorkerSlot:
    """One worker as the board shows it at one moment."""

    index: int
    pid: int
    state: WorkerState
    started_at: float  # Unix time of the fork; 0.0 when gone
    restarts: int


class WorkerBoard:
    """Owns the shared memory of every worker slot of one ``serve``."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pids = multiprocessing.RawArray(ctypes.c_int, workers)
        self._states = multiprocessing.RawArray(ctypes.c_int, workers)
        self._started = multiprocessing.RawArray(ctypes.c_double, workers)
        self._restarts = multiprocessing.RawArray(ctypes.c_int, workers)
        # Reloads each slot's worker has done (SIGHUP), for a reload to wait on.
        self._reloads = multiprocessing.RawArray(ctypes.c_int, workers)

    # -- the worker's side --------------------------------------------------------

    def starting(self, index: int) -> None:
        """Called first thing in a new worker process."""
        self._started[index] = time.time()
        self._pids[index] = os.getpid()
        self._states[index] = WorkerState.STARTING

    def serving(self, index: int) -> None:
        """Called by the worker once it serves (and handles the signals it may be sent)."""
        self._states[index] = WorkerState.SERVING

    def reloaded(self, index: int) -> None:
        """Called by the worker when it has applied a reload."""
        self._reloads[index] += 1

    # -- the supervisor's side ----------------------------------------------------

    def exited(self, index: int, *, restart: bool) -> None:
        """Worker ``index`` was reaped; ``restart``: another takes its place."""
        self._states[index] = WorkerState.GONE
        self._pids[index] = 0
        self._started[index] = 0.0
        if restart:
            self._restarts[index] += 1

    # -- readers ------------------------------------------------------------------

    def slot(self, index: int) -> WorkerSlot:
        state = WorkerState(self._states[index])
        pid = self._pids[index] if state is not WorkerState.GONE else 0
        return WorkerSlot(index, pid, state, self._started[index], self._restarts[index])

    def slots(self) -> list[WorkerSlot]:
        return [self.slot(index) for index in range(self.workers)]

    def reloads(self, index: int) -> int:
        """How many reloads worker ``index`` (and its predecessors) applied."""
        return int(self._reloads[index])

    def serving_pids(self, indexes: range) -> list[int]:
        """The pids of the workers in ``indexes`` that serve now."""
        found = (self.slot(index) for index in indexes)
        return [s.pid for s in found if s.state is WorkerState.SERVING and s.pid > 0]
