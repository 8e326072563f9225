"""Several worker processes share the listeners; the supervisor keeps them alive."""

from __future__ import annotations

import os
import signal
import smtplib
import time
from collections.abc import Callable
from pathlib import Path

from tests.e2e.process import ServerProcess, children


def _children(parent: int) -> set[int]:
    """The mail workers and the webhook dispatcher (serve's one extra process)."""
    return set(children(parent))


def _workers(parent: int) -> set[int]:
    """The mail workers: the dispatcher runs niced."""
    return {pid for pid, nice in children(parent).items() if nice == 0}


def _wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def _send(server: ServerProcess, subject: str) -> None:
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as smtp:
        smtp.sendmail(
            "carol@remote.test", ["alice@example.test"], f"Subject: {subject}\r\n\r\nx\r\n".encode()
        )


def test_a_dead_worker_is_replaced_and_mail_keeps_flowing(tmp_path: Path) -> None:
    with ServerProcess(tmp_path, workers=3) as server:
        assert server.proc is not None
        parent = server.proc.pid
        _wait_for(lambda: len(_workers(parent)) == 3)
        victim = min(_workers(parent))
        os.kill(victim, signal.SIGKILL)
        _wait_for(lambda: victim not in _workers(parent) and len(_workers(parent)) == 3)
        for n in range(12):  # enough connections to reach every worker
            _send(server, f"m{n}")
        assert len(server.handle.new_messages("alice@example.test")) == 12


def test_sigterm_stops_every_worker(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, workers=2)
    server.start()
    assert server.proc is not None
    parent = server.proc.pid
    _wait_for(lambda: len(_workers(parent)) == 2 and len(_children(parent)) == 3)
    workers = _children(parent)
    _send(server, "before stop")
    server.stop()
    assert server.proc.returncode == 0
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()
