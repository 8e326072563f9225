"""What one ``check dns`` check finds, and the sending addresses several checks share."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from mailstead.checks.lookups import CheckResolver
from mailstead.config import Config
from mailstead.dns import DNSError
from mailstead.mailauth.dnsrecords import Record

__all__ = ["STATUSES", "DNSCheck", "SendingAddress", "Status", "of_type", "sending_addresses"]

Status = Literal["pass", "warn", "fail", "info"]
#: Every status, in the order the summary counts them.
STATUSES: tuple[Status, ...] = ("pass", "warn", "fail", "info")


@dataclass(frozen=True, slots=True)
class DNSCheck:
    """One finding of ``check dns``: what was looked at, the verdict, what to publish."""

    #: Which check: ``hostname``, ``mx``, ``mx-host``, ``ptr``, ``spf``,
    #: ``dkim``, ``dmarc``, ``tls-rpt``, ``mta-sts``, ``autoconfig``, ``autodiscover``.
    check: str
    status: Status
    #: The DNS name (or, for ``ptr``, the address) looked at.
    name: str
    #: One line: what was found, and why it passes or not.
    message: str
    #: The records to publish (or, for PTR, to ask for) to make it pass.
    publish: tuple[Record, ...] = ()


@dataclass(frozen=True, slots=True)
class SendingAddress:
    """An address mail leaves from, and where the configuration names it."""

    address: str
    #: ``delivery.source_ip``, ``network.addresses[0]`` … or ``hostname``
    #: when none is configured and the hostname's address stands in.
    origin: str


async def sending_addresses(config: Config, resolver: CheckResolver) -> list[SendingAddress]:
    """The configured source addresses, else the hostname's (the kernel chooses)."""
    found: dict[str, str] = {}
    delivery = config.delivery
    if delivery.source_ip:
        found[delivery.source_ip] = "delivery.source_ip"
    for domain, address in delivery.source_ip_by_domain.items():
        found.setdefault(address, f"delivery.source_ip_by_domain.{domain}")
    for i, declared in enumerate(config.network.addresses):
        found.setdefault(declared.address, f"network.addresses[{i}]")
    if not found:
        try:
            for address in await resolver.addresses(config.hostname):
                found.setdefault(str(ipaddress.ip_address(address)), "hostname")
        except DNSError:
            pass
    return [SendingAddress(address, origin) for address, origin in found.items()]


def of_type(suggested: Sequence[Record], kind: str) -> tuple[Record, ...]:
    """The suggested records of type ``kind``."""
    return tuple(r for r in suggested if r.type == kind)
