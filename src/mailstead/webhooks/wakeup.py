"""How mail workers wake the webhook dispatcher process of ``serve``.

``serve`` runs the dispatcher in a process of its own, so POSTs never take
CPU from the processes that speak SMTP, IMAP and POP3. The workers store
events in the outbox (SQLite, shared by all) and then tell the dispatcher
over one Unix datagram socket pair made before the fork: an empty datagram
means "look at the outbox", a non-empty one carries the ids of deliveries
whose message is now readable, which the dispatcher may send before their
hold ends (``staging.SETTLE``).

Sending never blocks and never fails the caller: if the dispatcher is
behind and the socket buffer is full, the wake-up is dropped, and the
dispatcher finds the deliveries at its next poll (at most
``WebhookLimits.poll_interval`` later, or when their hold ends).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable, Sequence

__all__ = ["WakeChannel"]

# Ids per datagram: about 3 KB, well under any Unix datagram limit.
_IDS_PER_DATAGRAM = 100


class WakeChannel:
    """Owns the socket pair between the mail workers (senders) and the dispatcher."""

    def __init__(self) -> None:
        self._receiving, self._sending = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sending.setblocking(False)
        self._receiving.setblocking(False)

    def close(self) -> None:
        self._receiving.close()
        self._sending.close()

    def send(self, ids: Sequence[str] = ()) -> None:
        """Wake the dispatcher; ``ids`` may be sent at once. Safe from any thread."""
        datagrams = [
            "\n".join(ids[i : i + _IDS_PER_DATAGRAM]).encode("ascii")
            for i in range(0, len(ids), _IDS_PER_DATAGRAM)
        ] or [b""]
        for datagram in datagrams:
            # Full buffer (BlockingIOError) or no dispatcher: it polls anyway.
            with contextlib.suppress(OSError):
                self._sending.send(datagram)

    def listen(self, woken: Callable[[Sequence[str]], None]) -> Callable[[], None]:
        """Call ``woken(ids)`` on the running loop for every wake-up; returns the stopper."""
        loop = asyncio.get_running_loop()
        receiving = self._receiving

        def readable() -> None:
            ids: list[str] = []
            while True:
                try:
                    datagram = receiving.recv(65536)
                except (BlockingIOError, InterruptedError):
                    break
                if datagram:
                    ids += datagram.decode("ascii", "replace").split("\n")
            woken(ids)

        def stop() -> None:
            loop.remove_reader(receiving.fileno())

        loop.add_reader(receiving.fileno(), readable)
        return stop
