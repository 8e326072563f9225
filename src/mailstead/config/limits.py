"""``[limits]``: connection counts, deadlines, login penalties, worker health."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from mailstead.config.reader import Reader, duration
from mailstead.limits import ConnectionPolicy, QueueLimits

__all__ = ["ConnectionLimitsConfig", "load_limits"]


@dataclass(frozen=True, slots=True)
class ConnectionLimitsConfig:
    """How many connections each listener takes (counted across workers), the
    deadlines against clients that hold them, failed-login penalties, and
    how long a worker process may stall (docs/security.md)."""

    #: Simultaneous connections from one IP address to one listener (Postfix
    #: anvil and Dovecot mail_max_userip_connections are of this kind).
    connections_per_ip: int = 50
    #: Simultaneous connections from one network (IPv4 /24, IPv6 /64).
    connections_per_network: int = 200
    #: Simultaneous connections to one listener in all.
    connections_total: int = 1000
    #: Seconds to finish a command line once its first byte arrived.
    line_timeout: int = 60
    #: Seconds from connect to a successful login (IMAP, POP3, submission).
    login_timeout: int = 60
    #: Seconds from MAIL FROM to the end of the message data (SMTP).
    transaction_timeout: int = 1800
    #: Percent of connections_total from which a listener is under stress.
    stress_threshold: int = 80
    #: Under stress: the idle, line and login deadlines of sessions not
    #: logged in, in seconds.
    stress_timeout: int = 10
    #: Longest wait before a login attempt from an address that has failed
    #: before (2 s after one failure, doubling), in seconds.
    auth_penalty_max: int = 15
    #: Failures from one address (or four times as many from its network)
    #: after which its logins are refused unchecked.
    auth_block_after: int = 20
    #: Seconds after its last failure that an address's failures are forgotten.
    auth_block_time: int = 900
    #: Seconds a worker's event loop may go without a heartbeat before the
    #: supervisor kills and replaces the worker (net/watchdog.py).
    watchdog_timeout: int = 10
    #: Seconds workers get to finish after SIGTERM before they are killed.
    shutdown_timeout: int = 30
    #: With ``[storage] backend = "postgresql"``: seconds a node's claim on a
    #: queued message lasts (renewed at least every 2 s while it delivers);
    #: a node that dies holds its messages this long before another node
    #: retries them (mta/queue_claims.py, limits.QueueLimits).
    queue_lease: int = int(QueueLimits().lease)

    def policy(self) -> ConnectionPolicy:
        """The deadlines every session enforces (limits.ConnectionPolicy)."""
        return ConnectionPolicy(
            line_timeout=self.line_timeout,
            login_timeout=self.login_timeout,
            transaction_timeout=self.transaction_timeout,
            stress_fraction=self.stress_threshold / 100,
            stress_timeout=self.stress_timeout,
        )


_COUNTS = ("connections_per_ip", "connections_per_network", "connections_total")
_DURATIONS = (
    "auth_penalty_max",
    "auth_block_time",
    "line_timeout",
    "login_timeout",
    "transaction_timeout",
    "stress_timeout",
    "watchdog_timeout",
    "shutdown_timeout",
    "queue_lease",
)
# The engine renews its claims at every look at the queue, at least every
# 2 s: a shorter lease could run out under a node that is alive.
QUEUE_LEASE_MIN = 10
QUEUE_LEASE_MAX = 3600


def load_limits(r: Reader, data: Mapping[str, object]) -> ConnectionLimitsConfig:
    """The ``[limits]`` table of ``data``; each count is checked against the others."""
    defaults = ConnectionLimitsConfig()
    t = r.table(data, "limits", "", (*_COUNTS, "stress_threshold", "auth_block_after", *_DURATIONS))

    def whole(key: str, low: int, high: int = 1_000_000, unit: str = "") -> int:
        value = r.typed(t.get(key, getattr(defaults, key)), f"limits.{key}", int, "a whole number")
        if not low <= value <= high:
            r.fail(f"limits.{key}", f"expected {low} to {high}{unit}, got {value}")
        return value

    per_ip = whole("connections_per_ip", 1)
    per_network = whole("connections_per_network", per_ip)
    total = whole("connections_total", per_ip)
    stress = whole("stress_threshold", 1, 100, " (percent)")
    block_after = whole("auth_block_after", 1)
    seconds = {key: duration(r, t, f"limits.{key}", getattr(defaults, key)) for key in _DURATIONS}
    if not QUEUE_LEASE_MIN <= seconds["queue_lease"] <= QUEUE_LEASE_MAX:
        r.fail(
            "limits.queue_lease",
            f"expected {QUEUE_LEASE_MIN}s to {QUEUE_LEASE_MAX}s, got {seconds['queue_lease']}s",
        )
    return ConnectionLimitsConfig(
        connections_per_ip=per_ip,
        connections_per_network=per_network,
        connections_total=total,
        stress_threshold=stress,
        auth_block_after=block_after,
        **seconds,
    )
