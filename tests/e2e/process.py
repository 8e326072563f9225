"""``mailstead serve`` as a real child process, for tests that must kill it.

The in-process harness (:mod:`tests.e2e.harness`) cannot be SIGKILLed
without killing the test. :class:`ServerProcess` runs the real CLI in its
own process on fixed, free 127.0.0.1 ports, so it can be killed at any
instant and restarted on the same ports and the same data directory, the
way an operator's init system would after a crash.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

from mailstead.config import Config, load_config
from tests.e2e.harness import ServerHandle, free_port, write_config


def children(parent: int) -> dict[int, int]:
    """``parent``'s child processes and their nice values: serve's mail workers
    run at 0, its webhook dispatcher niced (proc(5): stat fields 4 and 19)."""
    found: dict[int, int] = {}
    listed = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    for pid in map(int, listed):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:  # it exited meanwhile
            continue
        found[pid] = int(stat[stat.rindex(")") + 2 :].split()[16])
    return found


ROLES = ("smtp", "submission", "submissions")
# Every listener, for tests that use IMAP and POP3 too.
ALL_ROLES = (*ROLES, "imap", "imaps", "pop3", "pop3s")
# Seconds a (re)start may take before the test gives up on the server.
START_TIMEOUT = 30.0


class ServerProcess:
    """Owns one ``python -m mailstead --config … serve`` child and its ports.

    The config, data directory and ports stay the same across restarts.
    Its output goes to ``<root>/serve.log``, which start failures quote.
    ``dsn``: a node of the cluster on that PostgreSQL database (``write_config``).
    """

    def __init__(
        self,
        root: Path,
        *,
        storage: str = "maildir",
        workers: int = 0,
        delivery: str = "",
        extra: str = "",
        roles: tuple[str, ...] = ROLES,
        dsn: str = "",
    ) -> None:
        self.root = root
        self.ports = {role: free_port() for role in roles}
        self.config_path = write_config(
            root,
            ports=self.ports,
            storage=storage,
            workers=workers,
            delivery=delivery,
            extra=extra,
            dsn=dsn,
        )
        self.config: Config = load_config(self.config_path)
        self.handle = ServerHandle(self.config, dict(self.ports))
        self.log_path = root / "serve.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    # -- life cycle -----------------------------------------------------------------

    def start(self) -> None:
        """Spawn the server and return once every listener accepts connections."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with self.log_path.open("ab") as log:
            log.write(f"--- start {self.starts} ---\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "mailstead", "--config", str(self.config_path), "serve"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.root,
                env=env,
            )
        self.starts += 1
        deadline = time.monotonic() + START_TIMEOUT
        for port in self.ports.values():
            self._wait_for_port(port, deadline)
        self._wait_until_ready(deadline)

    def _wait_until_ready(self, deadline: float) -> None:
        # The ports accept as soon as serve has bound them, before any worker
        # runs; serve says "ready" once every worker and the dispatcher started.
        assert self.proc is not None
        marker = f"--- start {self.starts - 1} ---"
        while "ready: " not in self.log_path.read_text(errors="replace").rpartition(marker)[2]:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"mailstead serve exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"serve not ready after {START_TIMEOUT}s:\n{self.log_tail()}")
            time.sleep(0.02)

    def _wait_for_port(self, port: int, deadline: float) -> None:
        assert self.proc is not None
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"mailstead serve exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"port {port} not accepting after {START_TIMEOUT}s:\n{self.log_tail()}"
                    ) from None
                time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, exactly like a power cut for the process."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
            # The workers die with the supervisor (PR_SET_PDEATHSIG), a moment
            # after it: wait until nothing listens, or a restart could find the
            # dying workers' sockets still accepting.
            deadline = time.monotonic() + START_TIMEOUT
            while any(self._accepts(port) for port in self.ports.values()):
                if time.monotonic() > deadline:
                    raise RuntimeError("workers still listening after the server was killed")
                time.sleep(0.01)

    @staticmethod
    def _accepts(port: int) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        """SIGTERM and wait for a clean shutdown (SIGKILL if it hangs)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def restart(self) -> None:
        self.kill()
        self.start()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
