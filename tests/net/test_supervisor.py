"""The supervisor: a worker that dies while starting stops the server; SIGHUP reaches workers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap

import pytest

from mailstead.net.supervisor import exit_description


@pytest.mark.parametrize(
    ("status", "said"),
    [
        (0, "exited with status 0"),
        (1 << 8, "exited with status 1"),
        (signal.SIGKILL, "killed by signal 9 (SIGKILL)"),
        (signal.SIGSEGV | 0x80, "killed by signal 11 (SIGSEGV)"),  # with a core dump
    ],
)
def test_wait_statuses_in_words(status: int, said: str) -> None:
    assert exit_description(status) == said


def _supervise(body: str) -> subprocess.CompletedProcess[str]:
    """Run a Supervisor in its own process (it forks); its log goes to stdout."""
    program = textwrap.dedent(
        """
        import logging, os, signal, sys, time
        from mailstead.net.supervisor import Supervisor, WorkerFailed
        logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
        """
    ) + textwrap.dedent(body)
    with tempfile.NamedTemporaryFile(prefix="starts-") as starts:
        return subprocess.run(
            [sys.executable, "-c", program],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "STARTS": starts.name},
        )


def test_a_worker_that_dies_while_starting_stops_everything() -> None:
    run = _supervise(
        """
        def worker(index):
            if index == 1:
                raise SystemExit(1)  # says its reason itself, no traceback
            supervisor.started(index)
            time.sleep(60)

        supervisor = Supervisor(2, worker)
        try:
            supervisor.run()
        except WorkerFailed as exc:
            print(f"failed: {exc}")
        """
    )
    lines = run.stdout.splitlines()
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stdout + run.stderr
    assert not any("restarting" in line for line in lines)
    assert lines[-1].startswith("failed: worker 1 (pid ")
    assert lines[-1].endswith(") exited with status 1 while starting")


def test_a_worker_that_dies_after_starting_is_restarted() -> None:
    run = _supervise(
        """
        runs = []

        def worker(index):
            supervisor.started(index)
            time.sleep(0.3)
            os._exit(3)

        def on_exit(index):
            runs.append(index)
            if len(runs) == 2:
                signal.raise_signal(signal.SIGTERM)

        supervisor = Supervisor(1, worker, on_exit=on_exit, on_ready=lambda: print("ready"))
        supervisor.run()
        print("stopped")
        """
    )
    lines = run.stdout.splitlines()
    assert run.returncode == 0, run.stderr
    assert lines[0] == "ready"
    assert lines[1].startswith("worker 0 (pid ")
    assert lines[1].endswith(") exited with status 3; restarting")
    assert lines[-1] == "stopped"


def test_a_worker_whose_database_is_away_is_started_again_later() -> None:
    # Up once, then the cluster database goes away: the worker's restart
    # fails twice with TEMPORARY_FAILURE (75), is tried again after 1 s and
    # 2 s, and serves the third time; the server never stops meanwhile.
    run = _supervise(
        """
        from mailstead.net.supervisor import TEMPORARY_FAILURE
        t0 = time.monotonic()

        def worker(index):  # each start is a line of the file $STARTS
            with open(os.environ["STARTS"], "a") as f:
                f.write(f"{time.monotonic() - t0:.2f}\\n")
            n = len(open(os.environ["STARTS"]).read().split())
            if n == 1:
                supervisor.started(index)
                time.sleep(0.2)
                os._exit(1)  # dies after starting: restarted at once
            if n in (2, 3):
                raise SystemExit(TEMPORARY_FAILURE)
            supervisor.started(index)
            time.sleep(60)

        def ready():
            print("ready")

        supervisor = Supervisor(1, worker, on_ready=ready)
        import threading
        def stop_when_serving():
            while len(open(os.environ["STARTS"]).read().split()) < 4:
                time.sleep(0.05)
            time.sleep(0.3)
            os.kill(os.getpid(), signal.SIGTERM)
        threading.Thread(target=stop_when_serving, daemon=True).start()
        supervisor.run()
        print("stopped")
        """
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == "ready"
    retries = [line for line in lines if "could not start" in line]
    assert [line.rsplit(" again in ", 1)[1] for line in retries] == ["1 s", "2 s"]
    assert lines[-1] == "stopped"
    assert not any("stopping" in line for line in lines)


def test_a_temporary_failure_at_the_first_start_still_stops_everything() -> None:
    run = _supervise(
        """
        from mailstead.net.supervisor import TEMPORARY_FAILURE

        def worker(index):
            raise SystemExit(TEMPORARY_FAILURE)

        try:
            Supervisor(1, worker).run()
        except WorkerFailed as exc:
            print(f"failed: {exc}")
        """
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[-1].endswith(") exited with status 75 while starting")


def test_sighup_reaches_the_workers_only_when_the_reload_succeeded() -> None:
    run = _supervise(
        """
        reloads = []

        def worker(index):
            # One write per line: the two workers share the pipe.
            line = f"worker {index} reloads\\n".encode()
            signal.signal(signal.SIGHUP, lambda *_: os.write(1, line))
            supervisor.started(index)
            while True:
                time.sleep(60)

        def on_reload():
            reloads.append(1)
            if len(reloads) == 1:
                os.kill(os.getpid(), signal.SIGHUP)  # again, and that one fails
                return True
            time.sleep(0.5)  # time for the workers to print
            os.kill(os.getpid(), signal.SIGTERM)
            return False

        supervisor = Supervisor(
            2, worker, on_reload=on_reload, on_ready=lambda: os.kill(os.getpid(), signal.SIGHUP)
        )
        supervisor.run()
        print(f"reloads {len(reloads)}")
        """
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert sorted(line for line in lines if line.endswith(" reloads")) == [
        "worker 0 reloads",
        "worker 1 reloads",
    ]
    assert lines[-1] == "reloads 2"


def test_a_worker_not_yet_handling_sighup_survives_it() -> None:
    run = _supervise(
        """
        exits = []

        def worker(index):
            supervisor.started(index)
            time.sleep(1.0)

        def on_exit(index):
            exits.append(index)
            signal.raise_signal(signal.SIGTERM)

        supervisor = Supervisor(
            1, worker, on_exit=on_exit, on_ready=lambda: os.kill(os.getpid(), signal.SIGHUP)
        )
        supervisor.run()
        print(f"exits {exits}")
        """
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[-1] == "exits [0]"
    assert "killed by signal" not in run.stdout
