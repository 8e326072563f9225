"""``mailstead check dns DOMAIN``: is the domain published the way it should be?

Each check asks the DNS (the resolvers of ``[delivery] dns_servers``, the
ones delivery uses) and compares the answer with what ``mailstead
dns-records`` suggests (:func:`mailstead.mailauth.dnsrecords.records`); a
record that is missing or wrong comes with the exact record to publish.
Statuses: ``pass``; ``warn`` (works, but worse than it should); ``fail``
(mail is refused, lost or unauthenticated, or the lookup failed);
``info`` (optional, reported for the operator). docs/checks.md lists them.

The sending addresses are ``delivery.source_ip``, the
``[delivery.source_ip_by_domain]`` values and the ``[[network.addresses]]``;
with none of those configured the kernel chooses, and the addresses of the
hostname stand in for them.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field

from mailstead.checks.config import hostname_warning
from mailstead.checks.lookups import CheckResolver, Lookups
from mailstead.checks.outcome import STATUSES, DNSCheck, SendingAddress, of_type, sending_addresses
from mailstead.checks.policies import (
    check_dkim,
    check_dmarc,
    check_mta_sts,
    check_spf,
    check_tls_rpt,
)
from mailstead.config import Config
from mailstead.dns import DNSError, MXRecord, NoAnswer, NXDomain
from mailstead.mailauth.dnsrecords import Record, records

__all__ = ["DNSReport", "check_domain", "run_checks"]

#: Seconds one lookup may take, across the configured servers.
LOOKUP_TIMEOUT = 5.0


@dataclass(slots=True)
class DNSReport:
    """Every check of one domain, in a fixed order."""

    domain: str
    checks: list[DNSCheck] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(c.status == "fail" for c in self.checks)

    def counts(self) -> dict[str, int]:
        return {s: sum(c.status == s for c in self.checks) for s in STATUSES}


def run_checks(config: Config, domain: str) -> DNSReport:
    """Check ``domain`` with the resolvers ``config`` delivers through.

    Raises DNSRecordsError for a domain this server does not serve and
    DKIMError when its keys cannot be made or read (as ``dns-records`` does,
    this creates the domain's DKIM keys if it has none).
    """
    suggested = records(config, domain)
    resolver = Lookups(config.delivery.dns_servers, timeout=LOOKUP_TIMEOUT)
    return asyncio.run(check_domain(config, suggested, resolver))


async def check_domain(
    config: Config, suggested: Sequence[Record], resolver: CheckResolver
) -> DNSReport:
    """The checks of the domain ``suggested`` (``records()``) is for, in report order."""
    domain = suggested[0].name.rstrip(".")
    sending = await sending_addresses(config, resolver)
    parts: list[Awaitable[list[DNSCheck]]] = [
        _mx(config, domain, sending, suggested, resolver),
        _ptrs(config, sending, suggested, resolver),
        check_spf(config, domain, sending, suggested, resolver),
        check_dkim(suggested, resolver),
        check_dmarc(domain, suggested, resolver),
        check_tls_rpt(domain, suggested, resolver),
        check_mta_sts(domain, resolver),
        _client_settings(domain, resolver),
    ]
    report = DNSReport(domain)
    if warning := hostname_warning(config.hostname):
        report.checks.append(DNSCheck("hostname", "warn", config.hostname, "hostname " + warning))
    for found in await asyncio.gather(*parts):
        report.checks += found
    return report


def _show_mx(mx: list[MXRecord]) -> str:
    return ", ".join(f"{r.preference} {r.exchange}" for r in sorted(mx))


async def _mx(
    config: Config,
    domain: str,
    sending: Sequence[SendingAddress],
    suggested: Sequence[Record],
    resolver: CheckResolver,
) -> list[DNSCheck]:
    publish = of_type(suggested, "MX")
    try:
        mx = await resolver.mx(domain)
    except NXDomain:
        return [DNSCheck("mx", "fail", domain, f"{domain} does not exist in the DNS", publish)]
    except NoAnswer:
        # RFC 5321 §5.1: without MX, senders try the domain's own address.
        message = "no MX record: senders fall back to the address of the domain itself"
        return [DNSCheck("mx", "fail", domain, message, publish)]
    except DNSError as exc:
        return [DNSCheck("mx", "fail", domain, f"lookup failed: {exc}")]
    if any(r.is_null for r in mx):
        message = "null MX: the domain says it accepts no mail (RFC 7505)"
        return [DNSCheck("mx", "fail", domain, message, publish)]
    ours = sorted(r for r in mx if r.exchange == config.hostname)
    first = min(r.preference for r in mx)
    if not ours:
        message = f"MX {_show_mx(mx)} does not name this host ({config.hostname})"
        check = DNSCheck("mx", "warn", domain, message, publish)
    elif ours[0].preference > first:
        # RFC 5321 §5.1: the lowest preference is tried first.
        primary = _show_mx([r for r in mx if r.preference == first])
        message = f"{config.hostname} is a backup MX; mail goes first to {primary}"
        check = DNSCheck("mx", "warn", domain, message, publish)
    else:
        check = DNSCheck("mx", "pass", domain, f"MX {_show_mx(mx)}")
    hosts = sorted({r.exchange for r in mx})
    # This host's address records, when its addresses are configured.
    own = tuple(
        Record(
            "A" if ipaddress.ip_address(s.address).version == 4 else "AAAA",
            f"{config.hostname}.",
            s.address,
            f"address of {config.hostname}",
        )
        for s in sending
        if s.origin != "hostname"
    )
    found = await asyncio.gather(
        *(_mx_host(host, own if host == config.hostname else (), resolver) for host in hosts)
    )
    return [check, *found]


async def _mx_host(host: str, publish: tuple[Record, ...], resolver: CheckResolver) -> DNSCheck:
    try:
        addresses = await resolver.addresses(host)
    except (NXDomain, NoAnswer):
        # RFC 5321 §5.1: an MX host is reached through its A/AAAA records.
        message = f"no A or AAAA record: mail cannot reach {host}; publish its address"
        return DNSCheck("mx-host", "fail", host, message, publish)
    except DNSError as exc:
        return DNSCheck("mx-host", "fail", host, f"lookup failed: {exc}")
    return DNSCheck("mx-host", "pass", host, "A/AAAA " + ", ".join(addresses))


def _ptr_record(address: str, helo: str, suggested: Sequence[Record]) -> Record:
    reverse = ipaddress.ip_address(address).reverse_pointer + "."
    for rec in of_type(suggested, "PTR"):
        if rec.name == reverse:
            return rec
    comment = f"reverse DNS of {address}: ask the holder of {address} (the hosting provider)"
    return Record("PTR", reverse, f"{helo}.", comment)


async def _ptrs(
    config: Config,
    sending: list[SendingAddress],
    suggested: Sequence[Record],
    resolver: CheckResolver,
) -> list[DNSCheck]:
    helo = config.delivery.helo_name or config.hostname
    if not sending:
        message = (
            f"no sending address known: {config.hostname} has no address and none is "
            "configured (delivery.source_ip, [[network.addresses]])"
        )
        return [DNSCheck("ptr", "warn", config.hostname, message)]
    return list(await asyncio.gather(*(_ptr(s, helo, suggested, resolver) for s in sending)))


async def _ptr(
    sending: SendingAddress, helo: str, suggested: Sequence[Record], resolver: CheckResolver
) -> DNSCheck:
    address = sending.address
    publish = (_ptr_record(address, helo, suggested),)
    origin = f" ({sending.origin})"
    try:
        names = await resolver.ptr(address)
    except (NXDomain, NoAnswer):
        message = f"no PTR record{origin}: many receivers refuse mail from an address without one"
        return DNSCheck("ptr", "fail", address, message, publish)
    except DNSError as exc:
        return DNSCheck("ptr", "fail", address, f"lookup failed{origin}: {exc}")
    ip = ipaddress.ip_address(address)
    confirmed = []
    for name in names:
        try:
            forward = await resolver.addresses(name)
        except DNSError:
            continue
        if ip in {ipaddress.ip_address(a) for a in forward}:
            confirmed.append(name)
    # RFC 8601 §3 (iprev): the name must resolve back to the address.
    if helo in confirmed:
        return DNSCheck("ptr", "pass", address, f"PTR {helo}, which resolves back{origin}")
    if confirmed:
        message = f"PTR {confirmed[0]}, not the EHLO name {helo}{origin}"
        return DNSCheck("ptr", "warn", address, message, publish)
    message = (
        f"PTR {', '.join(names)} does not resolve back to {address}{origin}: "
        "receivers see no forward-confirmed name"
    )
    return DNSCheck("ptr", "fail", address, message, publish)


async def _client_settings(domain: str, resolver: CheckResolver) -> list[DNSCheck]:
    """autoconfig (Thunderbird) and autodiscover (Outlook): informational only."""
    out = []
    for label in ("autoconfig", "autodiscover"):
        name = f"{label}.{domain}"
        try:
            addresses = await resolver.addresses(name)
        except DNSError:
            message = "not published: mail clients guess the settings (optional)"
            out.append(DNSCheck(label, "info", name, message))
            continue
        message = f"A/AAAA {', '.join(addresses)}: mail clients ask it for settings over HTTPS"
        out.append(DNSCheck(label, "info", name, message))
    return out
