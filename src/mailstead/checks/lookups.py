"""The DNS questions ``check dns`` asks: the MTA's three, and reverse lookups."""

from __future__ import annotations

import ipaddress
from typing import Protocol

import dns.rdatatype
import dns.rdtypes.ANY.PTR
import dns.reversename

from mailstead.dns import DNSResolver, Resolver

__all__ = ["CheckResolver", "Lookups"]


class CheckResolver(Resolver, Protocol):
    """A :class:`~mailstead.dns.Resolver` that also answers PTR questions."""

    async def ptr(self, address: str) -> list[str]:
        """The names (lower-case, no final dot) the PTR records of ``address`` give.

        Raises what the other lookups raise: NXDomain, NoAnswer, TemporaryDNSError.
        """
        ...


class Lookups(DNSResolver):
    """:class:`~mailstead.dns.DNSResolver` with PTR lookups: the resolver ``check dns`` uses."""

    async def ptr(self, address: str) -> list[str]:
        # RFC 1035 §3.5 (in-addr.arpa), RFC 3596 §2.5 (ip6.arpa).
        reverse = dns.reversename.from_address(str(ipaddress.ip_address(address)))
        answer = await self._resolve(reverse.to_text(omit_final_dot=True), dns.rdatatype.PTR)
        return [
            rdata.target.to_text(omit_final_dot=True).lower()
            for rdata in answer
            if isinstance(rdata, dns.rdtypes.ANY.PTR.PTR)
        ]
