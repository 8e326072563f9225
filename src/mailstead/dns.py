"""The DNS as the MTA sees it: a small async interface and its dnspython implementation.

Routing (:mod:`mailstead.mta.routing`) asks three questions — the MX records
of a domain, the addresses of a host, the TXT records of a name — and needs
to tell three kinds of "no" apart, because they decide between bouncing a
message and trying again later:

* :class:`NXDomain` — the name does not exist (RCODE 3, RFC 1035 §4.1.1):
  permanent;
* :class:`NoAnswer` — the name exists but has no record of that type
  (NODATA, RFC 2308 §2.2): permanent for that type; for MX it means
  "use the implicit MX" (RFC 5321 §5.1);
* :class:`TemporaryDNSError` — SERVFAIL, REFUSED, a timeout, an unreachable
  server: try again later.

Tests pass :class:`mailstead.testing.dns.FakeResolver` instead, or point a
real :class:`DNSResolver` at :class:`mailstead.testing.dns.DNSServer` on the
loopback interface (``delivery.dns_servers``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import dns.asyncresolver
import dns.exception
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.rdtypes.ANY.MX
import dns.rdtypes.ANY.TXT
import dns.rdtypes.IN.A
import dns.rdtypes.IN.AAAA
import dns.resolver

from mailstead.addresses import AddressError, normalize_domain

__all__ = [
    "DNSError",
    "DNSResolver",
    "MXRecord",
    "NXDomain",
    "NoAnswer",
    "Resolver",
    "TemporaryDNSError",
    "combine_address_lookups",
]

#: UDP payload size advertised with EDNS(0): the DNS Flag Day 2020 value,
#: which avoids IP fragmentation on nearly every path (RFC 6891 §6.2.5).
EDNS_PAYLOAD = 1232

#: Seconds one server gets to answer one query before the next is tried.
_ATTEMPT_TIMEOUT = 2.0


class DNSError(Exception):
    """A DNS lookup gave no usable answer; ``name`` is the name that was asked for."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


class NXDomain(DNSError):
    """The name does not exist (RCODE NXDOMAIN): a permanent answer."""


class NoAnswer(DNSError):
    """The name exists but has no record of the requested type (NODATA)."""


class TemporaryDNSError(DNSError):
    """No answer for now (SERVFAIL, REFUSED, timeout, network error): retry later."""


@dataclass(frozen=True, slots=True, order=True)
class MXRecord:
    """One MX resource record (RFC 1035 §3.3.9).

    ``exchange`` is the host name in ASCII (A-label) form, lower-case and
    without the trailing dot; the root name of a null MX (RFC 7505 §3) is
    ``"."``.
    """

    preference: int
    exchange: str

    @property
    def is_null(self) -> bool:
        """True for the RFC 7505 "no service" target ``.``."""
        return self.exchange == "."


class Resolver(Protocol):
    """What the MTA needs from the DNS; names may be given in U-label or A-label form.

    Every method raises :class:`NXDomain`, :class:`NoAnswer` or
    :class:`TemporaryDNSError` instead of returning an empty list.
    """

    async def mx(self, domain: str) -> list[MXRecord]:
        """The MX records of ``domain``, in the order the server sent them."""
        ...

    async def addresses(self, host: str) -> list[str]:
        """The IPv4 (A) then IPv6 (AAAA) addresses of ``host``, as text.

        Succeeds if either family has records; raises :class:`NoAnswer` only
        if neither has, and :class:`TemporaryDNSError` if one failed
        temporarily and the other had nothing.
        """
        ...

    async def txt(self, name: str) -> list[bytes]:
        """The TXT records of ``name``, each one's strings joined (RFC 7208 §3.3)."""
        ...


def _query_name(name: str) -> dns.name.Name:
    """``name`` as an absolute DNS name, IDN labels as A-labels (RFC 5890)."""
    # Host names go through the same normalisation as mail domains; names
    # with underscores (``_dmarc.…``, ``sel._domainkey.…``) are not host
    # names and are taken as they are, if ASCII.
    try:
        text = normalize_domain(name)
    except AddressError:
        text = name.strip().rstrip(".")
        if not text or not text.isascii():
            raise NXDomain(name, f"invalid domain name {name!r}") from None
    if text.startswith("["):
        raise NXDomain(name, f"an address literal is not a DNS name: {name!r}")
    try:
        return dns.name.from_text(text, origin=dns.name.root)
    except dns.exception.DNSException as exc:
        raise NXDomain(name, f"invalid domain name {name!r}") from exc


