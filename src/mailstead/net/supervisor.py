"""Runs worker processes that share the listening sockets, and restarts them.

The parent binds the sockets, forks the workers (each then runs its own
event loop) and only supervises: SIGTERM/SIGINT is passed on to every
worker, a worker that dies is restarted, and each worker dies with its
parent (Linux ``PR_SET_PDEATHSIG``), so ``kill -9`` of the server leaves no
orphan accepting mail.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import time
from collections.abc import Callable

log = logging.getLogger("mailstead")

_PR_SET_PDEATHSIG = 1
# A worker that dies this soon after its start counts as crash-looping.
_QUICK_DEATH = 5.0
# Quick deaths in a row before the supervisor gives up on the whole server.
_MAX_QUICK_DEATHS = 5


def _die_with_parent(parent: int) -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the supervisor still stops us
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


class Supervisor:
    """Owns the worker processes of one ``serve``: start, restart, stop."""

    def __init__(
        self,
        workers: int,
        run_worker: Callable[[int], object],
        *,
        on_exit: Callable[[int], object] = lambda index: None,
    ) -> None:
        self.workers = workers
        self._run_worker = run_worker
        self._on_exit = on_exit
        self._children: dict[int, tuple[int, float]] = {}  # pid -> (index, started)
        self._stopping = False
        self._quick_deaths = 0

    def run(self) -> None:
        """Start the workers and return when all have stopped after a signal."""
        previous = {sig: signal.signal(sig, self._stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            for index in range(self.workers):
                self._spawn(index)
            while self._children:
                try:
                    pid, status = os.wait()
                except ChildProcessError:
                    break
                self._reap(pid, status)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _stop(self, signum: int, frame: object) -> None:
        if not self._stopping:
            log.info("shutting down")
        self._stopping = True
        for pid in list(self._children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def _spawn(self, index: int) -> None:
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the worker
            code = 0
            try:
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                _die_with_parent(parent)
                self._run_worker(index)
            except BaseException:
                log.exception("worker %d failed", index)
                code = 1
            finally:
                logging.shutdown()
                os._exit(code)
        self._children[pid] = (index, time.monotonic())

    def _reap(self, pid: int, status: int) -> None:
        entry = self._children.pop(pid, None)
        if entry is None:
            return
        index, started = entry
        self._on_exit(index)
        if self._stopping:
            return
        log.error("worker %d (pid %d) exited (status %d); restarting", index, pid, status)
        self._quick_deaths = (
            self._quick_deaths + 1 if time.monotonic() - started < _QUICK_DEATH else 0
        )
        if self._quick_deaths >= _MAX_QUICK_DEATHS:
            log.error("workers keep dying; stopping")
            self._stop(signal.SIGTERM, None)
            return
        time.sleep(min(self._quick_deaths, 5))
        self._spawn(index)
