"""What the supervisor answers: status from its board and the queue, wake,
reload waiting for the supervisor's loop, and the sessions adapter."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailstead.config import Config, load_config
from mailstead.control import commands
from mailstead.control.board import WorkerBoard
from mailstead.control.commands import ListenerAddress, MasterControl, ReloadGate, _live_sessions
from mailstead.control.protocol import Request
from mailstead.control.server import CommandFailed
from mailstead.control.wake import WAKE_SIGNAL
from mailstead.metrics.queue_stats import QueueSummary, queue_summary
from mailstead.mta.envelope import Attempt, QueuedRecipient
from mailstead.mta.queue import Queue
from tests.control.status_shape import check_status
from tests.e2e.harness import write_config


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return load_config(write_config(tmp_path))


def _master(config: Config, board: WorkerBoard, reloads: ReloadGate | None = None) -> MasterControl:
    return MasterControl(
        config=lambda: config,
        board=board,
        mail_workers=board.workers - 1,
        listeners=[
            ListenerAddress("smtp", "127.0.0.1", 2525),
            ListenerAddress("imap", "::1", 2143),
        ],
        silence=lambda index: 0.25,
        reloads=reloads or ReloadGate(),
    )


def _queue(config: Config, *, deferred_until: float) -> list[str]:
    with Queue(config.data_dir) as queue:
        first = queue.enqueue(
            "alice@example.test",
            [QueuedRecipient("bob@remote.test"), QueuedRecipient("carol@remote.test")],
            [b"Subject: one\r\n\r\nhi\r\n"],
            received_at=time.time() - 600,
        )
        second = queue.enqueue(
            "alice@example.test",
            [QueuedRecipient("dan@far.test")],
            [b"Subject: two\r\n\r\nhi\r\n"],
            received_at=time.time() - 60,
        )
        queue.record(first, [Attempt("bob@remote.test", "deferred", "421 busy", deferred_until)])
    return [first, second]


def test_status_of_a_server_with_a_queue(config: Config) -> None:
    _queue(config, deferred_until=time.time() + 3600)
    board = WorkerBoard(3)
    board.starting(0)
    board.serving(0)
    board.starting(2)
    board.exited(1, restart=True)
    master = _master(config, board)
    master.ready = True

    status = master.handle(Request("status"))

    check_status(status)
    assert status["state"] == "serving"
    assert status["pid"] == os.getpid()
    assert status["workers"] == [
        {
            "index": 0,
            "role": "mail",
            "pid": os.getpid(),
            "state": "serving",
            "started_at": status["workers"][0]["started_at"],  # type: ignore[index]
            "restarts": 0,
            "last_beat_seconds": 0.2,
        },
        {
            "index": 1,
            "role": "mail",
            "pid": None,
            "state": "restarting",
            "started_at": None,
            "restarts": 1,
            "last_beat_seconds": None,
        },
        {
            "index": 2,
            "role": "webhooks",
            "pid": os.getpid(),
            "state": "starting",
            "started_at": status["workers"][2]["started_at"],  # type: ignore[index]
            "restarts": 0,
            "last_beat_seconds": 0.2,
        },
    ]
    assert status["listeners"] == [
        {"name": "smtp", "host": "127.0.0.1", "port": 2525},
        {"name": "imap", "host": "::1", "port": 2143},
    ]
    queue = status["queue"]
    assert isinstance(queue, dict)
    assert queue["messages"] == 2
    assert queue["recipients"] == {"deferred": 1, "pending": 2}
    assert 599 <= queue["oldest_age_seconds"] < 700
    assert status["last_reload"] is None


def test_status_while_stopping(config: Config) -> None:
    board = WorkerBoard(2)
    board.starting(0)
    master = _master(config, board)
    master.stopping = True
    status = master.handle(Request("status"))
    check_status(status)
    assert status["state"] == "stopping"
    assert [w["state"] for w in status["workers"]] == ["stopping", "restarting"]  # type: ignore[attr-defined,index]


def test_queue_summary_reads_and_changes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "queue.sqlite3"
    assert queue_summary(db) == QueueSummary()
    assert not db.exists()  # read-only: never created


@pytest.fixture
def woken() -> Iterator[list[int]]:
    """This process as a serving mail worker: wake-ups are counted."""
    seen: list[int] = []
    previous = signal.signal(WAKE_SIGNAL, lambda signum, frame: seen.append(signum))
    yield seen
    signal.signal(WAKE_SIGNAL, previous)


def test_wake_signals_the_serving_mail_workers_only(config: Config, woken: list[int]) -> None:
    board = WorkerBoard(3)
    board.starting(0)
    board.serving(0)  # this process
    board.starting(1)  # not yet serving: never signalled
    board.starting(2)
    board.serving(2)  # the webhook dispatcher: never signalled
    master = _master(config, board)

    assert master.handle(Request("wake")) == {"workers_woken": 1}

    deadline = time.monotonic() + 5
    while not woken and time.monotonic() < deadline:
        time.sleep(0.01)
    assert woken == [WAKE_SIGNAL]


@pytest.fixture
def hangups() -> Iterator[list[int]]:
    seen: list[int] = []
    previous = signal.signal(signal.SIGHUP, lambda signum, frame: seen.append(signum))
    yield seen
    signal.signal(signal.SIGHUP, previous)


def _as_the_supervisor(gate: ReloadGate, seen: list[int], ok: bool, summary: str) -> None:
    """The supervisor's loop: at the SIGHUP, reload and say how it went."""
    deadline = time.monotonic() + 10
    while not seen:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    gate.finished(ok, summary)


