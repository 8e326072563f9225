"""Taking a PROXY header off a connection's socket, not one octet more.

The header (proto/proxy.py) comes before the mail protocol's first byte,
or before the TLS ClientHello on an implicit-TLS listener, and usually in
the same segment as them. Bytes an asyncio transport has read cannot be
given back to the TLS layer that ``loop.start_tls`` puts in between, so the
header is read the way the specification's sample code does (HAProxy's
proxy-protocol.txt §9): peek at what has arrived (``MSG_PEEK``), let the
parser say how long the header is, then receive exactly those octets.
What follows stays in the kernel's buffer for the transport.

:class:`ProxyHeaderReader` does that on a duplicate of the transport's
socket while the transport's own reading is paused; the session
(net/stream.py) decides how long to wait for it.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

from mailstead.proto.proxy import ProxyHeader, ProxyHeaderError, header_room, parse_proxy_header

__all__ = ["ProxyHeaderReader"]


class ProxyHeaderReader:
    """Owns a duplicate of one connection's socket until its PROXY header is read."""

    def __init__(self, transport: asyncio.Transport, max_v2_payload: int) -> None:
        """Raises ProxyHeaderError if the socket cannot be duplicated."""
        self._loop = asyncio.get_running_loop()
        self._max_v2_payload = max_v2_payload
        self._room = header_room(max_v2_payload)
        # The octets of the header consumed so far (all of them header: the
        # parser asks for more only while every octet seen belongs to it).
        self._seen = b""
        # A duplicate descriptor of the same socket: the transport keeps its
        # own, and asyncio lends out only a restricted view of it.
        try:
            self._sock: socket.socket | None = transport.get_extra_info("socket").dup()
        except OSError as exc:  # no descriptor left (EMFILE): the peer cannot be named
            raise ProxyHeaderError(f"cannot read it: {exc}") from None
        self._sock.setblocking(False)
        self._watching = False

    def step(self) -> ProxyHeader | None:
        """Take what has arrived: the header once whole, None while more must come.

        Raises ProxyHeaderError for a bad header and for a peer that closed
        or reset the connection before finishing it.
        """
        sock = self._sock
        assert sock is not None, "the reader is closed"
        try:
            peeked = sock.recv(self._room - len(self._seen), socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError as exc:
            raise ProxyHeaderError(f"connection failed before its PROXY header: {exc}") from None
        if not peeked:
            raise ProxyHeaderError(
                "connection closed before its PROXY header"
                + (f" ({len(self._seen)} octets of it)" if self._seen else "")
            )
        header = parse_proxy_header(self._seen + peeked, max_v2_payload=self._max_v2_payload)
        # Incomplete: every octet peeked is header, so take them all (and the
        # next readiness means new octets, not the same ones again).
        take = len(peeked) if header is None else header.length - len(self._seen)
        self._seen += self._consume(sock, take)
        return header

    @staticmethod
    def _consume(sock: socket.socket, count: int) -> bytes:
        """Receive ``count`` octets already peeked at (so already in the buffer)."""
        got = b""
        while len(got) < count:
            try:
                chunk = sock.recv(count - len(got))
            except OSError as exc:  # BlockingIOError too: the octets were there
                raise ProxyHeaderError(f"connection failed in its PROXY header: {exc}") from None
            if not chunk:
                raise ProxyHeaderError("connection closed in its PROXY header")
            got += chunk
        return got

    def watch(self, ready: Callable[[], None]) -> None:
        """Call ``ready`` once octets (or the end) may be there to ``step`` on."""
        assert self._sock is not None, "the reader is closed"
        self._loop.add_reader(self._sock.fileno(), ready)
        self._watching = True

    def unwatch(self) -> None:
        if self._watching and self._sock is not None:
            self._loop.remove_reader(self._sock.fileno())
        self._watching = False

    def close(self) -> None:
        """Stop watching and close the duplicate (the connection stays open)."""
        self.unwatch()
        if self._sock is not None:
            self._sock.close()
            self._sock = None
