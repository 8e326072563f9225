"""What the kernel has now: links and addresses read and changed over rtnetlink.

Everything goes through pyroute2's netlink socket, never through the text
output of ``ip`` or ``ifconfig``. Each call takes an optional network
namespace name (``ip netns add NAME``): the tests change addresses only in
namespaces they made, and image builders may do the same.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any  # pyroute2's messages are untyped

from pyroute2 import IPRoute  # type: ignore[import-untyped]
from pyroute2.netlink.exceptions import NetlinkError  # type: ignore[import-untyped]

__all__ = [
    "DAD_TIMEOUT",
    "IFNAMSIZ",
    "AddressInUseError",
    "BadAddressError",
    "DadFailedError",
    "InterfaceAddress",
    "InterfaceNotFoundError",
    "Link",
    "NetconfigError",
    "NotPermittedError",
    "Outcome",
    "add_address",
    "addresses",
    "check_label",
    "delete_address",
    "links",
    "parse_cidr",
]

#: The kernel's interface name buffer, NUL included (include/uapi/linux/if.h);
#: names and IPv4 labels hold at most IFNAMSIZ - 1 bytes.
IFNAMSIZ = 16

#: How long to wait for IPv6 duplicate address detection. The kernel's
#: default is one probe after a random delay of up to a second, answered
#: within a second (RFC 4862 §5.4, RFC 4861 §10); ten seconds covers a few
#: more probes (``dad_transmits``) on a slow link.
DAD_TIMEOUT = 10.0
_DAD_POLL = 0.05

_Interface = ipaddress.IPv4Interface | ipaddress.IPv6Interface

# linux/if_addr.h: the IFA_F_* bits, by the names ``ip addr`` prints.
_FLAGS = (
    (0x01, "secondary"),
    (0x02, "nodad"),
    (0x04, "optimistic"),
    (0x08, "dadfailed"),
    (0x10, "homeaddress"),
    (0x20, "deprecated"),
    (0x40, "tentative"),
    (0x80, "permanent"),
    (0x100, "mngtmpaddr"),
    (0x200, "noprefixroute"),
    (0x400, "autojoin"),
    (0x800, "stable-privacy"),
)
_TENTATIVE, _DADFAILED = 0x40, 0x08
# linux/rtnetlink.h: enum rt_scope_t
_SCOPES = {0: "global", 200: "site", 253: "link", 254: "host", 255: "nowhere"}
# linux/if_arp.h: ARPHRD_* for links that carry no IFLA_INFO_KIND
_LINK_TYPES = {1: "ether", 772: "loopback", 65534: "none"}
_FOREVER = 0xFFFFFFFF  # "forever" in struct ifa_cacheinfo


class NetconfigError(Exception):
    """A change or lookup that cannot be done; ``str()`` is the one-line reason."""


class InterfaceNotFoundError(NetconfigError):
    """The interface (or the network namespace) named does not exist."""


class BadAddressError(NetconfigError):
    """The CIDR or the label given is not one the kernel would take."""


class AddressInUseError(NetconfigError):
    """The address is already on another interface, or on this one differently."""


class NotPermittedError(NetconfigError):
    """The process lacks CAP_NET_ADMIN (or CAP_SYS_ADMIN to enter a namespace)."""


class DadFailedError(NetconfigError):
    """IPv6 duplicate address detection found the address in use, or did not finish."""


@dataclass(frozen=True, slots=True)
class Link:
    """One network interface as the kernel lists it."""

    name: str
    index: int
    state: str  # operstate, lower case: "up", "down", "unknown", "lowerlayerdown"
    mac: str  # "" for links without a hardware address
    mtu: int
    kind: str  # IFLA_INFO_KIND ("veth", "bridge") or the link type ("ether", "loopback")

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "index": self.index,
            "state": self.state,
            "mac": self.mac,
            "mtu": self.mtu,
            "kind": self.kind,
        }


@dataclass(frozen=True, slots=True)
class InterfaceAddress:
    """One address on one interface, with the kernel's flags and lifetimes."""

    iface: str
    index: int
    address: str
    prefix: int
    label: str  # IPv4 only; "" for IPv6
    scope: str
    flags: tuple[str, ...]
    valid_lifetime: int | None  # seconds; None: forever
    preferred_lifetime: int | None

    @property
    def family(self) -> str:
        return "inet6" if ":" in self.address else "inet"

    @property
    def cidr(self) -> str:
        return f"{self.address}/{self.prefix}"

    @property
    def ip(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        return ipaddress.ip_address(self.address)

    def to_json(self) -> dict[str, object]:
        return {
            "family": self.family,
            "address": self.address,
            "prefix": self.prefix,
            "cidr": self.cidr,
            "label": self.label,
            "scope": self.scope,
            "flags": list(self.flags),
            "valid_lifetime": self.valid_lifetime,
            "preferred_lifetime": self.preferred_lifetime,
        }


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a change did (or, in a dry run, would do), in one line."""

    changed: bool
    message: str
    address: InterfaceAddress | None = field(default=None)


def parse_cidr(text: str) -> _Interface:
    """``text`` as an interface address with an explicit prefix, or :class:`BadAddressError`."""
    if "/" not in text:
        raise BadAddressError(f"bad CIDR {text!r}: give the prefix length, as in 192.0.2.25/24")
    if "%" in text:
        raise BadAddressError(f"bad CIDR {text!r}: no zone index; name the interface instead")
    try:
        iface = ipaddress.ip_interface(text)
    except ValueError:
        raise BadAddressError(f"bad CIDR {text!r}: not an IPv4 or IPv6 address/prefix") from None
    ip, net = iface.ip, iface.network
    if ip.is_multicast or ip.is_unspecified:
        raise BadAddressError(f"bad CIDR {text!r}: not a unicast address")
    # RFC 950 / RFC 919: the all-zeros and all-ones hosts name the subnet and its
    # broadcast (RFC 3021: a /31 has neither).
    v4 = isinstance(iface, ipaddress.IPv4Interface)
    if v4 and net.prefixlen < 31 and ip in (net.network_address, net.broadcast_address):
        raise BadAddressError(f"bad CIDR {text!r}: the network's own or broadcast address")
    return iface


def _check_name(iface: str) -> None:
    # net/core/dev.c dev_valid_name()
    if (
        not iface
        or len(iface.encode()) > IFNAMSIZ - 1
        or iface in (".", "..")
        or any(c in "/:" or c.isspace() or not c.isprintable() for c in iface)
    ):
        raise InterfaceNotFoundError(f"{iface!r} is not a valid interface name")


def check_label(iface: str, label: str) -> str:
    """``label`` if the kernel would take it for an IPv4 address on ``iface``."""
    size = len(label.encode())
    if size > IFNAMSIZ - 1:
        raise BadAddressError(
            f"label {label!r} is {size} bytes; the kernel takes at most {IFNAMSIZ - 1}"
        )
    if not label.startswith(iface):
        raise BadAddressError(
            f"label {label!r} must start with the interface name, as in {iface}:1"
        )
    if any(c == "/" or c.isspace() or not c.isprintable() for c in label):
        raise BadAddressError(f"label {label!r} may not hold spaces, slashes or control characters")
    return label


def _int(value: object) -> int:
    assert isinstance(value, int)
    return value


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


def _link(msg: Any) -> Link:
    info = msg.get("IFLA_LINKINFO")
    kind = _str(info.get("IFLA_INFO_KIND")) if info is not None else ""
    link_type = _int(msg["ifi_type"])
    return Link(
        name=_str(msg.get("IFLA_IFNAME")),
        index=_int(msg["index"]),
        state=_str(msg.get("IFLA_OPERSTATE")).lower() or "unknown",
        mac=_str(msg.get("IFLA_ADDRESS")),
        mtu=_int(msg.get("IFLA_MTU") or 0),
        kind=kind or _LINK_TYPES.get(link_type, str(link_type)),
    )


def _lifetime(seconds: object) -> int | None:
    return None if not isinstance(seconds, int) or seconds == _FOREVER else seconds


def _address(msg: Any, names: dict[int, str]) -> InterfaceAddress:
    index = _int(msg["index"])
    # IFA_FLAGS carries all 32 bits; the header's ifa_flags only the low 8.
    bits = msg.get("IFA_FLAGS")
    flags = bits if isinstance(bits, int) else _int(msg["flags"])
    cache = msg.get("IFA_CACHEINFO")
    valid = preferred = None
    if isinstance(cache, dict):
        valid, preferred = _lifetime(cache.get("ifa_valid")), _lifetime(cache.get("ifa_preferred"))
    scope = _int(msg["scope"])
    # IFA_LOCAL is the address itself; IFA_ADDRESS is the peer's on point-to-point links.
    local = msg.get("IFA_LOCAL") or msg.get("IFA_ADDRESS")
    return InterfaceAddress(
        iface=names.get(index, str(index)),
        index=index,
        address=str(ipaddress.ip_address(_str(local))),
        prefix=_int(msg["prefixlen"]),
        label=_str(msg.get("IFA_LABEL")),
        scope=_SCOPES.get(scope, str(scope)),
        flags=tuple(name for bit, name in _FLAGS if flags & bit),
        valid_lifetime=valid,
        preferred_lifetime=preferred,
    )


def _netlink_error(exc: NetlinkError, doing: str) -> NetconfigError:
    code = exc.code
    if code in (errno.EPERM, errno.EACCES):
        return NotPermittedError(f"{doing}: not permitted (needs CAP_NET_ADMIN: run as root)")
    if code == errno.ENODEV:
        return InterfaceNotFoundError(f"{doing}: the interface is gone")
    if code == errno.EINVAL:
        return BadAddressError(f"{doing}: the kernel refused it as invalid")
    return NetconfigError(f"{doing}: {exc.args[1] if len(exc.args) > 1 else exc}")


@contextmanager
def _rtnl(netns: str | None) -> Iterator[IPRoute]:
    try:
        # flags=0: a namespace that does not exist is an error, never created.
        ipr = IPRoute(netns=netns, flags=0) if netns else IPRoute()
    except FileNotFoundError:
        raise InterfaceNotFoundError(f"no network namespace named {netns!r}") from None
    except PermissionError:
        raise NotPermittedError(
            f"entering network namespace {netns!r} is not permitted (needs CAP_SYS_ADMIN)"
        ) from None
    try:
        yield ipr
    finally:
        ipr.close()


def _links(ipr: IPRoute) -> list[Link]:
    return sorted((_link(m) for m in ipr.get_links()), key=lambda link: link.index)


def _addresses(ipr: IPRoute, names: dict[int, str]) -> list[InterfaceAddress]:
    return [_address(m, names) for m in ipr.get_addr()]


def links(*, netns: str | None = None) -> list[Link]:
    """Every link, in index order."""
    with _rtnl(netns) as ipr:
        return _links(ipr)


def addresses(*, netns: str | None = None) -> list[InterfaceAddress]:
    """Every address on every link, IPv4 and IPv6, in the kernel's order."""
    with _rtnl(netns) as ipr:
        return _addresses(ipr, {link.index: link.name for link in _links(ipr)})


def _find(ipr: IPRoute, iface: str) -> tuple[Link, list[InterfaceAddress]]:
    _check_name(iface)
    all_links = _links(ipr)
    link = next((each for each in all_links if each.name == iface), None)
    if link is None:
        raise InterfaceNotFoundError(f"no interface named {iface!r}")
    return link, _addresses(ipr, {each.index: each.name for each in all_links})


def add_address(
    iface: str,
    cidr: str,
    *,
    label: str | None = None,
    netns: str | None = None,
    dry_run: bool = False,
    dad_timeout: float = DAD_TIMEOUT,
) -> Outcome:
    """Put ``cidr`` on ``iface`` now; a no-op when it is there already.

    An IPv6 address is returned once duplicate address detection has
    finished: :class:`DadFailedError` if another node holds it (the address
    is then taken off again) or if DAD has not finished by ``dad_timeout``.
    """
    wanted = parse_cidr(cidr)
    v6 = isinstance(wanted, ipaddress.IPv6Interface)
    if label is not None:
        if v6:
            raise BadAddressError("labels are for IPv4 addresses only; IPv6 has none")
        check_label(iface, label)
    with _rtnl(netns) as ipr:
        link, present = _find(ipr, iface)
        for have in present:
            if have.ip != wanted.ip:
                continue
            if have.index != link.index:
                raise AddressInUseError(f"{wanted.ip} is already on {have.iface}")
            if have.prefix != wanted.network.prefixlen:
                raise AddressInUseError(f"{wanted.ip} is already on {iface} as {have.cidr}")
            if label is not None and have.label != label:
                raise AddressInUseError(
                    f"{have.cidr} is already on {iface} with label {have.label!r}"
                )
            return Outcome(False, f"{have.cidr} is already on {iface}: nothing to do", have)
        named = f" label {label}" if label else ""
        if dry_run:
            return Outcome(True, f"would add {wanted}{named} to {iface}")
        request: dict[str, object] = {
            "index": link.index,
            "address": str(wanted.ip),
            "prefixlen": wanted.network.prefixlen,
            "family": socket.AF_INET6 if v6 else socket.AF_INET,
        }
        if not v6:
            if wanted.network.prefixlen < 31:
                request["broadcast"] = str(wanted.network.broadcast_address)
            if label:
                request["label"] = label
        try:
            ipr.addr("add", **request)
        except NetlinkError as exc:
            raise _netlink_error(exc, f"adding {wanted} to {iface}") from None
        if not v6:
            return Outcome(True, f"added {wanted}{named} to {iface}", _one(ipr, link, wanted))
        return _await_dad(ipr, link, wanted, dad_timeout)


def _one(ipr: IPRoute, link: Link, wanted: _Interface) -> InterfaceAddress | None:
    names = {link.index: link.name}
    for msg in ipr.get_addr(index=link.index):
        have = _address(msg, names)
        if have.ip == wanted.ip and have.prefix == wanted.network.prefixlen:
            return have
    return None


def _await_dad(ipr: IPRoute, link: Link, wanted: _Interface, timeout: float) -> Outcome:
    # RFC 4862 §5.4: the address stays tentative until DAD finishes; the
    # kernel marks it dadfailed when a neighbour answers for it (§5.4.5).
    started = time.monotonic()
    deadline = started + timeout
    while True:
        have = _one(ipr, link, wanted)
        if have is None:
            raise DadFailedError(f"{wanted} vanished from {link.name} during DAD")
        if "dadfailed" in have.flags:
            try:
                ipr.addr(
                    "del",
                    index=link.index,
                    address=str(wanted.ip),
                    prefixlen=wanted.network.prefixlen,
                )
            except NetlinkError as exc:
                raise _netlink_error(exc, f"removing {wanted} after failed DAD") from None
            raise DadFailedError(
                f"DAD failed: another node on {link.name} uses {wanted.ip}; removed it"
            )
        if "tentative" not in have.flags:
            took = time.monotonic() - started
            return Outcome(
                True, f"added {wanted} to {link.name} (DAD passed in {took:.1f} s)", have
            )
        if time.monotonic() >= deadline:
            raise DadFailedError(
                f"{wanted} on {link.name} is still tentative after {timeout:g} s "
                f"(is {link.name} up with a carrier?); left in place"
            )
        time.sleep(_DAD_POLL)


def delete_address(
    iface: str,
    cidr: str,
    *,
    netns: str | None = None,
    dry_run: bool = False,
) -> Outcome:
    """Take ``cidr`` off ``iface``; a no-op when it is not there."""
    wanted = parse_cidr(cidr)
    with _rtnl(netns) as ipr:
        link, present = _find(ipr, iface)
        mine = [have for have in present if have.index == link.index and have.ip == wanted.ip]
        if not mine:
            return Outcome(False, f"{wanted} is not on {iface}: nothing to do")
        exact = next((have for have in mine if have.prefix == wanted.network.prefixlen), None)
        if exact is None:
            raise AddressInUseError(f"{wanted.ip} is on {iface} as {mine[0].cidr}, not {wanted}")
        if dry_run:
            return Outcome(True, f"would remove {wanted} from {iface}", exact)
        try:
            ipr.addr(
                "del",
                index=link.index,
                address=str(wanted.ip),
                prefixlen=wanted.network.prefixlen,
                family=socket.AF_INET6 if wanted.version == 6 else socket.AF_INET,
            )
        except NetlinkError as exc:
            if exc.code == errno.EADDRNOTAVAIL:
                return Outcome(False, f"{wanted} is not on {iface}: nothing to do")
            raise _netlink_error(exc, f"removing {wanted} from {iface}") from None
        return Outcome(True, f"removed {wanted} from {iface}", exact)
