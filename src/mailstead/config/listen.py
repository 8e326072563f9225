"""``[listen]``: the sockets each protocol listens on."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

from mailstead.config.http_client import IPNetwork
from mailstead.config.reader import Reader
from mailstead.config.values import HostPort, parse_hostport

__all__ = ["ListenConfig", "load_listen"]


@dataclass(frozen=True, slots=True)
class ListenConfig:
    """The sockets each protocol listens on; an empty tuple disables that listener."""

    #: MTA: mail from other servers, for local recipients only.
    smtp: tuple[HostPort, ...] = (("127.0.0.1", 2525),)
    #: MSA with STARTTLS; AUTH is required, and only after TLS.
    submission: tuple[HostPort, ...] = (("127.0.0.1", 2587),)
    #: MSA over implicit TLS (RFC 8314 §3.3).
    submissions: tuple[HostPort, ...] = (("127.0.0.1", 2465),)
    #: IMAP with STARTTLS.
    imap: tuple[HostPort, ...] = (("127.0.0.1", 2143),)
    #: IMAP over implicit TLS.
    imaps: tuple[HostPort, ...] = (("127.0.0.1", 2993),)
    #: POP3 with STLS.
    pop3: tuple[HostPort, ...] = (("127.0.0.1", 2110),)
    #: POP3 over implicit TLS.
    pop3s: tuple[HostPort, ...] = (("127.0.0.1", 2995),)
    #: Prometheus metrics over plain HTTP (``GET /metrics``); off by default:
    #: the answer has no authentication, so bind it where only the scraper reaches.
    metrics: tuple[HostPort, ...] = ()
    #: Load balancers (HAProxy ``send-proxy``/``send-proxy-v2``): a connection
    #: from these networks, on any mail listener, must begin with a PROXY
    #: header (v1 or v2), whose client address then counts for everything
    #: (logs, Received, limits, SPF, events); one without a valid header is
    #: closed. Connections from elsewhere are served as they are, and a PROXY
    #: header from them is just bad input. Empty: no header is read.
    proxy_protocol: tuple[IPNetwork, ...] = ()


_KEYS = ("smtp", "submission", "submissions", "imap", "imaps", "pop3", "pop3s", "metrics")


def load_listen(r: Reader, data: Mapping[str, object]) -> ListenConfig:
    """The ``[listen]`` table of ``data``; a protocol not named keeps its default."""
    t = r.table(data, "listen", "", (*_KEYS, "proxy_protocol"))
    defaults = ListenConfig()
    # strict: "10.0.0.1/8" is refused (host bits set), so a typo in the
    # prefix does not trust a network nobody meant.
    proxy_networks = r.each(
        t.get("proxy_protocol", []),
        "listen.proxy_protocol",
        ipaddress.ip_network,
        'a network like "10.0.0.0/8"',
    )
    return ListenConfig(
        **{
            name: (
                tuple(r.each(t[name], f"listen.{name}", parse_hostport, '"host:port"'))
                if name in t
                else getattr(defaults, name)
            )
            for name in _KEYS
        },
        proxy_protocol=tuple(proxy_networks),
    )
