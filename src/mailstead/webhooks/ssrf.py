"""Which addresses the server's outgoing HTTP requests may reach (SSRF guard).

A webhook URL is chosen by whoever may add an endpoint, and its host name by
whoever controls that name's DNS. Without a guard either could make the
server POST to its own loopback services, the LAN behind it or a cloud
metadata endpoint. :class:`AddressGuard` refuses every address that is not
plain public unicast, unless the operator lists its network in
``[http_client] allow_networks``.

The guard judges addresses, not names: the caller resolves the host, checks
every address it got and connects to a checked address itself, so nothing
can change between the check and the connection (no DNS-rebinding window).
A host that is an IP literal in any spelling C's ``inet_aton`` accepts
(``2130706433``, ``0177.0.0.1``, ``0x7f.1``, ``127.1``) is read as the
address it means by :func:`parse_host`, never handed to a resolver that
would read it the same way behind the guard's back.

Pure: no I/O.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "AddressGuard",
    "IPAddress",
    "MalformedHost",
    "Reason",
    "Refused",
    "classify",
    "parse_host",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class Reason(enum.Enum):
    """Why an address is refused (the value is what the delivery log shows)."""

    LOOPBACK = "loopback"
    PRIVATE = "private"
    LINK_LOCAL = "link-local"
    CGNAT = "shared address space (CGNAT)"
    MULTICAST = "multicast"
    UNSPECIFIED = "unspecified"
    BROADCAST = "broadcast"
    RESERVED = "reserved"
    DOCUMENTATION = "documentation"
    METADATA = "cloud metadata"
    MALFORMED = "malformed IP literal"


@dataclass(frozen=True, slots=True)
class Refused:
    """A refusal: the address (or host) refused, the reason, and how it was read.

    ``via`` names the embedded IPv4 address the reason is about when
    ``address`` is an IPv6 form that carries one (mapped, NAT64, 6to4, ...).
    """

    address: str
    reason: Reason
    via: str = ""

    def __str__(self) -> str:
        if self.via:
            return f"{self.address} ({self.via}) is {self.reason.value}"
        return f"{self.address} is {self.reason.value}"


class MalformedHost(ValueError):
    """A host that ends in a number yet is no valid IPv4 address (e.g. ``1.2.3.256``)."""


def _nets(*specs: tuple[str, Reason]) -> tuple[tuple[IPNetwork, Reason], ...]:
    return tuple((ipaddress.ip_network(net), reason) for net, reason in specs)


# Cloud metadata services: refused even inside an allowed network unless the
# allow-list names the address itself (see AddressGuard). AWS/GCP/Azure/
# OpenStack, AWS over IPv6, Alibaba Cloud.
_METADATA = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
)

# First match wins; more specific blocks come before the blocks holding them.
# Registry: RFC 6890 and the IANA special-purpose address registries.
_V4_TABLE = _nets(
    ("0.0.0.0/8", Reason.UNSPECIFIED),  # RFC 1122 §3.2.1.3: "this host"; Linux dials loopback
    ("10.0.0.0/8", Reason.PRIVATE),  # RFC 1918
    ("100.64.0.0/10", Reason.CGNAT),  # RFC 6598
    ("127.0.0.0/8", Reason.LOOPBACK),  # RFC 1122 §3.2.1.3
    ("169.254.0.0/16", Reason.LINK_LOCAL),  # RFC 3927
    ("172.16.0.0/12", Reason.PRIVATE),  # RFC 1918
    ("192.0.0.0/24", Reason.RESERVED),  # RFC 6890 §2.2.2: IETF protocol assignments
    ("192.0.2.0/24", Reason.DOCUMENTATION),  # RFC 5737
    ("192.88.99.0/24", Reason.RESERVED),  # RFC 7526: former 6to4 relay anycast
    ("192.168.0.0/16", Reason.PRIVATE),  # RFC 1918
    ("198.18.0.0/15", Reason.RESERVED),  # RFC 2544: benchmarking
    ("198.51.100.0/24", Reason.DOCUMENTATION),  # RFC 5737
    ("203.0.113.0/24", Reason.DOCUMENTATION),  # RFC 5737
    ("224.0.0.0/4", Reason.MULTICAST),  # RFC 5771
    ("255.255.255.255/32", Reason.BROADCAST),  # RFC 919
    ("240.0.0.0/4", Reason.RESERVED),  # RFC 1112 §4: future use
)

# Inside ::/96, so matched before an embedded IPv4 address is looked for.
_V6_OWN = _nets(
    ("::/128", Reason.UNSPECIFIED),  # RFC 4291 §2.5.2
    ("::1/128", Reason.LOOPBACK),  # RFC 4291 §2.5.3
)

_V6_TABLE = _nets(
    ("64:ff9b:1::/48", Reason.PRIVATE),  # RFC 8215: local-use NAT64
    ("100::/64", Reason.RESERVED),  # RFC 6666: discard-only
    ("2001:db8::/32", Reason.DOCUMENTATION),  # RFC 3849
    ("3fff::/20", Reason.DOCUMENTATION),  # RFC 9637
    ("fc00::/7", Reason.PRIVATE),  # RFC 4193: unique local
    ("fe80::/10", Reason.LINK_LOCAL),  # RFC 4291 §2.5.6
    ("fec0::/10", Reason.PRIVATE),  # RFC 3879: deprecated site-local
    ("ff00::/8", Reason.MULTICAST),  # RFC 4291 §2.7
)

_V4_MAPPED = ipaddress.ip_network("::ffff:0:0/96")  # RFC 4291 §2.5.5.2
_V4_COMPATIBLE = ipaddress.ip_network("::/96")  # RFC 4291 §2.5.5.1, deprecated
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052 §2.1 well-known prefix
_TEREDO = ipaddress.ip_network("2001::/32")  # RFC 4380
_IETF_PROTOCOLS = ipaddress.ip_network("2001::/23")  # RFC 2928
_GLOBAL_UNICAST = ipaddress.ip_network("2000::/3")  # RFC 4291 §2.4


def _classify_v4(address: ipaddress.IPv4Address) -> Reason | None:
    if address in _METADATA:
        return Reason.METADATA
    for network, reason in _V4_TABLE:
        if address in network:
            return reason
    return None


def _embedded_v4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for or tunnels to, if any."""
    if address in _V4_MAPPED:
        return address.ipv4_mapped
    if address in _NAT64 or address in _V4_COMPATIBLE:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)  # RFC 6052 §2.2: /96
    if address.sixtofour is not None:  # RFC 3056 §2: 2002:V4ADDR::/48
        return address.sixtofour
    if address.teredo is not None:  # RFC 4380 §4: (server, client); the client is dialled
        return address.teredo[1]
    return None


