"""Listening sockets and the per-IP connection gate shared by all protocols."""

from __future__ import annotations

import ctypes
import multiprocessing
import socket
import zlib

from mailstead.config import HostPort

# Hash buckets for per-IP counts. Two addresses in one bucket are counted
# together, which can only make the gate stricter, never looser.
_BUCKETS = 4096


class ConnectionGate:
    """Counts open connections of one listener, in all and per client IP.

    Postfix's anvil and Dovecot's ``mail_max_userip_connections`` play this
    part: one address cannot take every slot. The counts live in shared
    memory made before the worker processes are forked, one row per worker:
    each worker writes only its own row (from its single event-loop thread,
    so without locks) and reads the sum. When a worker dies, the supervisor
    clears its row, so a crash never leaks slots.
    """

    def __init__(self, per_ip: int, total: int, *, workers: int = 1) -> None:
        self.per_ip = per_ip
        self.total = total
        self.workers = workers
        self._row = _BUCKETS + 1  # the last cell of a row is its total
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

    def admit(self, ip: str) -> bool:
        bucket = zlib.crc32(ip.encode()) % _BUCKETS
        if self._sum(_BUCKETS) >= self.total or self._sum(bucket) >= self.per_ip:
            return False
        base = self._worker * self._row
        self._counts[base + bucket] += 1
        self._counts[base + _BUCKETS] += 1
        return True

    def release(self, ip: str) -> None:
        bucket = zlib.crc32(ip.encode()) % _BUCKETS
        base = self._worker * self._row
        self._counts[base + bucket] -= 1
        self._counts[base + _BUCKETS] -= 1


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
