"""The ``[listen] metrics`` sockets: one HTTP request per connection, answered and closed.

Every worker accepts on the sockets ``serve`` bound before forking, like
the mail listeners, and any of them answers: in multiprocess mode each
reads every process's files (metrics/shared.py). The request head is
parsed by metrics/request.py; this module owns the I/O and its bounds: a
deadline for the whole exchange (a client that sends slowly or never
reads the answer is cut off), a cap on connections at once per worker,
and the rendering in a thread, off the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Executor

from mailstead.metrics.request import Refusal, read_head, response, route

__all__ = ["MetricsService"]

log = logging.getLogger("mailstead.metrics")

#: Seconds a connection may take, from accept to the last byte of the answer.
EXCHANGE_TIMEOUT = 10.0
#: Connections one worker serves at once; more are closed unanswered.
MAX_CONNECTIONS = 16


class MetricsService:
    """Answers scrapes on one worker's metrics sockets with ``render()`` (run in ``executor``)."""

    def __init__(
        self,
        render: Callable[[], bytes],
        content_type: str,
        executor: Executor | None = None,
        *,
        timeout: float = EXCHANGE_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self.render = render
        self.content_type = content_type
        self.executor = executor
        self.timeout = timeout
        self.max_connections = max_connections
        self.connections: set[MetricsConnection] = set()

    def protocol_factory(self) -> MetricsConnection:
        return MetricsConnection(self)

    def close(self) -> None:
        """Abort every connection (server shutdown: a scrape is not worth waiting for)."""
        for connection in list(self.connections):
            connection.abort()


class MetricsConnection(asyncio.Protocol):
    """One scrape: read the head, answer once, close."""

    def __init__(self, service: MetricsService) -> None:
        self.service = service
        self.transport: asyncio.Transport | None = None
        self._buffer = b""
        self._answered = False
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        service = self.service
        if len(service.connections) >= service.max_connections:
            transport.abort()  # no words: a flood gets nothing to read
            return
        service.connections.add(self)
        loop = asyncio.get_running_loop()
        self._deadline = loop.call_later(service.timeout, self._timed_out)

    def data_received(self, data: bytes) -> None:
        if self._answered:
            return  # a body or a second request: never read, the close ends it
        self._buffer += data
        try:
            request = read_head(self._buffer)
        except Refusal as refusal:
            log.info("metrics request refused: %d %s", refusal.status, refusal)
            self._answer(response(refusal.status))
            return
        if request is None:
            return
        status = route(request)
        if status != 200:
            self._answer(response(status))
            return
        self._answered = True
        self._buffer = b""
        assert self.transport is not None
        self.transport.pause_reading()
        loop = asyncio.get_running_loop()
        rendering = loop.run_in_executor(self.service.executor, self.service.render)
        rendering.add_done_callback(self._rendered)

    def _rendered(self, rendering: asyncio.Future[bytes]) -> None:
        if rendering.cancelled():
            return
        failure = rendering.exception()
        if failure is not None:
            log.error("metrics could not be rendered: %s", failure)
            self._send(response(500))
            return
        self._send(response(200, rendering.result(), self.service.content_type))

    def _answer(self, data: bytes) -> None:
        self._answered = True
        self._buffer = b""
        self._send(data)

    def _send(self, data: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        transport.write(data)
        transport.close()  # after the buffer is written; the deadline still applies

    def _timed_out(self) -> None:
        self._deadline = None
        if self._answered or self.transport is None:
            self.abort()  # the answer is not being read (or not made in time): cut off
            return
        self._answer(response(408))  # RFC 9110 §15.5.9
        # The close waits for the peer to read the 408; not for long.
        self._deadline = asyncio.get_running_loop().call_later(1.0, self.abort)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def eof_received(self) -> bool | None:
        if not self._answered:
            self.abort()  # the head can no longer be completed
            return None
        return True  # half-closed after its request: the answer still goes out

    def connection_lost(self, exc: Exception | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self.service.connections.discard(self)