def classify(address: IPAddress) -> Refused | None:
    """Why ``address`` must not be connected to, or None for public unicast.

    IPv6 forms that embed an IPv4 address (IPv4-mapped, IPv4-compatible,
    NAT64 64:ff9b::/96, 6to4 2002::/16, Teredo) are judged by that address.
    """
    text = str(address)
    if isinstance(address, ipaddress.IPv4Address):
        reason = _classify_v4(address)
        return None if reason is None else Refused(text, reason)
    if address.scope_id is not None:
        address = ipaddress.IPv6Address(text.partition("%")[0])
    if address in _METADATA:
        return Refused(text, Reason.METADATA)
    for network, reason in _V6_OWN:
        if address in network:
            return Refused(text, reason)
    embedded = _embedded_v4(address)
    if embedded is not None:
        reason = _classify_v4(embedded)
        if reason is not None:
            return Refused(text, reason, via=str(embedded))
        if address in _V4_COMPATIBLE:
            return Refused(text, Reason.RESERVED, via=str(embedded))
        return None
    for network, reason in _V6_TABLE:
        if address in network:
            return Refused(text, reason)
    if address in _IETF_PROTOCOLS or address not in _GLOBAL_UNICAST:
        return Refused(text, Reason.RESERVED)
    return None


# One inet_aton part: 0x-hex (digits optional, as glibc reads "0x"), octal
# with a leading 0, or decimal. ASCII only: int() would accept other digits.
_PART = re.compile(r"0[xX][0-9a-fA-F]*|0[0-7]*|[1-9][0-9]*", re.ASCII)
_NUMERIC_LAST = re.compile(r"[0-9]+|0[xX][0-9a-fA-F]*", re.ASCII)


