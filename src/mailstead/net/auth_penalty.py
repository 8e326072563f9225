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

Several nodes behind one load balancer (``[storage] backend =
"postgresql"``) count in the cluster's database as well
(:class:`SharedFailures`, net/auth_penalty_db.py), so a guesser spreading
over the nodes meets one count. The node's shared memory keeps counting
beside it: when the database does not answer in time, this node's own
counts decide; when it answers, its counts do, which hold this node's
failures too and forget an address that logged in on another node. Only
within ``block_time`` of a failure the database missed does the larger of
the two decide, so an outage never wipes out what this node counted.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import time
from collections.abc import Callable
from typing import Protocol

from mailstead.net.listener import BUCKETS, cells

# A network needs this many times an address's failures for the same penalty.
NETWORK_SHARE = 4
# Seconds of the first wait; each further failure doubles it (Dovecot: 2 s).
_FIRST_DELAY = 2.0
# What attempt() returns for an address whose logins are refused unchecked.
BLOCKED = float("inf")

#: An address's failures and its network's, in that order.
Counts = tuple[float, float]


class SharedFailures(Protocol):
    """Failure counts every node of a cluster sees; None when they cannot be had in time."""

    def attempt(self, ip: str) -> Counts | None:
        """Count an attempt from ``ip``; the counts before it."""

    def counts(self, ip: str) -> Counts | None:
        """The counts of ``ip`` now."""

    def succeeded(self, ip: str) -> None:
        """Clear ``ip``'s count and take one from its network's."""


class AuthPenalty:
    """Owns the shared failure counts and turns them into waits and blocks."""

    def __init__(
        self,
        *,
        max_delay: float = 15.0,
        block_after: int = 20,
        block_time: float = 900.0,
        clock: Callable[[], float] = time.monotonic,
        shared: SharedFailures | None = None,
    ) -> None:
        self.max_delay = max_delay
        self.block_after = block_after
        self.block_time = block_time
        self._clock = clock
        #: The cluster's counts (None: this node's alone decide).
        self.shared = shared
        # Per bucket: failures, then the time of the last one. Addresses
        # first, networks after.
        self._failures = multiprocessing.RawArray(ctypes.c_double, 2 * BUCKETS)
        self._last = multiprocessing.RawArray(ctypes.c_double, 2 * BUCKETS)
        self._lock = multiprocessing.Lock()
        # When this node last counted a failure the cluster's database did
        # not take (monotonic time, shared by the workers).
        self._unshared_at = multiprocessing.RawValue(ctypes.c_double, float("-inf"))

    def _count(self, cell: int, now: float) -> float:
        """Failures at ``cell``, forgotten once ``block_time`` passed since the last."""
        if now - self._last[cell] > self.block_time:
            self._failures[cell] = 0.0
        return self._failures[cell]

    def failures(self, ip: str) -> int:
        """The count that decides ``ip``'s penalty (its own, or its network's share)."""
        now = self._clock()
        with self._lock:
            own = self._local_counts(ip, now)
        return self._decisive(own, self.shared.counts(ip) if self.shared else None, now)

    def _local_counts(self, ip: str, now: float) -> Counts:
        ip_cell, net_cell = cells(ip)
        return self._count(ip_cell, now), self._count(net_cell, now)

    def _decisive(self, own: Counts, shared: Counts | None, now: float) -> int:
        """The count that decides, from this node's counts and the cluster's
        (None: no cluster, or no answer from it in time)."""
        address, network = own
        if shared is not None:
            if now - self._unshared_at.value > self.block_time:
                # Every failure this node still remembers is in the database.
                address, network = shared
            else:
                address, network = max(address, shared[0]), max(network, shared[1])
        return int(max(address, network / NETWORK_SHARE))

    def attempt(self, ip: str) -> float:
        """A login attempt from ``ip``: seconds to wait before checking it, or ``BLOCKED``.

        The attempt is counted as a failure at once and taken back if it
        succeeds, so attempts running in parallel wait 0, 2, 4, 8 … s
        rather than all going through before the first has failed.
        """
        now = self._clock()
        with self._lock:
            own = self._local_counts(ip, now)
            for cell in cells(ip):
                self._failures[cell] = self._count(cell, now) + 1
                self._last[cell] = now
        shared = None
        if self.shared is not None:
            shared = self.shared.attempt(ip)
            if shared is None:
                self._unshared_at.value = now
        failures = self._decisive(own, shared, now)
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
        if self.shared is not None:
            self.shared.succeeded(ip)
