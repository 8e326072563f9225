"""What every line-protocol session shares: admission, reading, writing, TLS.

:class:`StreamSession` is the asyncio side of one connection for the IMAP and
POP3 sessions: it admits or refuses the peer at the connection gate, hands
received bytes to the protocol, lets the session wait for input with a
timer (much cheaper per read than ``asyncio.wait_for``), waits for the
client to read when the transport's buffer is full, and upgrades the
connection to TLS keeping the bytes that arrive with the handshake's last
flight. The subclass runs the protocol in :meth:`serve`.
"""

from __future__ import annotations

import asyncio
import logging
import ssl

from mailstead.net import watchdog
from mailstead.net.flow import FlowProtocol
from mailstead.net.listener import ConnectionGate

log = logging.getLogger("mailstead.net")

# Stop reading from a client while this much input waits unprocessed.
READ_HIGH_WATER = 256 * 1024


class StreamSession(FlowProtocol):
    """Owns one connection's transport and the futures its session waits on."""

    #: Written to a peer the gate refuses, before closing.
    refusal = b""
    #: Name in log lines ("IMAP", "POP3").
    protocol_name = ""
    #: Unprocessed input that pauses reading until the protocol catches up.
    read_high_water = READ_HIGH_WATER
    #: The protocol's command names, and which word of a line is the name
    #: (1 for IMAP, after the tag), for the watchdog's note.
    command_names: frozenset[bytes] = frozenset()
    command_word = 0

    def __init__(self, gate: ConnectionGate | None, sessions: set[StreamSession]) -> None:
        super().__init__()
        self.transport: asyncio.Transport | None = None
        self.ip = "unknown"
        self._gate = gate
        self._sessions = sessions
        self._reading_paused = False
        self._unread = 0
        self.lost = False
        self.fresh = False  # bytes arrived since the session last asked for more
        self.shutting_down = False
        self._admitted = False
        self._task: asyncio.Task[None] | None = None
        self._input_head = b""  # the start of the first bytes since the last wait
        # Decrypted bytes that arrive with the client's TLS Finished, before
        # start_tls() returns; they are the first command under TLS.
        self._tls_early: list[bytes] | None = None

    # -- for the subclass ---------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Give received bytes to the protocol."""
        raise NotImplementedError

    async def serve(self) -> None:
        """Run the protocol until the connection ends."""
        raise NotImplementedError

    async def failed(self) -> None:
        """Tell the peer about an internal error (``serve`` raised)."""

    async def finished(self) -> None:
        """Release what the session holds; runs once, however it ended."""

    def consumed(self) -> None:
        """The protocol processed everything it was given: reading may go on."""
        self._unread = 0
        if self._reading_paused and self.transport is not None:
            self._reading_paused = False
            self.transport.resume_reading()

    async def wait_readable(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for input the protocol has not seen; whether any came.

        The serve loops call this when the protocol needs more bytes, so each
        turn of a loop either had fresh input or waited here. False means no
        more is coming now: the time ran out, the server is shutting down, or
        the peer ended its input, which leaves an unfinished line unfinished
        for good. The caller tells these apart by ``lost`` and
        ``shutting_down``; a loop that went on after a False with the peer
        gone would spin without ever awaiting (a POP3 ``CAPA`` without CRLF,
        then EOF, did).
        """
        if not self.fresh:
            if self.lost or self.shutting_down:
                return False
            readable = self._readable = self.loop.create_future()
            timer = self.loop.call_later(timeout, _settle, readable)
            try:
                await readable
            finally:
                timer.cancel()
                self._readable = None
            if not self.fresh:
                return False
        self._note_input()
        return True

    def _note_input(self) -> None:
        """Tell the watchdog which command this loop is about to work on."""
        command = watchdog.command_name(self._input_head, self.command_word, self.command_names)
        watchdog.note(self.protocol_name, self.ip, command)

    async def write(self, data: bytes, timeout: float) -> None:
        """Write ``data``; if the peer does not read, wait up to ``timeout`` then abort."""
        if not data or self.transport is None or self.transport.is_closing():
            return
        self.transport.write(data)
        if self._writable is not None and not self._writable.done():
            try:
                await asyncio.wait_for(self._writable, timeout)
            except TimeoutError:
                self.transport.abort()
                self.lost = True

    async def upgrade_tls(
        self, context: ssl.SSLContext | None, timeout: float
    ) -> list[bytes] | None:
        """Do the server side of a TLS handshake; the bytes that came with it, or None."""
        if context is None or self.transport is None or self.lost:
            return None
        self._tls_early = []
        try:
            transport = await self.loop.start_tls(
                self.transport, self, context, server_side=True, ssl_handshake_timeout=timeout
            )
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError) as exc:
            log.info("%s TLS handshake with [%s] failed: %s", self.protocol_name, self.ip, exc)
            self.lost = True
            return None
        finally:
            early, self._tls_early = self._tls_early, None
        if transport is None:
            return None
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        return early

    def shutdown(self) -> None:
        """Ask the session to end at its next wait for input."""
        self.shutting_down = True
        self._wake()

    async def wait_closed(self) -> None:
        if self._task is not None:
            await asyncio.shield(self._task)

    # -- asyncio.Protocol -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.ip = peer[0] if peer else "unknown"
        if self._gate is not None and not self._gate.admit(self.ip):
            transport.write(self.refusal)
            transport.close()
            return
        self._admitted = True
        self._sessions.add(self)
        self._task = self.loop.create_task(self._run())

    def data_received(self, data: bytes) -> None:
        if self._tls_early is not None:
            self._tls_early.append(data)
            return
        if not self.fresh:
            self._input_head = data[:64]
            # The protocol may parse in feed(): note it before.
            self._note_input()
        self.feed(data)
        self.fresh = True
        self._unread += len(data)
        if self._unread > self.read_high_water and not self._reading_paused and self.transport:
            self.transport.pause_reading()
            self._reading_paused = True
        self._wake()

    def eof_received(self) -> bool | None:
        self.lost = True
        self._wake()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._ended()
        if self._admitted:
            self._admitted = False
            if self._gate is not None:
                self._gate.release(self.ip)
            self._sessions.discard(self)

    async def _run(self) -> None:
        try:
            await self.serve()
        except Exception:
            log.exception("%s session with [%s] failed", self.protocol_name, self.ip)
            await self.failed()
        finally:
            if self.transport is not None:
                self.transport.close()
            await self.finished()


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
