"""``[[network.addresses]]``: the interface addresses ``mailstead net apply`` keeps on the host."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

from mailstead.config.reader import Reader, show

__all__ = ["PERSIST_CHOICES", "DeclaredAddress", "NetworkConfig", "load_network"]

#: Where an address is written to survive a reboot: ``auto`` (the manager
#: that controls the interface), one manager by name, or ``none`` (live only).
PERSIST_CHOICES = ("auto", "ifupdown", "ifcfg", "nm", "netplan", "networkd", "none")

# Linux IFNAMSIZ is 16 bytes with the terminating NUL; an IPv4 label
# (IFA_LABEL) has the same bound.
_NAME_MAX = 15


@dataclass(frozen=True, slots=True)
class DeclaredAddress:
    """One address the host should carry: on which interface, and how it persists."""

    #: Interface name, e.g. ``eth0``.
    iface: str
    #: Address with its prefix length, normalised (``192.0.2.25/24``, ``2001:db8::25/64``).
    cidr: str
    #: IPv4 label (``eth0:1``, the old alias name); ``None`` for none.
    label: str | None = None
    #: One of :data:`PERSIST_CHOICES`.
    persist: str = "none"

    @property
    def address(self) -> str:
        """The address without its prefix length."""
        return str(ipaddress.ip_interface(self.cidr).ip)


@dataclass(frozen=True, slots=True)
class NetworkConfig:
    """The ``[network]`` section: addresses declared for the host."""

    addresses: tuple[DeclaredAddress, ...] = field(default_factory=tuple)


def _iface_name(r: Reader, text: str, key: str) -> str:
    # The kernel refuses "", ".", "..", "/" and whitespace in names (dev_valid_name).
    if (
        not text
        or len(text.encode()) > _NAME_MAX
        or text in (".", "..")
        or any(c == "/" or c == ":" or c.isspace() or not c.isprintable() for c in text)
    ):
        r.fail(key, f"expected an interface name (at most {_NAME_MAX} bytes), got {show(text)}")
    return text


def load_network(r: Reader, data: Mapping[str, object]) -> NetworkConfig:
    """The ``[network]`` table of ``data`` with its ``[[network.addresses]]``."""
    t = r.table(data, "network", "", ("addresses",))
    items = r.typed(
        t.get("addresses", []), "network.addresses", list, "an array of [[network.addresses]]"
    )
    out: list[DeclaredAddress] = []
    seen: dict[str, str] = {}
    for i, item in enumerate(items):
        key = f"network.addresses[{i}]"
        entry = r.typed(item, key, dict, "a table")
        r.no_unknown(entry, f"{key}.", ("iface", "cidr", "label", "persist"))
        for required in ("iface", "cidr"):
            if required not in entry:
                r.fail(f"{key}.{required}", "missing")
        iface = _iface_name(r, r.string(entry["iface"], f"{key}.iface"), f"{key}.iface")

        text = r.string(entry["cidr"], f"{key}.cidr")
        try:
            if "/" not in text:
                raise ValueError("no prefix length")
            interface = ipaddress.ip_interface(text)
            if interface.ip.is_unspecified or interface.ip.is_multicast:
                raise ValueError("not a host address")
        except ValueError:
            example = '"192.0.2.25/24"'
            r.fail(f"{key}.cidr", f"expected an address/prefix, e.g. {example}, got {show(text)}")
        address = str(interface.ip)
        if address in seen:
            r.fail(f"{key}.cidr", f"{address} is already declared at {seen[address]}")
        seen[address] = key

        label = None
        if "label" in entry:
            label = r.string(entry["label"], f"{key}.label")
            if interface.version != 4:
                r.fail(f"{key}.label", "labels exist for IPv4 addresses only")
            # The kernel takes a label that names its device: "eth0" or "eth0:…".
            if (
                len(label.encode()) > _NAME_MAX
                or not (label == iface or label.startswith(iface + ":"))
                or not label.isprintable()
                or any(c.isspace() for c in label)
            ):
                r.fail(
                    f"{key}.label",
                    f'expected "{iface}:NAME", at most {_NAME_MAX} bytes, got {show(label)}',
                )

        persist = r.string(entry.get("persist", "none"), f"{key}.persist")
        if persist not in PERSIST_CHOICES:
            choices = ", ".join(PERSIST_CHOICES)
            r.fail(f"{key}.persist", f"expected one of {choices}, got {show(persist)}")
        out.append(
            DeclaredAddress(
                iface=iface, cidr=interface.with_prefixlen, label=label, persist=persist
            )
        )
    return NetworkConfig(addresses=tuple(out))
