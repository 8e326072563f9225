"""Where the control socket lives, and binding or reaching it whatever the path's length.

``<data_dir>/control.sock``. The data directory is the ``[run]`` account's
with mode 0700, so only that account and root can even reach the name; the
socket itself is made 0600, and the server checks each peer's uid as well
(server.py).
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from mailstead.config import Config

__all__ = ["SOCKET_NAME", "bind_unix", "connect_unix", "socket_path"]

#: The control socket's name in the data directory.
SOCKET_NAME = "control.sock"
# sockaddr_un.sun_path is 108 octets on Linux, the final NUL included.
_SUN_PATH_MAX = 107


def socket_path(config: Config) -> Path:
    """The control socket of ``config``'s data directory."""
    return config.data_dir / SOCKET_NAME


@contextlib.contextmanager
def _reachable(path: Path) -> Iterator[str]:
    """A name for ``path`` that fits in sun_path.

    A deep data directory makes a path too long for a Unix socket address;
    its directory is then reached through an open descriptor's
    ``/proc/self/fd/N``, which the kernel resolves like any directory.
    """
    text = os.fsencode(path)
    if len(text) <= _SUN_PATH_MAX:
        yield str(path)
        return
    fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


def bind_unix(path: Path, *, mode: int = 0o600, backlog: int = 16) -> socket.socket:
    """A listening stream socket at ``path`` with ``mode``, replacing a stale one.

    The caller holds the serve lock: a socket file already there was left by
    a server that died, so it is removed.
    """
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with _reachable(path) as name:
            # Made with no permission at all, then opened to ``mode``: no
            # moment exists when another account could connect.
            old = os.umask(0o777)
            try:
                sock.bind(name)
            finally:
                os.umask(old)
        os.chmod(path, mode)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


def connect_unix(path: Path, timeout: float) -> socket.socket:
    """A stream socket connected to ``path``, with ``timeout`` for every operation."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        with _reachable(path) as name:
            sock.connect(name)
    except BaseException:
        sock.close()
        raise
    return sock