def _part_value(part: str) -> int:
    if not _PART.fullmatch(part):
        raise MalformedHost(f"{part!r} is not a number")
    if part[:2] in ("0x", "0X"):
        return int(part[2:] or "0", 16)
    if len(part) > 1 and part[0] == "0":
        return int(part, 8)
    return int(part)


def _parse_inet_aton(host: str) -> ipaddress.IPv4Address:
    """Read ``host`` as inet_aton does: 1-4 parts, the last filling the rest."""
    parts = host.split(".")
    if len(parts) > 4:
        raise MalformedHost(f"{host!r} has more than four parts")
    values = [_part_value(p) for p in parts]
    *head, last = values
    if any(v > 0xFF for v in head) or last >= 1 << (8 * (4 - len(head))):
        raise MalformedHost(f"{host!r} is out of range")
    number = last
    for index, value in enumerate(head):
        number |= value << (24 - 8 * index)
    return ipaddress.IPv4Address(number)


def parse_host(host: str) -> IPAddress | None:
    """The address a URL host names literally, or None for a DNS name.

    IPv6 literals come without brackets (as ``urllib`` reports
    them). A host whose last label is a number (decimal or 0x-hex, as the
    WHATWG URL standard's "ends in a number" test puts it) is an IPv4
    literal and is read the way ``inet_aton`` reads it; if it is none,
    :class:`MalformedHost` is raised instead of letting a resolver guess.
    """
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if ":" in host:
        try:
            return ipaddress.IPv6Address(host)
        except ValueError:
            raise MalformedHost(f"{host!r} is not an IPv6 address") from None
    # A trailing dot makes a name absolute; "127.0.0.1." still means 127.0.0.1.
    stripped = host[:-1] if host.endswith(".") else host
    if not stripped or not _NUMERIC_LAST.fullmatch(stripped.rsplit(".", 1)[-1]):
        return None
    return _parse_inet_aton(stripped)


class AddressGuard:
    """Owns the decision which addresses outgoing HTTP requests may connect to.

    ``allow_networks`` (``[http_client] allow_networks``: CIDRs such as
    ``"10.0.0.0/8"``) exempts the addresses inside them; an IPv4-mapped
    IPv6 address counts as the IPv4 address it maps. Cloud metadata
    addresses stay refused unless a listed network is that single address:
    allowing a whole range (say 100.64.0.0/10 for a VPN) must not open the
    metadata service that happens to sit in it.
    """

    __slots__ = ("_allow",)

    def __init__(self, allow_networks: Iterable[str | IPNetwork] = ()) -> None:
        self._allow: tuple[IPNetwork, ...] = tuple(
            ipaddress.ip_network(n, strict=False) if isinstance(n, str) else n
            for n in allow_networks
        )

    def _allowed(self, address: IPAddress, metadata: bool) -> bool:
        candidates: list[IPAddress] = [address]
        if isinstance(address, ipaddress.IPv6Address):
            if address.scope_id is not None:
                address = ipaddress.IPv6Address(str(address).partition("%")[0])
                candidates = [address]
            if address.ipv4_mapped is not None:
                candidates.append(address.ipv4_mapped)
        for network in self._allow:
            for candidate in candidates:
                if candidate.version != network.version or candidate not in network:
                    continue
                if not metadata or network.num_addresses == 1:
                    return True
        return False

    def check(self, address: IPAddress) -> Refused | None:
        """None if ``address`` may be connected to, else why not."""
        refused = classify(address)
        if refused is None:
            return None
        if self._allowed(address, refused.reason is Reason.METADATA):
            return None
        return refused

    def check_all(self, addresses: Iterable[IPAddress]) -> Refused | None:
        """The first refusal among ``addresses``; None if every one may be used.

        All must pass: a name whose answer mixes a public address with an
        internal one is refused whole, whichever the connection would pick.
        """
        for address in addresses:
            refused = self.check(address)
            if refused is not None:
                return refused
        return None
