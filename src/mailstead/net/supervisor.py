"""Runs worker processes that share the listening sockets, and restarts them.

The parent binds the sockets, forks the workers (each then runs its own
event loop) and only supervises: SIGTERM/SIGINT is passed on to every
worker, SIGHUP too once the parent has reloaded, a worker that dies is
restarted, and each worker dies with its parent (Linux
``PR_SET_PDEATHSIG``), so ``kill -9`` of the server leaves no orphan
accepting mail.

A worker says when it has started (:meth:`Supervisor.started`). One that
exits before that stops the whole server with :class:`WorkerFailed`
instead of being restarted: what broke its start (a certificate, a
database) breaks the next one too, and a server that restarts forever
while its ports accept connections no one serves hides the problem
(gunicorn and Postfix's master stop likewise). One exception: once the
server has been up, a worker that exits with :data:`TEMPORARY_FAILURE`
(its cluster database did not answer while it started) is started again
after a growing pause, up to :data:`_RETRY_LIMIT` seconds: a database that
goes away for a minute must not take every node down with it, and its
other workers keep serving meanwhile.

Two deadlines make sure a stuck worker costs seconds, never the server:
the watchdog kills (SIGKILL) a worker whose event loop has not beaten for
``block_limit`` seconds (see watchdog.py) and starts a new one, and after
SIGTERM, workers still running at ``shutdown_timeout`` are killed, so
``serve`` always exits. Killing loses nothing acknowledged: a 250 is only
sent once the message is on disk (docs/durability.md).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import time
from collections.abc import Callable

from mailstead.net.watchdog import Heartbeats

log = logging.getLogger("mailstead")

_PR_SET_PDEATHSIG = 1
# A worker that dies this soon after its start counts as crash-looping.
_QUICK_DEATH = 5.0
# Quick deaths in a row before the supervisor gives up on the whole server.
_MAX_QUICK_DEATHS = 5
# Seconds between two looks at the workers' heartbeats and exits.
_TICK = 0.2


class WorkerFailed(Exception):
    """The workers could not be kept running; the server stopped (one-line message)."""


#: The exit status of a worker whose start failed on something that comes
#: back by itself (the cluster database did not answer): EX_TEMPFAIL.
TEMPORARY_FAILURE = 75
# Seconds to wait before starting such a worker again: doubling from 1, at most this.
_RETRY_LIMIT = 30.0


def exit_description(status: int) -> str:
    """A wait status in words: ``exited with status 1``, ``killed by signal 9 (SIGKILL)``."""
    code = os.waitstatus_to_exitcode(status)
    if code >= 0:
        return f"exited with status {code}"
    try:
        name = f" ({signal.Signals(-code).name})"
    except ValueError:
        name = ""
    return f"killed by signal {-code}{name}"


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
        on_ready: Callable[[], object] = lambda: None,
        on_reload: Callable[[], bool] = lambda: True,
        on_stop: Callable[[], object] = lambda: None,
        heartbeats: Heartbeats | None = None,
        block_limit: float = 10.0,
        shutdown_timeout: float = 30.0,
    ) -> None:
        self.workers = workers
        self._run_worker = run_worker
        self._on_exit = on_exit
        # Once, when every first worker has started; at SIGHUP (True: tell
        # the workers); at the first SIGTERM or SIGINT.
        self._on_ready: Callable[[], object] | None = on_ready
        self._on_reload = on_reload
        self._on_stop = on_stop
        self._reload = False
        self._started = multiprocessing.RawArray(ctypes.c_bool, workers)
        self._failure: str | None = None
        self._heartbeats = heartbeats
        self._block_limit = block_limit
        self._shutdown_timeout = shutdown_timeout
        self._children: dict[int, tuple[int, float]] = {}  # pid -> (index, started)
        self._killed: set[int] = set()  # pids sent SIGKILL, not yet reaped
        self._stop_deadline: float | None = None
        self._quick_deaths = 0
        self._was_ready = False
        # Workers to start again at a time (after TEMPORARY_FAILURE), and
        # how many such failures each has had in a row.
        self._retry_at: dict[int, float] = {}
        self._temporary_failures = [0] * workers

    @property
    def _stopping(self) -> bool:
        return self._stop_deadline is not None

    def started(self, index: int) -> None:
        """Worker ``index`` is serving (called in the worker, after its start-up)."""
        self._started[index] = True

    def run(self) -> None:
        """Start the workers and return when all have stopped after a signal.

        Raises WorkerFailed when a worker died while starting or the workers
        kept dying; the others have been stopped by then.
        """
        previous = {sig: signal.signal(sig, self._stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, self._hangup)
        try:
            for index in range(self.workers):
                self._spawn(index)
            while self._children or (self._retry_at and not self._stopping):
                try:
                    pid, status = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    pid, status = 0, 0  # none running: only retries are left
                if pid:
                    self._reap(pid, status)
                    continue
                self._retry_due()
                if self._reload:
                    self._reload = False
                    self._reload_workers()
                if self._on_ready is not None and all(self._started):
                    self._on_ready()
                    self._on_ready = None
                    self._was_ready = True
                self._watch()
                time.sleep(_TICK)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if self._failure is not None:
            raise WorkerFailed(self._failure)

    def _hangup(self, signum: int, frame: object) -> None:
        # Only noted: the loop reloads between two looks at the workers.
        self._reload = True

    def _reload_workers(self) -> None:
        if self._stopping or not self._on_reload():
            return
        for pid in list(self._children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGHUP)

    def _watch(self) -> None:
        """Kill workers whose loop is blocked, and all of them past the shutdown deadline."""
        overdue = self._stop_deadline is not None and time.monotonic() > self._stop_deadline
        for pid, (index, _) in list(self._children.items()):
            if pid in self._killed:
                continue
            if overdue:
                log.error(
                    "worker %d (pid %d) still running %.0f s after SIGTERM; killing it",
                    index,
                    pid,
                    self._shutdown_timeout,
                )
            elif self._heartbeats is not None:
                silence = self._heartbeats.silence(index)
                if silence <= self._block_limit:
                    continue
                note = self._heartbeats.last_note(index) or "no session input"
                log.error(
                    "watchdog: worker %d (pid %d) blocked for %.1f s, last in: %s; killing it",
                    index,
                    pid,
                    silence,
                    note,
                )
            else:
                continue
            self._killed.add(pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def _retry_later(self, index: int, pid: int) -> None:
        self._temporary_failures[index] += 1
        pause = min(2.0 ** (self._temporary_failures[index] - 1), _RETRY_LIMIT)
        log.error(
            "worker %d (pid %d) could not start: its database did not answer; "
            "starting it again in %.0f s",
            index,
            pid,
            pause,
        )
        self._retry_at[index] = time.monotonic() + pause

    def _retry_due(self) -> None:
        if self._stopping:
            self._retry_at.clear()
            return
        now = time.monotonic()
        for index, when in list(self._retry_at.items()):
            if when <= now:
                del self._retry_at[index]
                self._spawn(index)

    def _fail(self, reason: str) -> None:
        log.error("%s; stopping", reason)
        self._failure = reason
        self._stop(signal.SIGTERM, None)

    def _stop(self, signum: int, frame: object) -> None:
        if not self._stopping:
            log.info("shutting down")
            self._stop_deadline = time.monotonic() + self._shutdown_timeout
            self._on_stop()
        for pid in list(self._children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def _spawn(self, index: int) -> None:
        parent = os.getpid()
        if self._heartbeats is not None:
            self._heartbeats.reset(index)
        self._started[index] = False
        pid = os.fork()
        if pid == 0:  # the worker
            code = 0
            try:
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                # Until the worker handles SIGHUP itself, a reload must not kill it.
                signal.signal(signal.SIGHUP, signal.SIG_IGN)
                _die_with_parent(parent)
                self._run_worker(index)
            except SystemExit as exc:  # the worker said why already
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:
                log.exception("worker %d failed", index)
                code = 1
            finally:
                logging.shutdown()
                os._exit(code)
        self._children[pid] = (index, time.monotonic())

    def _reap(self, pid: int, status: int) -> None:
        killed = pid in self._killed
        self._killed.discard(pid)
        entry = self._children.pop(pid, None)
        if entry is None:
            return
        index, started = entry
        self._on_exit(index)
        if self._stopping:
            return
        how = exit_description(status)
        if not killed and not self._started[index]:
            if self._was_ready and os.waitstatus_to_exitcode(status) == TEMPORARY_FAILURE:
                self._retry_later(index, pid)
            else:
                self._fail(f"worker {index} (pid {pid}) {how} while starting")
            return
        self._temporary_failures[index] = 0
        log.error("worker %d (pid %d) %s; restarting", index, pid, how)
        self._quick_deaths = (
            self._quick_deaths + 1 if time.monotonic() - started < _QUICK_DEATH else 0
        )
        if self._quick_deaths >= _MAX_QUICK_DEATHS:
            self._fail(f"workers keep dying (worker {index} {how})")
            return
        time.sleep(min(self._quick_deaths, 5))
        self._spawn(index)
