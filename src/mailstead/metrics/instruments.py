"""The metrics Mailstead keeps, and the calls on the mail path that count them.

Every function here is meant for a hot path: a dictionary lookup for the
labelled child, then one increment (a few microseconds; in multiprocess
mode the increment writes 16 bytes into this process's memory-mapped
file, see shared.py). Label values are bounded sets: listener and protocol
names, TLS version names, outcome words, and the *local* domains of
``domains`` with ``"other"`` for every other domain. A remote domain is
never a label: strangers choose those names, so they could add series
without end, and every worker's file and every scrape would grow with
them; local domains are the operator's short list (docs/metrics.md).
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Generic, ParamSpec, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from mailstead.addresses import AddressError, normalize_domain

__all__ = [
    "PROTOCOLS",
    "Instruments",
    "auth_failed",
    "current",
    "delivery_delay",
    "domain_label",
    "local_delivery_time",
    "memory_registry",
    "message_outcome",
    "messages_received",
    "session_ended",
    "session_started",
    "set_local_domains",
    "tls_failed",
    "tls_negotiated",
    "webhook_attempt",
]

#: The listeners whose sessions are counted (the ``protocol`` label).
PROTOCOLS = ("smtp", "submission", "submissions", "imap", "imaps", "pop3", "pop3s")
# ssl.SSLObject.version() names; anything else (a future version) is "other".
_TLS_VERSIONS = frozenset({"SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"})
OTHER = "other"

# Seconds from queueing to the next hop's 250: retries make hours and days.
_DELAY_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400, 86400, 432000)
# Seconds to write and fsync a message's mailbox copies.
_LOCAL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)

_M = TypeVar("_M", Counter, Gauge, Histogram)
_P = ParamSpec("_P")

log = logging.getLogger("mailstead.metrics")


class _Family(Generic[_M]):
    """A labelled metric with its children cached: ``labels()`` takes a lock and
    builds a key each time; a dictionary lookup is a tenth of that."""

    def __init__(self, metric: _M) -> None:
        self.metric: _M = metric
        self._children: dict[tuple[str, ...], _M] = {}

    def __call__(self, *labels: str) -> _M:
        child = self._children.get(labels)
        if child is None:
            # Two threads may both get here: labels() returns the same child.
            child = self._children[labels] = self.metric.labels(*labels)
        return child


class Instruments:
    """Every metric of this process, registered in ``registry`` (None: in multiprocess
    mode, where the files are the registry and a scrape reads them)."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        r = registry
        self.received = _Family(
            Counter(
                "mailstead_messages_received",
                "Recipients accepted in SMTP transactions that got their 250 (one per RCPT TO)",
                ["listener", "domain"],
                registry=r,
            )
        )
        outcome_labels = ["transport", "domain"]
        self.delivered = _Family(
            Counter(
                "mailstead_messages_delivered",
                "Copies delivered: one per local mailbox reached, one per recipient a remote"
                " server accepted",
                outcome_labels,
                registry=r,
            )
        )
        self.deferred = _Family(
            Counter(
                "mailstead_messages_deferred",
                "Delivery attempts of a queued recipient that failed for now (retried later)",
                outcome_labels,
                registry=r,
            )
        )
        self.bounced = _Family(
            Counter(
                "mailstead_messages_bounced",
                "Queued recipients that failed for good (refused, or too old to retry)",
                outcome_labels,
                registry=r,
            )
        )
        self.delay = _Family(
            Histogram(
                "mailstead_delivery_delay_seconds",
                "Seconds from queueing to delivery of a queued recipient",
                ["transport"],
                buckets=_DELAY_BUCKETS,
                registry=r,
            )
        )
        self.local_delivery = Histogram(
            "mailstead_local_delivery_seconds",
            "Seconds to write and fsync one message's copies into its local mailboxes",
            buckets=_LOCAL_BUCKETS,
            registry=r,
        )
        self.sessions = _Family(
            Gauge(
                "mailstead_sessions",
                "Sessions open now, all worker processes together",
                ["protocol"],
                multiprocess_mode="livesum",
                registry=r,
            )
        )
        self.sessions_started = _Family(
            Counter(
                "mailstead_sessions_started",
                "Connections admitted by the connection limits",
                ["protocol"],
                registry=r,
            )
        )
        self.auth_failures = _Family(
            Counter(
                "mailstead_auth_failures",
                "Failed logins: a wrong name or password (invalid), or refused unchecked"
                " while the address is blocked (blocked)",
                ["protocol", "reason"],
                registry=r,
            )
        )
        self.tls = _Family(
            Counter(
                "mailstead_tls_handshakes",
                "TLS handshakes completed (STARTTLS and implicit TLS), by protocol version",
                ["protocol", "version"],
                registry=r,
            )
        )
        self.tls_failures = _Family(
            Counter(
                "mailstead_tls_handshake_failures",
                "TLS handshakes that failed or timed out",
                ["protocol"],
                registry=r,
            )
        )
        self.webhook_attempts = _Family(
            Counter(
                "mailstead_webhook_attempts",
                "Webhook POSTs by result: the status class (2xx ... 5xx) or why there was"
                " no status (timeout, connect, dns, tls, refused, network, protocol,"
                " invalid-url)",
                ["result"],
                registry=r,
            )
        )
        self.webhook_deliveries = _Family(
            Counter(
                "mailstead_webhook_deliveries",
                "Webhook deliveries finished: delivered (a 2xx), or failed (given up, or 410 Gone)",
                ["outcome"],
                registry=r,
            )
        )