def _reload_in_thread(master: MasterControl) -> list[object]:
    out: list[object] = []

    def ask() -> None:
        try:
            out.append(master.handle(Request("reload")))
        except CommandFailed as exc:
            out.append(exc)

    thread = threading.Thread(target=ask)
    thread.start()
    return out


def test_reload_is_a_sighup_and_replies_with_what_the_reload_said(
    config: Config, hangups: list[int]
) -> None:
    gate = ReloadGate()
    master = _master(config, WorkerBoard(2), gate)
    out = _reload_in_thread(master)
    _as_the_supervisor(gate, hangups, True, "domains example.test; users and aliases are read live")
    deadline = time.monotonic() + 10
    while not out:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert out == [{"summary": "domains example.test; users and aliases are read live"}]
    last = master.handle(Request("status"))["last_reload"]
    assert isinstance(last, dict) and last["ok"] is True


def test_a_refused_reload_is_the_reason(config: Config, hangups: list[int]) -> None:
    gate = ReloadGate()
    master = _master(config, WorkerBoard(2), gate)
    out = _reload_in_thread(master)
    _as_the_supervisor(gate, hangups, False, "reload failed, keeping the previous config: x")
    deadline = time.monotonic() + 10
    while not out:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert [str(e) for e in out] == ["reload failed, keeping the previous config: x"]


def test_a_reload_asked_while_stopping_says_so(config: Config, hangups: list[int]) -> None:
    master = _master(config, WorkerBoard(2))
    master.stopping = True
    with pytest.raises(CommandFailed, match="the server is stopping: no reload"):
        master.handle(Request("reload"))
    assert hangups == []


def test_stop_is_a_sigterm(config: Config) -> None:
    seen: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
    try:
        result = _master(config, WorkerBoard(2)).handle(Request("stop"))
        deadline = time.monotonic() + 5
        while not seen and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert seen == [signal.SIGTERM]
    assert result == {"pid": os.getpid(), "shutdown_timeout": config.limits.shutdown_timeout}


# -- sessions: mailstead.metrics may be absent ------------------------------------


def test_sessions_unknown_when_the_metrics_fail(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(c: Config) -> dict[str, int]:
        raise OSError("no multiprocess directory")

    monkeypatch.setattr(commands, "sessions_by_protocol", broken)
    assert _live_sessions(config) is None
