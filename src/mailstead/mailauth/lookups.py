"""The DNS as the message checks see it: blocking lookups under a deadline, with a TTL cache.

SPF, DKIM and DMARC run in the receiver's worker thread once the message is
in (never on the event loop), so their lookups block. Each message gets a
:class:`Budget`: one deadline for every lookup it makes, so a slow DNS
server costs at most the budget (then ``temperror``), never the session's
patience. Answers — records, NXDOMAIN and NODATA, never failures — are kept
in a small in-process cache for their TTL (capped), shared by all threads.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import dns.exception
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver

from mailstead.mailauth.spf import Answer, Query

__all__ = ["AuthDNS", "Budget"]

#: Seconds one server gets to answer one query before the next is tried.
_ATTEMPT_TIMEOUT = 2.0
#: Longest a cached answer is kept, whatever its TTL says.
_MAX_TTL = 300
#: How long NXDOMAIN/NODATA is kept (RFC 2308 allows the SOA minimum; we keep it short).
_NEGATIVE_TTL = 60
#: Records per answer kept (more is hostile or broken: SPF needs at most 10 names).
_MAX_RECORDS = 64
#: Longest text of one record kept (TXT strings joined).
_MAX_TEXT = 8192


@dataclass(slots=True)
class Budget:
    """The time left for the lookups of one message (monotonic ``deadline``)."""

    deadline: float
    clock: Callable[[], float] = time.monotonic

    @classmethod
    def of(cls, seconds: float, clock: Callable[[], float] = time.monotonic) -> Budget:
        return cls(clock() + seconds, clock)

    def remaining(self) -> float:
        return self.deadline - self.clock()


class AuthDNS:
    """Blocking TXT/A/AAAA/MX/PTR lookups for the checks (thread-safe).

    ``servers`` are ``(address, port)`` pairs (``delivery.dns_servers``);
    none means the system's resolvers.
    """

    def __init__(
        self,
        servers: Sequence[tuple[str, int]] = (),
        *,
        cache_size: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        resolver = dns.resolver.Resolver(configure=not servers)
        if servers:
            resolver.nameservers = [
                dns.nameserver.Do53Nameserver(host, port) for host, port in servers
            ]
        resolver.search = []
        resolver.use_search_by_default = False
        resolver.use_edns(0, 0, 1232)
        resolver.cache = None
        self._resolver = resolver
        self._clock = clock
        self._cache_size = cache_size
        self._cache: collections.OrderedDict[tuple[str, str], tuple[float, Answer]] = (
            collections.OrderedDict()
        )
        self._lock = threading.Lock()

    def lookup(self, query: Query, budget: Budget) -> Answer:
        """The answer to ``query``; ``Answer(temporary=True)`` when the budget is spent."""
        key = (query.name.lower().rstrip("."), query.rdtype)
        now = self._clock()
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                if cached[0] > now:
                    self._cache.move_to_end(key)
                    return cached[1]
                del self._cache[key]
        remaining = budget.remaining()
        if remaining <= 0:
            return Answer(temporary=True)
        answer, ttl = self._ask(key[0], query.rdtype, remaining)
        if not answer.temporary and ttl > 0:
            with self._lock:
                self._cache[key] = (now + ttl, answer)
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return answer

    def txt(self, name: str, budget: Budget) -> Answer:
        return self.lookup(Query(name, "TXT"), budget)

    def _ask(self, name: str, rdtype: str, timeout: float) -> tuple[Answer, float]:
        try:
            qname = dns.name.from_text(name, origin=dns.name.root)
        except (dns.exception.DNSException, ValueError, UnicodeError):
            return Answer(nxdomain=True), _NEGATIVE_TTL  # not a name the DNS can hold
        try:
            result = self._resolver.resolve(
                qname,
                dns.rdatatype.from_text(rdtype),
                search=False,
                lifetime=timeout,
                raise_on_no_answer=False,
            )
        except dns.resolver.NXDOMAIN:
            return Answer(nxdomain=True), _NEGATIVE_TTL
        except (dns.exception.DNSException, OSError):
            # Timeout, SERVFAIL or REFUSED from every server, no route.
            return Answer(temporary=True), 0
        if result.rrset is None:
            return Answer(), _NEGATIVE_TTL  # NODATA
        records = [_text(rdata) for rdata in list(result.rrset)[:_MAX_RECORDS]]
        return Answer(tuple(records)), min(result.rrset.ttl, _MAX_TTL)


def _text(rdata: object) -> str:
    strings = getattr(rdata, "strings", None)
    if strings is not None:  # TXT: the strings joined (RFC 7208 §3.3)
        return b"".join(strings)[:_MAX_TEXT].decode("utf-8", "replace")
    exchange = getattr(rdata, "exchange", None) or getattr(rdata, "target", None)
    if exchange is not None:  # MX, PTR: the target name
        return str(exchange.to_text(omit_final_dot=True)).lower()
    address = getattr(rdata, "address", None)
    return str(address) if address is not None else str(rdata)
