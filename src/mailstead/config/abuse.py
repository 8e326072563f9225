"""``[abuse]``: rate limits, DNS block lists and greylisting (docs/abuse.md)."""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass

from mailstead.config.reader import Reader, domain_name, duration, show
from mailstead.config.values import parse_duration

__all__ = ["AbuseConfig", "Rate", "load_abuse", "parse_rate"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Clients the smtp listener's checks leave alone by default: this host
#: (Postfix exempts ``mynetworks`` from its rates the same way).
LOOPBACK: tuple[Network, ...] = (
    ipaddress.IPv4Network("127.0.0.0/8"),
    ipaddress.IPv6Network("::1/128"),
)


@dataclass(frozen=True, slots=True)
class Rate:
    """At most ``count`` per ``seconds``: a bucket of ``count`` refilled evenly over ``seconds``."""

    count: int
    seconds: int

    def __str__(self) -> str:
        return f"{self.count}/{_show_seconds(self.seconds)}"


@dataclass(frozen=True, slots=True)
class AbuseConfig:
    """Limits against clients that send too much, and the optional DNSBL and greylisting.

    A rate of None is no limit.
    """

    #: Messages (MAIL FROM) per client address on the ``smtp`` listener.
    ip_messages: Rate | None = Rate(60, 60)
    #: Recipients (RCPT TO) per client address on the ``smtp`` listener.
    ip_recipients: Rate | None = Rate(300, 60)
    #: An IPv4 /24 or IPv6 /64 may send this many times an address's rates.
    network_share: int = 4
    #: Messages per authenticated user on the submission listeners.
    user_messages: Rate | None = Rate(200, 3600)
    #: Recipients per authenticated user on the submission listeners.
    user_recipients: Rate | None = Rate(1000, 3600)
    #: Messages per sender domain on the submission listeners.
    domain_messages: Rate | None = Rate(1000, 3600)
    #: Recipients per sender domain on the submission listeners.
    domain_recipients: Rate | None = Rate(5000, 3600)
    #: DNS block lists (RFC 5782) asked about each client of the ``smtp`` listener.
    dnsbl: tuple[str, ...] = ()
    #: Greylist unknown (network, sender, recipient) triplets on the ``smtp`` listener.
    greylist: bool = False
    #: Seconds a new triplet is refused before a retry is accepted.
    greylist_delay: int = 300
    #: Seconds after the first attempt within which the retry must come.
    greylist_window: int = 86400
    #: Triplets a client network must pass before it skips greylisting (0: never).
    greylist_whitelist_after: int = 5
    #: Seconds a passed triplet, and a whitelisted network, are remembered
    #: since they were last seen.
    greylist_remember: int = 35 * 86400
    #: Client networks the ``smtp`` listener's rates, DNSBL and greylisting
    #: skip (submission limits apply to every user wherever they are).
    exempt: tuple[Network, ...] = LOOPBACK

    def is_exempt(self, ip: str) -> bool:
        """Whether the ``smtp`` client at ``ip`` is in an :attr:`exempt` network."""
        if not self.exempt:
            return False
        address = _address(ip)
        return address is not None and any(address in network for network in self.exempt)

    @property
    def submission_limited(self) -> bool:
        return any(
            rate is not None
            for rate in (
                self.user_messages,
                self.user_recipients,
                self.domain_messages,
                self.domain_recipients,
            )
        )


_RATE = re.compile(r"(\d{1,9})/(\d{0,9}[smhdw](?:\d{1,9}[smhdw])*)")
_RATES = (
    "ip_messages",
    "ip_recipients",
    "user_messages",
    "user_recipients",
    "domain_messages",
    "domain_recipients",
)
_KEYS = (
    *_RATES,
    "network_share",
    "dnsbl",
    "greylist",
    "greylist_delay",
    "greylist_window",
    "greylist_whitelist_after",
    "greylist_remember",
    "exempt",
)


def parse_rate(text: str) -> Rate | None:
    """``"60/1m"`` (or ``"60/m"``) as a :class:`Rate`; ``"0"`` is None (no limit).

    Raises ValueError for anything else.
    """
    if text == "0":
        return None
    match = _RATE.fullmatch(text)
    if match is None:
        raise ValueError('expected a rate like "60/1m" or "500/1h" (or "0" for no limit)')
    count, period = match.groups()
    if period[0].isalpha():
        period = "1" + period
    seconds = parse_duration(period)
    if int(count) < 1:
        raise ValueError('a rate needs a count of at least 1 (or "0" for no limit)')
    return Rate(int(count), seconds)


def load_abuse(r: Reader, data: Mapping[str, object]) -> AbuseConfig:
    """The ``[abuse]`` table of ``data``."""
    t = r.table(data, "abuse", "", _KEYS)
    default = AbuseConfig()
    rates: dict[str, Rate | None] = {}
    for key in _RATES:
        if key not in t:
            rates[key] = getattr(default, key)
            continue
        text = r.string(t[key], f"abuse.{key}")
        try:
            rates[key] = parse_rate(text)
        except ValueError as exc:
            r.fail(f"abuse.{key}", f"{exc}, got {show(text)}")

    def whole(key: str, low: int, high: int) -> int:
        value = r.typed(t.get(key, getattr(default, key)), f"abuse.{key}", int, "a whole number")
        if not low <= value <= high:
            r.fail(f"abuse.{key}", f"expected {low} to {high}, got {value}")
        return value

    lists: list[str] = []
    for i, name in enumerate(r.string_list(t.get("dnsbl", []), "abuse.dnsbl")):
        zone = domain_name(r, name, f"abuse.dnsbl[{i}]")
        if zone not in lists:
            lists.append(zone)
    greylist = r.typed(t.get("greylist", default.greylist), "abuse.greylist", bool, "true or false")
    delay = duration(r, t, "abuse.greylist_delay", default.greylist_delay)
    window = duration(r, t, "abuse.greylist_window", default.greylist_window)
    if window <= delay:
        r.fail("abuse.greylist_window", "must be longer than abuse.greylist_delay")
    remember = duration(r, t, "abuse.greylist_remember", default.greylist_remember)
    exempt = default.exempt
    if "exempt" in t:
        exempt = tuple(
            r.each(t["exempt"], "abuse.exempt", _network, 'a network like "192.0.2.0/24"')
        )
    return AbuseConfig(
        ip_messages=rates["ip_messages"],
        ip_recipients=rates["ip_recipients"],
        user_messages=rates["user_messages"],
        user_recipients=rates["user_recipients"],
        domain_messages=rates["domain_messages"],
        domain_recipients=rates["domain_recipients"],
        network_share=whole("network_share", 1, 1000),
        dnsbl=tuple(lists),
        greylist=greylist,
        greylist_delay=delay,
        greylist_window=window,
        greylist_whitelist_after=whole("greylist_whitelist_after", 0, 1_000_000),
        greylist_remember=remember,
        exempt=exempt,
    )


@functools.lru_cache(maxsize=4096)
def _address(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """``ip`` parsed, IPv4-mapped IPv6 as IPv4 (cached: asked per command, on the loop)."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _network(text: str) -> Network:
    return ipaddress.ip_network(text, strict=False)


def _show_seconds(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
