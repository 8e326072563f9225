"""Listening sockets and the connection gate shared by all protocols."""

from __future__ import annotations

import ctypes
import enum
import ipaddress
import multiprocessing
import socket
from collections.abc import Sequence

from mailstead.config import HostPort
from mailstead.limits import ProxyProtocolLimits
from mailstead.peernet import network_of

# Hash buckets for per-IP and per-network counts. Two addresses in one bucket
# are counted together, which can only make the gate stricter, never looser.
BUCKETS = 4096

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
DEFAULT_PROXY_LIMITS = ProxyProtocolLimits()


def bucket(key: str) -> int:
    """The bucket of ``key`` in shared counts (0 to 4095).

    Python's keyed string hash, not CRC-32: CRC is linear, so addresses that
    differ in a digit or two (an attacker's 127.0.2.x and a client's
    127.0.9.y) fell into the same buckets 14 times as often as chance. The
    key is chosen at interpreter start and inherited by forked workers, so
    every process of one server agrees.
    """
    return hash(key) % BUCKETS


def cells(ip: str) -> tuple[int, int]:
    """The two counts ``ip`` adds to: its own bucket, and its network's after the
    ``BUCKETS`` address buckets (the layout of the gate's and the penalty's rows)."""
    return bucket(ip), BUCKETS + bucket(network_of(ip))


class Admission(enum.Enum):
    """What the gate said to a new connection; true only for ``ADMITTED``."""

    ADMITTED = "admitted"
    ADDRESS_FULL = "Too many connections from your address"
    NETWORK_FULL = "Too many connections from your network"
    LISTENER_FULL = "Too many connections to this server"

    def __bool__(self) -> bool:
        return self is Admission.ADMITTED


class ConnectionGate:
    """Counts open connections of one listener: in all, per client IP and per network.

    Postfix's anvil and Dovecot's ``mail_max_userip_connections`` play this
    part: one address, or one network of many addresses (IPv4 /24, IPv6
    /64), cannot take every slot. The counts live in shared memory made
    before the worker processes are forked, one row per worker: each worker
    writes only its own row (from its single event-loop thread, so without
    locks) and reads the sum. When a worker dies, the supervisor clears its
    row, so a crash never leaks slots.

    Behind a load balancer every connection comes from the balancer's
    address: the gate then counts the client's, which the connection's
    PROXY header names. ``proxy_from`` are the networks whose connections
    must start with one ([listen] proxy_protocol); the session reads it
    (``proxy_limits`` bound that) before it asks to be admitted.
    """

    def __init__(
        self,
        per_ip: int,
        total: int,
        *,
        per_network: int | None = None,
        stress_fraction: float = 0.8,
        workers: int = 1,
        proxy_from: Sequence[IPNetwork] = (),
        proxy_limits: ProxyProtocolLimits = DEFAULT_PROXY_LIMITS,
    ) -> None:
        self.proxy_from = tuple(proxy_from)
        self.proxy_limits = proxy_limits
        self.per_ip = per_ip
        self.per_network = per_network if per_network is not None else total
        self.total = total
        self.stress_fraction = stress_fraction
        self.workers = workers
        # A row: IP buckets, then network buckets, then the row's total.
        self._row = 2 * BUCKETS + 1
        self._counts = multiprocessing.RawArray(ctypes.c_int32, workers * self._row)
        self._worker = 0

    def bind_worker(self, index: int) -> None:
        """Count this process's connections in row ``index`` (after fork)."""
        self._worker = index

    def clear_worker(self, index: int) -> None:
        """Forget every connection of a worker that has exited."""
        start = index * self._row
        self._counts[start : start + self._row] = [0] * self._row

    def _sum(self, cell: int) -> int:
        return sum(self._counts[w * self._row + cell] for w in range(self.workers))

    @property
    def open(self) -> int:
        """Connections open on this listener, all workers together."""
        return self._sum(2 * BUCKETS)

    @property
    def stressed(self) -> bool:
        """More than ``stress_fraction`` of the slots are taken: deadlines shrink."""
        return self.open >= self.total * self.stress_fraction

    def expects_proxy_header(self, ip: str) -> bool:
        """Whether a connection from ``ip`` must begin with a PROXY header.

        Required from the listed networks and never accepted from others
        (proxy-protocol.txt §5: "accepting the header only from a number of
        known sources should be safe"), so nobody else can choose the
        address they are counted, logged and checked under.
        """
        if not self.proxy_from:
            return False
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:  # "unknown", or a scoped IPv6 address
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.proxy_from)

    def admit(self, ip: str) -> Admission:
        ip_cell, net_cell = cells(ip)
        if self._sum(ip_cell) >= self.per_ip:
            return Admission.ADDRESS_FULL
        if self._sum(net_cell) >= self.per_network:
            return Admission.NETWORK_FULL
        if self.open >= self.total:
            return Admission.LISTENER_FULL
        self._add(ip_cell, net_cell, 1)
        return Admission.ADMITTED

    def release(self, ip: str) -> None:
        self._add(*cells(ip), -1)

    def _add(self, ip_cell: int, net_cell: int, step: int) -> None:
        base = self._worker * self._row
        self._counts[base + ip_cell] += step
        self._counts[base + net_cell] += step
        self._counts[base + 2 * BUCKETS] += step


def bind(address: HostPort, *, backlog: int = 512) -> socket.socket:
    """A listening TCP socket, made before worker processes fork and share it."""
    host, port = address
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio turns Nagle's algorithm off (TCP_NODELAY)
    # only on sockets that say TCP. With it on, a reply written right after
    # an unacknowledged one (the greeting after TLS 1.3's session tickets)
    # waited for the client's delayed ACK: 40 ms on every imaps, pop3s and
    # submissions connection.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock
