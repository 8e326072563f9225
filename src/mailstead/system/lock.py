"""One ``serve`` per data directory: a lock file held for the server's lifetime."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

__all__ = ["LOCK_NAME", "AlreadyRunning", "ServeLock", "running_pid"]

#: The lock file's name in the data directory; it holds the server's pid.
LOCK_NAME = "mailstead.pid"


class AlreadyRunning(Exception):
    """Another ``serve`` holds the data directory's lock (one-line message)."""


class ServeLock:
    """Owns the lock file's descriptor; the lock lasts until it is closed or the process ends.

    ``flock`` locks belong to the open file, which the forked workers share:
    the lock stays held while any process of this ``serve`` lives, and the
    kernel drops it when the last one dies, even by SIGKILL. A stale file
    left by a crash is harmless: only the lock counts, never the pid in it.
    """

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_NAME
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise AlreadyRunning(
                f"Mailstead is already running on {data_dir} (pid {holder}, lock {self.path})"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)

    def chown(self, uid: int, gid: int) -> None:
        """Give the file to the account the server continues as."""
        os.fchown(self._fd, uid, gid)

    def close(self) -> None:
        os.close(self._fd)


def running_pid(data_dir: Path) -> int | None:
    """The pid of the ``serve`` holding ``data_dir``'s lock; None when none does.

    For commands that must not run beside a server (``restore``): a shared
    lock is tried and let go at once, so this never blocks a server's start
    for longer than the call.
    """
    try:
        fd = os.open(data_dir / LOCK_NAME, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            return int(text) if text.isdigit() else 0
        return None
    finally:
        os.close(fd)
