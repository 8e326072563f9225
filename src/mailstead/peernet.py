"""The network a peer's address is counted in, for limits per site or customer.

Connection caps (``net/listener.py``), rate limits and greylisting
(``mailauth/ratelimit.py``, ``mailauth/greylist.py``) count an address
together with its neighbours: an IPv4 /24 or an IPv6 /64 is, as a rule,
one site or one customer of a provider.
"""

from __future__ import annotations

import ipaddress

__all__ = ["network_of"]


def network_of(ip: str) -> str:
    """``ip``'s IPv4 /24 or IPv6 /64 (an IPv4-mapped IPv6 address counts as IPv4)."""
    if ":" not in ip and ip.count(".") == 3:
        # A peer's IPv4 address as the kernel reports it, dotted quad: its
        # /24 is the first three parts (cheaper than ipaddress, per command).
        return ip.rpartition(".")[0] + ".0/24"
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped
        if mapped is None:
            return str(ipaddress.IPv6Network((address, 64), strict=False))
        address = mapped
    return str(ipaddress.IPv4Network((address, 24), strict=False))
