"""Is a server using this data directory? Asked before a restore overwrites it.

``mailstead serve`` keeps no pid or lock file yet, so two signs are read:
any other process holding a file below the data directory open (Linux
``/proc/<pid>/fd``; every worker keeps the queue database open), and any of
the configured listeners accepting a connection.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from mailstead.config import Config

__all__ = ["holder_of", "listener_of", "serving_evidence"]

_PROBE_TIMEOUT = 0.5
# A wildcard address is reached through the loopback of its family.
_WILDCARDS = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1", "*": "127.0.0.1"}


def holder_of(data_dir: Path, proc: Path = Path("/proc")) -> str | None:
    """``"process N has PATH open"`` for another process with a file below ``data_dir`` open.

    Processes of other users are invisible unless run as root; None when
    nothing is found or there is no ``/proc``.
    """
    prefix = f"{data_dir.resolve()}{os.sep}"
    try:
        pids = [p for p in os.listdir(proc) if p.isdigit() and int(p) != os.getpid()]
    except OSError:
        return None
    for pid in sorted(pids, key=int):
        fd_dir = proc / pid / "fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue  # gone, or not ours to look at
        for fd in fds:
            try:
                target = os.readlink(fd_dir / fd)
            except OSError:
                continue
            if target.startswith(prefix):
                return f"process {pid} has {target} open"
    return None


def listener_of(config: Config) -> str | None:
    """``"listen.ROLE HOST:PORT accepts connections"`` for the first configured
    listener something answers on; port 0 (any port) cannot be probed."""
    for role in ("smtp", "submission", "submissions", "imap", "imaps", "pop3", "pop3s"):
        for host, port in getattr(config.listen, role):
            if not port:
                continue
            target = _WILDCARDS.get(host, host)
            try:
                with socket.create_connection((target, port), timeout=_PROBE_TIMEOUT):
                    shown = f"[{host}]" if ":" in host else host
                    return f"listen.{role} {shown}:{port} accepts connections"
            except OSError:
                continue
    return None


def serving_evidence(config: Config) -> str | None:
    """Why we think a server is serving ``config``'s data directory, or None."""
    if config.data_dir.exists():
        found = holder_of(config.data_dir)
        if found is not None:
            return found
    return listener_of(config)