_lock = threading.Lock()
_current: Instruments | None = None
# In-memory mode's registry; None in multiprocess mode.
_memory: CollectorRegistry | None = CollectorRegistry(auto_describe=True)
_local_domains: frozenset[str] = frozenset()


def current() -> Instruments:
    """This process's instruments, made at first use (after the mode is set)."""
    instruments = _current
    if instruments is None:
        instruments = _make()
    return instruments


def _make() -> Instruments:
    global _current
    with _lock:
        if _current is None:
            _current = Instruments(_memory)
        return _current


def reset(*, shared: bool) -> None:
    """Forget the instruments: the next count makes new ones, in files when
    ``shared`` (the value class is switched by shared.py first), else in memory."""
    global _current, _memory
    with _lock:
        _current = None
        _memory = None if shared else CollectorRegistry(auto_describe=True)


def memory_registry() -> CollectorRegistry | None:
    """The registry holding this process's counts in memory mode; None in multiprocess mode."""
    current()
    return _memory


def set_local_domains(domains: Iterable[str]) -> None:
    """The domains that may appear as the ``domain`` label (normalised, as in Config)."""
    global _local_domains
    _local_domains = frozenset(domains)


def domain_label(*addresses: str) -> str:
    """The first of ``addresses`` whose domain is local, that domain; else ``"other"``."""
    for address in addresses:
        domain = address.rpartition("@")[2].lower()
        if not domain.isascii():
            try:
                domain = normalize_domain(domain)
            except (AddressError, UnicodeError, LookupError):  # no codec: not ours either
                continue
        if domain in _local_domains:
            return domain
    return OTHER


# -- the calls on the mail path ------------------------------------------------------

_complained = False


def _never_fails(count: Callable[_P, None]) -> Callable[_P, None]:
    """A count that cannot fail the mail it counts: a commit that raised after
    the copies were published would tell the client 451 and get a duplicate."""

    @functools.wraps(count)
    def counting(*args: _P.args, **kwargs: _P.kwargs) -> None:
        global _complained
        try:
            count(*args, **kwargs)
        except Exception:
            if not _complained:  # once: the same cause would fill the log
                _complained = True
                log.exception("metrics: counting failed; counts may be missing from now on")

    return counting


@_never_fails
def messages_received(listener: str, domains: Iterable[str]) -> None:
    """An SMTP transaction got its 250: one count per recipient's ``domain_label``."""
    family = current().received
    for domain in domains:
        family(listener, domain).inc()


@_never_fails
def message_outcome(outcome: str, transport: str, domain: str) -> None:
    """One recipient delivered, deferred or bounced; ``transport`` is local or smtp."""
    instruments = current()
    if outcome == "delivered":
        instruments.delivered(transport, domain).inc()
    elif outcome == "deferred":
        instruments.deferred(transport, domain).inc()
    else:
        instruments.bounced(transport, domain).inc()


@_never_fails
def recipient_outcome(state: str, recipient: str, sender: str, delay: float) -> None:
    """A queued recipient's attempt settled: "local" transport when the recipient
    is in our domains, else "smtp" with the sender's domain; the delay when delivered."""
    local = domain_label(recipient)
    transport = "smtp" if local == OTHER else "local"
    message_outcome(state, transport, local if transport == "local" else domain_label(sender))
    if state == "delivered":
        delivery_delay(transport, delay)


@_never_fails
def delivery_delay(transport: str, seconds: float) -> None:
    """A queued recipient was delivered ``seconds`` after it was queued."""
    current().delay(transport).observe(max(0.0, seconds))


@_never_fails
def local_delivery_time(seconds: float) -> None:
    """Writing one message's mailbox copies took ``seconds``."""
    current().local_delivery.observe(max(0.0, seconds))


@_never_fails
def session_started(protocol: str) -> None:
    instruments = current()
    instruments.sessions(protocol).inc()
    instruments.sessions_started(protocol).inc()


@_never_fails
def session_ended(protocol: str) -> None:
    current().sessions(protocol).dec()


@_never_fails
def auth_failed(protocol: str, *, blocked: bool) -> None:
    current().auth_failures(protocol, "blocked" if blocked else "invalid").inc()


@_never_fails
def tls_negotiated(protocol: str, version: str | None) -> None:
    named = version if version in _TLS_VERSIONS else OTHER
    current().tls(protocol, named).inc()


@_never_fails
def tls_failed(protocol: str) -> None:
    current().tls_failures(protocol).inc()


@_never_fails
def webhook_attempt(status: int | None, error: str | None, *, finished: bool) -> None:
    """One POST's result; ``finished``: no retry follows (delivered, given up, gone)."""
    instruments = current()
    if status is not None:
        result = f"{status // 100}xx" if 100 <= status <= 599 else OTHER
    else:
        result = error or OTHER
    instruments.webhook_attempts(result).inc()
    if finished:
        ok = status is not None and 200 <= status <= 299
        instruments.webhook_deliveries("delivered" if ok else "failed").inc()
