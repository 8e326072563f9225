"""The two waits of a connection's coroutine: for input, and for the peer to read.

:class:`FlowProtocol` is the asyncio side both the server sessions
(net/stream.py) and the outbound SMTP client (net/smtp_client.py) build on:
a future that completes when bytes or the end of the stream arrive, and one
that completes when the transport's write buffer has drained (asyncio's
``pause_writing``/``resume_writing``) or the connection is gone. Each
subclass decides how long to wait on them.
"""

from __future__ import annotations

import asyncio


class FlowProtocol(asyncio.Protocol):
    """Owns the readable and writable futures of one connection."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._readable: asyncio.Future[None] | None = None
        self._writable: asyncio.Future[None] | None = None

    def pause_writing(self) -> None:
        if self._writable is None or self._writable.done():
            self._writable = self.loop.create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    def _wake(self) -> None:
        """Input arrived (or the stream ended): the reader may look."""
        if self._readable is not None and not self._readable.done():
            self._readable.set_result(None)

    def _ended(self) -> None:
        """The connection is gone: neither wait can last any longer."""
        self._wake()
        self.resume_writing()
