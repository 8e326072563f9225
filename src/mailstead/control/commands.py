"""What the supervisor does for each control request: status, reload, stop, wake.

Runs in the control thread of the supervisor (``serve``'s first process).
Reload and stop are the signals an operator would send: the request sends
SIGHUP or SIGTERM to this very process, so the supervisor's own loop does
the work exactly as for ``kill -HUP``; a reload request then waits for the
reload's outcome (:class:`ReloadGate`) to say what changed.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from mailstead import __version__
from mailstead.config import Config
from mailstead.control.board import WorkerBoard, WorkerState
from mailstead.control.protocol import Request
from mailstead.control.server import CommandFailed
from mailstead.control.wake import wake
from mailstead.metrics import sessions_by_protocol
from mailstead.metrics.queue_stats import queue_source, queue_summary

__all__ = ["ListenerAddress", "MasterControl", "ReloadGate", "rfc3339"]

log = logging.getLogger("mailstead")

# A reload loads a config, a certificate and the webhook endpoints: seconds at worst.
_RELOAD_WAIT = 20.0
# Then each worker reloads its own copy: a config read and a certificate load.
_WORKER_RELOAD_WAIT = 10.0


def rfc3339(when: float) -> str:
    """RFC 3339 UTC, whole seconds, as every ``--json`` output of Mailstead."""
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class ListenerAddress:
    """One bound listening socket: the ``[listen]`` key and the address it got."""

    name: str
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class ReloadOutcome:
    ok: bool
    summary: str
    at: float


class ReloadGate:
    """Owns the outcome of the latest reload, for the control thread to wait on.

    The supervisor's loop calls :meth:`finished` after each reload, whoever
    asked for it (SIGHUP or a request).
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._count = 0
        self.last: ReloadOutcome | None = None

    def finished(self, ok: bool, summary: str) -> None:
        with self._changed:
            self._count += 1
            self.last = ReloadOutcome(ok, summary, time.time())
            self._changed.notify_all()

    def request(self, stopping: Callable[[], bool], timeout: float = _RELOAD_WAIT) -> ReloadOutcome:
        """Send SIGHUP to this process and wait for the reload it causes."""
        with self._changed:
            before = self._count
        os.kill(os.getpid(), signal.SIGHUP)
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._count == before:
                if stopping():
                    raise CommandFailed("the server is stopping: no reload")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise CommandFailed(f"no reload within {timeout:.0f} s; see the server's log")
                self._changed.wait(min(left, 0.2))
            assert self.last is not None
            return self.last