def _host_text(name: dns.name.Name) -> str:
    """A DNS name as MXRecord.exchange text: lower-case, no trailing dot, root as ``.``."""
    if name == dns.name.root:
        return "."
    return name.to_text(omit_final_dot=True).lower()


class DNSResolver:
    """A :class:`Resolver` backed by dnspython's asyncio stub resolver.

    ``servers`` are ``(address, port)`` pairs (``delivery.dns_servers``); none
    means the system's resolvers from ``/etc/resolv.conf``. ``timeout`` is the
    total time one lookup may take, across servers and retries. Queries use
    EDNS(0), never a search list, and only absolute names, so ``example`` is
    never looked up as ``example.corp.internal``.
    """

    def __init__(self, servers: Sequence[tuple[str, int]] = (), *, timeout: float = 10.0) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        resolver = dns.asyncresolver.Resolver(configure=not servers)
        if servers:
            resolver.nameservers = [
                dns.nameserver.Do53Nameserver(host, port) for host, port in servers
            ]
        resolver.search = []
        resolver.use_search_by_default = False
        resolver.use_edns(0, 0, EDNS_PAYLOAD)
        resolver.lifetime = timeout
        resolver.timeout = min(_ATTEMPT_TIMEOUT, timeout)
        resolver.cache = None
        self._resolver = resolver

    async def _resolve(self, name: str, rdtype: dns.rdatatype.RdataType) -> dns.resolver.Answer:
        qname = _query_name(name)
        kind = dns.rdatatype.to_text(rdtype)
        try:
            return await self._resolver.resolve(qname, rdtype, search=False)
        except dns.resolver.NXDOMAIN as exc:
            raise NXDomain(name, f"{name}: no such domain") from exc
        except dns.resolver.NoAnswer as exc:
            raise NoAnswer(name, f"{name}: no {kind} record") from exc
        except dns.exception.Timeout as exc:
            raise TemporaryDNSError(name, f"{name}: {kind} lookup timed out") from exc
        except dns.resolver.NoNameservers as exc:
            # Every server answered SERVFAIL/REFUSED or could not be reached.
            raise TemporaryDNSError(name, f"{name}: {kind} lookup failed") from exc
        except (dns.exception.DNSException, OSError) as exc:
            raise TemporaryDNSError(name, f"{name}: {kind} lookup failed") from exc

    async def mx(self, domain: str) -> list[MXRecord]:
        answer = await self._resolve(domain, dns.rdatatype.MX)
        return [
            MXRecord(rdata.preference, _host_text(rdata.exchange))
            for rdata in answer
            if isinstance(rdata, dns.rdtypes.ANY.MX.MX)
        ]

    async def _family(self, host: str, rdtype: dns.rdatatype.RdataType) -> list[str]:
        answer = await self._resolve(host, rdtype)
        return [
            rdata.address
            for rdata in answer
            if isinstance(rdata, dns.rdtypes.IN.A.A | dns.rdtypes.IN.AAAA.AAAA)
        ]

    async def addresses(self, host: str) -> list[str]:
        results = await asyncio.gather(
            self._family(host, dns.rdatatype.A),
            self._family(host, dns.rdatatype.AAAA),
            return_exceptions=True,
        )
        return combine_address_lookups(host, results)

    async def txt(self, name: str) -> list[bytes]:
        answer = await self._resolve(name, dns.rdatatype.TXT)
        return [
            b"".join(rdata.strings)
            for rdata in answer
            if isinstance(rdata, dns.rdtypes.ANY.TXT.TXT)
        ]


def combine_address_lookups(host: str, results: Sequence[list[str] | BaseException]) -> list[str]:
    """Combine the A and AAAA outcomes of one host into one answer or one error.

    For :class:`Resolver` implementations: ``results`` holds, per query, the
    addresses found or the exception raised (``asyncio.gather(...,
    return_exceptions=True)``).

    Any addresses win over any error; otherwise a temporary error wins over
    "no such record", and NXDOMAIN from either query means the host does not
    exist. Errors that are not DNS errors (cancellation, bugs) propagate.
    """
    found: list[str] = []
    errors: list[DNSError] = []
    for result in results:
        if isinstance(result, DNSError):
            errors.append(result)
        elif isinstance(result, BaseException):
            raise result
        else:
            found.extend(result)
    if found:
        return found
    for kind in (TemporaryDNSError, NXDomain):
        for error in errors:
            if isinstance(error, kind):
                raise error
    raise NoAnswer(host, f"{host}: no A or AAAA record")
