"""Where to send mail for a domain: local delivery, or an ordered list of remote hosts.

:func:`route` turns the domain of a recipient into a :class:`Route` — the
hosts to try, in order, each with its addresses — or raises a
:class:`RoutingError` that carries the reply code, the enhanced status code
(RFC 3463) and a text fit for a DSN. It reads the DNS only through a
:class:`~mailstead.dns.Resolver`, so tests pass a fake, and takes
its randomness from a ``random.Random`` the caller owns.

The rules, in the order they are applied:

1. A local domain is delivered locally; the DNS is not asked.
2. An address literal (``[192.0.2.1]``, ``[IPv6:2001:db8::1]``) is its own
   destination (RFC 5321 §4.1.3, §5.1).
3. MX records, sorted by preference, equal preferences in random order
   (RFC 5321 §5.1). A null MX fails at once (RFC 7505). No MX records:
   the domain itself is the implicit MX with preference 0 (RFC 5321 §5.1).
4. Our own host in the list: it and every MX of equal or larger preference
   are dropped; nothing left is a routing loop (RFC 5321 §5.1).
5. Each MX host's A and AAAA records; hosts without addresses are skipped.

What the answers mean for the message:

=========================================  ============  ===============
situation                                  reply         status (RFC 3463)
=========================================  ============  ===============
domain does not exist (NXDOMAIN)           550           5.1.2
no MX and no A/AAAA                        550           5.1.2
null MX (RFC 7505)                         556           5.1.10
no MX host has an address                  550           5.4.4
MX (or the implicit MX) is ourselves       550           5.4.6
DNS failure (SERVFAIL, timeout)            451           4.4.3
=========================================  ============  ===============

Work against hostile DNS is bounded: at most ``max_mx`` hosts are resolved
(concurrently) and at most ``max_addresses`` addresses are kept per host.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import random
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import ClassVar

from mailstead.addresses import AddressError, normalize_domain
from mailstead.dns import (
    DNSError,
    MXRecord,
    NoAnswer,
    NXDomain,
    Resolver,
    TemporaryDNSError,
)

__all__ = [
    "MAX_ADDRESSES_PER_HOST",
    "MAX_MX_HOSTS",
    "Destination",
    "PermanentRoutingError",
    "Route",
    "RoutingError",
    "TemporaryRoutingError",
    "route",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: MX hosts resolved and tried per domain. Real domains publish two to five;
#: Postfix tries 5 (smtp_mx_address_limit), Exim all. Ten bounds the lookups a
#: hostile zone can make us do per message.
MAX_MX_HOSTS = 10
#: Addresses kept per host (A and AAAA together).
MAX_ADDRESSES_PER_HOST = 10

# Used when the caller passes no rng; seeded from the OS.
_default_rng = random.Random()


@dataclass(frozen=True, slots=True)
class Destination:
    """One host to try: its name, its MX preference and its addresses, in order.

    ``host`` is the MX host name (A-label form), the domain itself for an
    implicit MX, or the address literal as written in the address.
    """

    host: str
    preference: int
    addresses: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Route:
    """How mail for ``domain`` (normalised) is delivered.

    ``local`` routes have no destinations: the MDA delivers them. Remote
    routes list at least one destination, to be tried in order until one
    accepts the message (RFC 5321 §5.1: on failure, the next host is tried).
    """

    domain: str
    destinations: tuple[Destination, ...] = ()
    local: bool = False
    #: True when the domain had no MX records and is its own mail host.
    implicit_mx: bool = False


class RoutingError(Exception):
    """Mail for ``domain`` cannot be routed now (temporary) or ever (permanent).

    Carries what a delivery attempt reports: the basic reply ``code``, the
    ``enhanced`` status code (RFC 3463) and a ``text`` that names the domain
    but no internal detail.
    """

    permanent: ClassVar[bool]

    def __init__(self, domain: str, code: int, enhanced: str, text: str) -> None:
        super().__init__(f"{code} {enhanced} {text}")
        self.domain = domain
        self.code = code
        self.enhanced = enhanced
        self.text = text


class PermanentRoutingError(RoutingError):
    """Routing failed for good: the message is bounced (DSN) without retrying."""

    permanent = True


class TemporaryRoutingError(RoutingError):
    """Routing failed for now (the DNS did not answer): the message stays queued."""

    permanent = False


# --------------------------------------------------------------------------- errors


# The words of Postfix's DNS failures, which mail admins know and search
# for: "Host or domain name not found. Name service error for name=… type=MX:
# Host not found".
def _name_service_error(name: str, rtype: str, what: str) -> str:
    return f"Host or domain name not found. Name service error for name={name} type={rtype}: {what}"


def _no_such_domain(domain: str, rtype: str = "MX") -> PermanentRoutingError:
    # RFC 3463 §3.2 X.1.2 "Bad destination system address".
    text = _name_service_error(domain, rtype, "Host not found")
    return PermanentRoutingError(domain, 550, "5.1.2", text)


def _no_mail_host(domain: str) -> PermanentRoutingError:
    # RFC 5321 §5.1: neither MX nor A/AAAA: "MUST be reported as an error".
    return PermanentRoutingError(
        domain, 550, "5.1.2", f"Domain {domain} has no mail server (no MX, A or AAAA record)"
    )


def _null_mx(domain: str) -> PermanentRoutingError:
    # RFC 7505 §3 (null MX) and the code it registers: 556 X.1.10
    # "Recipient address has null MX".
    return PermanentRoutingError(domain, 556, "5.1.10", f"Domain {domain} does not accept mail")


def _unroutable(domain: str) -> PermanentRoutingError:
    # RFC 3463 §3.5 X.4.4 "Unable to route".
    return PermanentRoutingError(
        domain, 550, "5.4.4", f"No mail server for {domain} has an address"
    )


def _loop(domain: str) -> PermanentRoutingError:
    # RFC 3463 §3.5 X.4.6 "Routing loop detected".
    return PermanentRoutingError(
        domain, 550, "5.4.6", f"Mail for {domain} loops back to this server"
    )


def _dns_failure(domain: str, name: str = "", rtype: str = "MX") -> TemporaryRoutingError:
    # RFC 3463 §3.5 X.4.3 "Directory server failure".
    text = _name_service_error(name or domain, rtype, "Host not found, try again")
    return TemporaryRoutingError(domain, 451, "4.4.3", text)


# --------------------------------------------------------------------------- helpers


def _ip(text: str) -> IPAddress | None:
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    # An IPv4-mapped IPv6 address is the IPv4 host (RFC 4291 §2.5.5.2).
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _literal_address(domain: str) -> str:
    """The address inside a normalised literal ``[a.b.c.d]`` / ``[IPv6:…]``."""
    inner = domain[1:-1]
    return inner[5:] if inner[:5].lower() == "ipv6:" else inner


def _order(records: Iterable[MXRecord], rng: random.Random) -> list[MXRecord]:
    """Sort by preference, shuffling each group of equal preference.

    RFC 5321 §5.1: "the sender-SMTP MUST randomize them to spread the load
    across multiple mail exchangers for a specific organization". The input is
    sorted by name first, so a seeded ``rng`` gives the same order whatever
    order the DNS server sent the records in.
    """
    ordered: list[MXRecord] = []
    for _, group in itertools.groupby(sorted(records), key=lambda r: r.preference):
        same = list(group)
        rng.shuffle(same)
        ordered.extend(same)
    return ordered


def _usable_exchanges(records: Iterable[MXRecord]) -> list[MXRecord]:
    """MX records with a valid host name, normalised, each host once at its best preference."""
    best: dict[str, int] = {}
    for record in records:
        try:
            host = normalize_domain(record.exchange)
        except AddressError:
            continue  # not a host name (hostile or broken zone): unusable
        if host.startswith("[") or _ip(host) is not None:
            # RFC 1035 §3.3.9: EXCHANGE is a domain name; an MX naming an
            # IP address is a misconfiguration we do not guess around.
            continue
        if host not in best or record.preference < best[host]:
            best[host] = record.preference
    return [MXRecord(preference, host) for host, preference in best.items()]


def _unique(addresses: Iterable[str], limit: int) -> tuple[str, ...]:
    """Valid addresses in canonical text form, duplicates dropped, at most ``limit``."""
    seen: dict[str, None] = {}
    for text in addresses:
        ip = _ip(text)
        if ip is not None:
            seen.setdefault(str(ip), None)
            if len(seen) >= limit:
                break
    return tuple(seen)


# --------------------------------------------------------------------------- route


async def route(
    domain: str,
    resolver: Resolver,
    *,
    rng: random.Random | None = None,
    local_domains: Collection[str] = (),
    local_hostnames: Collection[str] = (),
    local_addresses: Collection[str] = (),
    max_mx: int = MAX_MX_HOSTS,
    max_addresses: int = MAX_ADDRESSES_PER_HOST,
) -> Route:
    """The route for mail to ``domain``, or :class:`RoutingError`.

    ``local_domains`` are delivered locally. ``local_hostnames`` (our
    ``hostname`` and any other name this server answers to) and
    ``local_addresses`` (the addresses it receives mail on) identify this
    server in an MX list, for loop detection. ``rng`` orders MX hosts of
    equal preference.
    """
    if max_mx < 1 or max_addresses < 1:
        raise ValueError("max_mx and max_addresses must be at least 1")
    rng = rng if rng is not None else _default_rng
    try:
        name = normalize_domain(domain)
    except AddressError:
        raise PermanentRoutingError(domain, 550, "5.1.2", "Bad destination domain") from None
    ours = _Self(local_hostnames, local_addresses)

    if name in {normalize_domain(d) for d in local_domains}:
        return Route(name, local=True)

    if name.startswith("["):
        # RFC 5321 §5.1: an address literal is used as is, no DNS lookup.
        address = _literal_address(name)
        if ours.has_address([address]):
            raise _loop(name)
        return Route(name, (Destination(name, 0, (address,)),))

    try:
        records = await resolver.mx(name)
    except NXDomain:
        raise _no_such_domain(name) from None
    except NoAnswer:
        records = []
    except TemporaryDNSError:
        raise _dns_failure(name) from None

    if not records:
        return await _implicit_route(name, resolver, ours, max_addresses)

    # RFC 7505 §3: a null MX is the one MX record of a domain that accepts
    # no mail; the client MUST NOT try to deliver. A "." listed beside real
    # MX hosts breaks that rule; we ignore the "." and use the others.
    real = [r for r in records if not r.is_null]
    if not real:
        raise _null_mx(name)
    candidates = _order(_usable_exchanges(real), rng)
    if not candidates:
        raise _unroutable(name)

    # RFC 5321 §5.1: when this host appears in the MX list it is already a
    # mail exchanger for the domain, so it MUST drop its own entry and every
    # MX whose preference is equal or worse (larger). First by name, before
    # any lookup ...
    cutoff = min((r.preference for r in candidates if ours.is_named(r.exchange)), default=None)
    if cutoff is not None:
        candidates = [r for r in candidates if r.preference < cutoff]
        if not candidates:
            raise _loop(name)
    candidates = candidates[:max_mx]

    outcomes = await asyncio.gather(
        *(_addresses(resolver, r.exchange, max_addresses) for r in candidates)
    )
    # ... and by address: a host name that resolves to one of our addresses
    # is us under another name.
    self_prefs = [
        r.preference
        for r, found in zip(candidates, outcomes, strict=True)
        if isinstance(found, tuple) and ours.has_address(found)
    ]
    limit = min(self_prefs, default=None)
    destinations: list[Destination] = []
    temporary = ""  # the first MX host whose addresses the DNS did not give
    for record, found in zip(candidates, outcomes, strict=True):
        if limit is not None and record.preference >= limit:
            continue
        if isinstance(found, tuple):
            destinations.append(Destination(record.exchange, record.preference, found))
        elif isinstance(found, TemporaryDNSError):
            temporary = temporary or record.exchange
        # NXDOMAIN / no address for this MX host: skip it, try the others
        # (RFC 5321 §5.1: "MX records ... none of them are usable").
    if destinations:
        return Route(name, tuple(destinations))
    if limit is not None and not any(r.preference < limit for r in candidates):
        raise _loop(name)
    if temporary:
        raise _dns_failure(name, temporary, "A")
    raise _unroutable(name)


async def _implicit_route(name: str, resolver: Resolver, ours: _Self, max_addresses: int) -> Route:
    """RFC 5321 §5.1: no MX records — the domain is its own implicit MX, preference 0."""
    if ours.is_named(name):
        raise _loop(name)
    found = await _addresses(resolver, name, max_addresses)
    if isinstance(found, NXDomain):
        raise _no_such_domain(name, "A")
    if isinstance(found, TemporaryDNSError):
        raise _dns_failure(name, name, "A")
    if isinstance(found, DNSError):
        raise _no_mail_host(name)
    if ours.has_address(found):
        raise _loop(name)
    return Route(name, (Destination(name, 0, found),), implicit_mx=True)


async def _addresses(resolver: Resolver, host: str, limit: int) -> tuple[str, ...] | DNSError:
    """The addresses of ``host`` (bounded), or the DNS error that stood in the way."""
    try:
        found = _unique(await resolver.addresses(host), limit)
    except DNSError as exc:
        return exc
    return found if found else NoAnswer(host, f"{host}: no usable address")


class _Self:
    """The names and addresses that mean "this server" in an MX list."""

    def __init__(self, hostnames: Collection[str], addresses: Collection[str]) -> None:
        self._names = {normalize_domain(h) for h in hostnames}
        self._addresses: set[IPAddress] = set()
        for text in addresses:
            ip = _ip(text)
            if ip is None:
                raise ValueError(f"not an IP address: {text!r}")
            self._addresses.add(ip)

    def is_named(self, host: str) -> bool:
        return host in self._names

    def has_address(self, addresses: Iterable[str]) -> bool:
        return any(_ip(a) in self._addresses for a in addresses)
