"""Listening sockets and the per-IP connection gate shared by all protocols."""

from __future__ import annotations

from collections import Counter


class ConnectionGate:
    """Counts open connections of one listener, in all and per client IP.

    Postfix's anvil and Dovecot's ``mail_max_userip_connections`` play this
    part: one address cannot take every slot.
    """

    def __init__(self, per_ip: int, total: int) -> None:
        self.per_ip = per_ip
        self.total = total
        self._open: Counter[str] = Counter()
        self._count = 0

    def admit(self, ip: str) -> bool:
        if self._count >= self.total or self._open[ip] >= self.per_ip:
            return False
        self._open[ip] += 1
        self._count += 1
        return True

    def release(self, ip: str) -> None:
        self._count -= 1
        self._open[ip] -= 1
        if self._open[ip] <= 0:
            del self._open[ip]

    def open_from(self, ip: str) -> int:
        return self._open[ip]
