"""``[http_client]``: where the HTTP requests the server makes may go."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

from mailstead.config.reader import Reader

__all__ = ["HttpClientConfig", "IPNetwork", "load_http_client"]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class HttpClientConfig:
    """Limits on the HTTP requests the server itself makes (webhooks)."""

    #: Private, loopback or link-local networks requests may reach in addition
    #: to public addresses; everything non-public is refused otherwise (SSRF).
    allow_networks: tuple[IPNetwork, ...] = ()


def load_http_client(r: Reader, data: Mapping[str, object]) -> HttpClientConfig:
    """The ``[http_client]`` table of ``data``."""
    t = r.table(data, "http_client", "", ("allow_networks",))
    networks = r.each(
        t.get("allow_networks", []),
        "http_client.allow_networks",
        ipaddress.ip_network,
        'a network like "127.0.0.0/8"',
    )
    return HttpClientConfig(allow_networks=tuple(networks))
