"""Waking the outbound queue of every mail worker at once (``queue flush``).

Each worker runs the outbound scheduler over its share of the queue and
looks at the queue at least every ``POLL_INTERVAL`` seconds; a flush must
not wait for that. The supervisor sends :data:`WAKE_SIGNAL` (SIGUSR1) to
each serving mail worker, whose event loop then looks at its share now.
A worker ignores the signal until it has started, and only workers that
have (the board's SERVING) are sent it, so it never kills a process.
``kill -USR1 <serve's pid>`` does the same from a shell.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable, Iterable

__all__ = ["WAKE_SIGNAL", "ignore_wake", "on_wake", "wake"]

WAKE_SIGNAL = signal.SIGUSR1


def ignore_wake() -> None:
    """First thing in a new worker: a wake-up before it serves is nothing to do."""
    signal.signal(WAKE_SIGNAL, signal.SIG_IGN)


def on_wake(loop: asyncio.AbstractEventLoop, callback: Callable[[], object]) -> None:
    """Run ``callback`` in ``loop`` at each wake-up."""
    loop.add_signal_handler(WAKE_SIGNAL, callback)


def wake(pids: Iterable[int]) -> int:
    """Send the wake-up to ``pids``; the number of processes it reached."""
    reached = 0
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, WAKE_SIGNAL)
            reached += 1
    return reached