class MasterControl:
    """Owns the answers to control requests, from the supervisor's state."""

    def __init__(
        self,
        *,
        config: Callable[[], Config],
        board: WorkerBoard,
        mail_workers: int,
        listeners: Sequence[ListenerAddress],
        silence: Callable[[int], float],
        reloads: ReloadGate,
    ) -> None:
        self._config = config
        self.board = board
        #: Board slots below this are mail workers; the rest send webhooks.
        self.mail_workers = mail_workers
        self.listeners = tuple(listeners)
        self._silence = silence
        self.reloads = reloads
        self.started_at = time.time()
        self.ready = False
        self.stopping = False

    def handle(self, request: Request) -> dict[str, object]:
        """Do ``request``; its result object. Raises CommandFailed."""
        if request.command == "status":
            return self.status()
        if request.command == "reload":
            return self.reload()
        if request.command == "stop":
            return self.stop()
        return {"workers_woken": self.wake()}

    # -- commands -----------------------------------------------------------------

    def status(self) -> dict[str, object]:
        """The result of ``status``, printed by ``mailstead status --json``; a stable shape::

            {"version": "0.1.0", "pid": 4100,
             "state": "starting" | "serving" | "stopping",
             "started_at": RFC 3339 UTC, "uptime_seconds": number,
             "config": path, "data_dir": path, "hostname": str, "domains": [str],
             "workers": [{"index": int, "role": "mail" | "webhooks", "pid": int | null,
                          "state": "starting" | "serving" | "stopping" | "restarting",
                          "started_at": RFC 3339 | null, "restarts": int,
                          "last_beat_seconds": number | null}],
             "listeners": [{"name": "smtp" | ... | "metrics", "host": str, "port": int}],
             "sessions": {"smtp": int, "submission": int, ...} | null,  # null: unknown
             "queue": {"messages": int, "recipients": {state: int},
                       "oldest_received_at": RFC 3339 | null,
                       "oldest_age_seconds": number | null},
             "last_reload": {"at": RFC 3339, "ok": bool, "summary": str} | null}

        New keys may be added; none is renamed or removed.
        """
        config = self._config()
        now = time.time()
        queue = queue_summary(queue_source(config))
        last = self.reloads.last
        return {
            "version": __version__,
            "pid": os.getpid(),
            "state": "stopping" if self.stopping else "serving" if self.ready else "starting",
            "started_at": rfc3339(self.started_at),
            "uptime_seconds": round(now - self.started_at, 1),
            "config": str(config.path),
            "data_dir": str(config.data_dir),
            "hostname": config.hostname,
            "domains": list(config.domains),
            "workers": [self._worker(index, now) for index in range(self.board.workers)],
            "listeners": [{"name": a.name, "host": a.host, "port": a.port} for a in self.listeners],
            "sessions": _live_sessions(config),
            "queue": {
                "messages": queue.messages,
                "recipients": queue.recipients,
                "oldest_received_at": None if queue.oldest is None else rfc3339(queue.oldest),
                "oldest_age_seconds": (
                    None if queue.oldest is None else round(max(0.0, now - queue.oldest), 1)
                ),
            },
            "last_reload": (
                None
                if last is None
                else {"at": rfc3339(last.at), "ok": last.ok, "summary": last.summary}
            ),
        }

    def _worker(self, index: int, now: float) -> dict[str, object]:
        slot = self.board.slot(index)
        alive = slot.state is not WorkerState.GONE
        state = {
            WorkerState.GONE: "restarting",
            WorkerState.STARTING: "starting",
            WorkerState.SERVING: "serving",
        }[slot.state]
        if self.stopping and alive:
            state = "stopping"
        return {
            "index": index,
            "role": "mail" if index < self.mail_workers else "webhooks",
            "pid": slot.pid if alive else None,
            "state": state,
            "started_at": rfc3339(slot.started_at) if alive else None,
            "restarts": slot.restarts,
            # The watchdog's view: seconds since its event loop last beat.
            "last_beat_seconds": round(self._silence(index), 1) if alive else None,
        }

    def reload(self) -> dict[str, object]:
        """Reload as SIGHUP does; reply once every mail worker has applied it too.

        So the next session (whichever worker takes it) sees the new config.
        """
        if self.stopping:
            raise CommandFailed("the server is stopping: no reload")
        before = {
            slot.index: (slot.pid, self.board.reloads(slot.index))
            for slot in self.board.slots()[: self.mail_workers]
            if slot.state is WorkerState.SERVING
        }
        outcome = self.reloads.request(lambda: self.stopping)
        if not outcome.ok:
            raise CommandFailed(outcome.summary)
        late = self._wait_for_workers(before, time.monotonic() + _WORKER_RELOAD_WAIT)
        summary = outcome.summary
        if late:
            summary += f"; worker(s) {', '.join(map(str, late))} not reloaded yet (see the log)"
        return {"summary": summary}

    def _wait_for_workers(self, before: dict[int, tuple[int, int]], deadline: float) -> list[int]:
        """Wait until each worker in ``before`` reloaded (or was replaced); the late ones."""
        while True:
            late = []
            for index, (pid, count) in before.items():
                slot = self.board.slot(index)
                if slot.pid == pid and self.board.reloads(index) == count:
                    late.append(index)
            if not late or time.monotonic() >= deadline or self.stopping:
                return late
            time.sleep(0.02)

    def stop(self) -> dict[str, object]:
        config = self._config()
        if not self.stopping:
            os.kill(os.getpid(), signal.SIGTERM)
        return {"pid": os.getpid(), "shutdown_timeout": config.limits.shutdown_timeout}

    def wake(self) -> int:
        """Tell every serving mail worker to look at the queue now; how many were told."""
        return wake(self.board.serving_pids(range(self.mail_workers)))


def _live_sessions(config: Config) -> dict[str, int] | None:
    """Sessions open now by protocol, every worker together; None when unknown."""
    try:
        return sessions_by_protocol(config)
    except (OSError, ValueError) as exc:  # a status reply must not fail on a metrics problem
        log.warning("sessions unknown: %s", exc)
        return None
