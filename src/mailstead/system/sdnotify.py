"""Telling systemd how the service is doing (``Type=notify``), without libsystemd.

The protocol is one datagram of ``KEY=VALUE`` lines to the Unix socket
named by ``$NOTIFY_SOCKET`` (sd_notify(3)); a name starting with ``@`` is in
the abstract namespace. Outside systemd the variable is unset and every
call does nothing.
"""

from __future__ import annotations

import os
import socket
import time

__all__ = ["notify", "ready", "reloading", "stopping"]


def notify(*lines: str) -> bool:
    """Send ``lines`` (e.g. ``READY=1``) to the service manager; False when there is none."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address or address[0] not in "/@":
        return False
    target = "\0" + address[1:] if address[0] == "@" else address
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto("\n".join(lines).encode(), target)
    except OSError:
        return False  # systemd gone or restarting: the state is only advisory
    return True


def ready(status: str) -> bool:
    """Startup finished: systemd starts the units waiting for this one."""
    return notify("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")


def reloading() -> bool:
    """A reload began (SIGHUP); :func:`ready` ends it."""
    # MONOTONIC_USEC lets systemd pair this reload with its request (sd_notify(3)).
    usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return notify("RELOADING=1", f"MONOTONIC_USEC={usec}", "STATUS=reloading")


def stopping() -> bool:
    """Shutdown began: sessions are finishing."""
    return notify("STOPPING=1", "STATUS=stopping")
