"""Failed logins per client address and per network, shared by every worker.

Password guessing is slowed where it comes from, never at the account: the
real user logging in from elsewhere is not affected, and nobody can lock a
user out by failing on purpose. Like Dovecot's ``auth_penalty``, each
attempt from an address that has failed before waits first, 2 s after one
failure, doubling up to ``max_delay`` (15 s); the wait comes *before* the
password check, and an attempt counts as a failure until it succeeds, so
parallel sessions from one place wait in turn instead of guessing
together. After ``block_after`` failures the address gets a temporary
refusal without any check until ``block_time`` has passed since its last
attempt (attempts while blocked count too: a guesser stays blocked).

Addresses of one network (IPv4 /24, IPv6 /64, as the connection gate
counts them) share a second count that needs ``NETWORK_SHARE`` times as
many failures for the same effect, so guessing from 20 addresses of one
network is slowed too. A successful login clears its address's count.

The counts live in shared memory made before the workers fork, behind one
lock: logins are rare next to commands, and every worker must see every
failure at once. Two addresses in one hash bucket share a count, which can
only make the penalty stricter.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import time
from collections.abc import Callable

from mailstead.net.listener import BUCKETS, cells

# A network needs this many times an address's failures for the same penalty.
NETWORK_SHARE = 4
# Seconds of the first wait; each further failure doubles it (Dovecot: 2 s).
_FIRST_DELAY = 2.0
# What attempt() returns for an address whose logins are refused unchecked.
BLOCKED = float("inf")


class AuthPenalty:
    """Owns the shared failure counts and turns them into waits and blocks."""

    def __init__(
        self,
        *,
        max_delay: float = 15.0,
        block_after: int = 20,
        block_time: float = 900.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_delay = max_delay
        self.block_after = block_after
        self.block_time = block_time
        self._clock = clock
        # Per bucket: failures, then the time of the last one. Addresses
        # first, networks after.
        self._failures = multiprocessing.RawArray(ctypes.c_double, 2 * BUCKETS)
        self._last = multiprocessing.RawArray(ctypes.c_double, 2 * BUCKETS)
        self._lock = multiprocessing.Lock()

    def _count(self, cell: int, now: float) -> float:
        """Failures at ``cell``, forgotten once ``block_time`` passed since the last."""
        if now - self._last[cell] > self.block_time:
            self._failures[cell] = 0.0
        return self._failures[cell]

    def failures(self, ip: str) -> int:
        """The count that decides ``ip``'s penalty (its own, or its network's share)."""
        with self._lock:
            return self._failures_of(ip, self._clock())

    def _failures_of(self, ip: str, now: float) -> int:
        ip_cell, net_cell = cells(ip)
        own = self._count(ip_cell, now)
        network = self._count(net_cell, now) / NETWORK_SHARE
        return int(max(own, network))

    def attempt(self, ip: str) -> float:
        """A login attempt from ``ip``: seconds to wait before checking it, or ``BLOCKED``.

        The attempt is counted as a failure at once and taken back if it
        succeeds, so attempts running in parallel wait 0, 2, 4, 8 … s
        rather than all going through before the first has failed.
        """
        now = self._clock()
        with self._lock:
            failures = self._failures_of(ip, now)
            for cell in cells(ip):
                self._failures[cell] = self._count(cell, now) + 1
                self._last[cell] = now
        if failures >= self.block_after:
            return BLOCKED
        if failures == 0:
            return 0.0
        return min(self.max_delay, _FIRST_DELAY * 2.0 ** (failures - 1))

    def succeeded(self, ip: str) -> None:
        """The attempt logged in: the address starts again, its network forgets this one."""
        ip_cell, net_cell = cells(ip)
        with self._lock:
            self._failures[ip_cell] = 0.0
            self._failures[net_cell] = max(0.0, self._failures[net_cell] - 1)
