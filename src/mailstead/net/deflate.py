"""The two DEFLATE streams of a compressed IMAP connection (RFC 4978 COMPRESS=DEFLATE).

RFC 4978 §3: raw DEFLATE (RFC 1951: no zlib or gzip header, so
``wbits=-15``) in each direction, for the rest of the connection. Each burst
of responses ends with a sync flush (§4: ``Z_SYNC_FLUSH``), so the client can
inflate everything it was sent without waiting for more.

The client's stream is hostile input: a few hundred kilobytes may inflate to
gigabytes. :meth:`DeflateStreams.inflate` therefore gives out at most
``chunk`` octets at a time and keeps the rest compressed
(``decompressobj.decompress(data, max_length)`` and its
``unconsumed_tail``); the session hands each chunk to the protocol, whose
line and literal limits apply to the inflated bytes as to any others, and
inflates the next only when the protocol has dealt with the last. What
waits compressed is bounded by the read high-water mark of net/stream.py.
"""

from __future__ import annotations

import zlib

__all__ = ["CHUNK", "CorruptStream", "DeflateStreams"]

# Inflated octets handed to the protocol per step.
CHUNK = 64 * 1024
# Compressed octets given to zlib per call.
_PIECE = 4096
# RFC 4978 §4 suggests a compression level that costs little CPU.
_LEVEL = 6


class CorruptStream(Exception):
    """The client's compressed stream cannot be inflated (or went on past its end)."""


class DeflateStreams:
    """Owns one connection's compressor (to the client) and decompressor (from it)."""

    def __init__(self, chunk: int = CHUNK) -> None:
        self._chunk = chunk
        self._out = zlib.compressobj(_LEVEL, zlib.DEFLATED, -15)
        self._in = zlib.decompressobj(-15)
        self._waiting = bytearray()  # compressed input not yet given to zlib
        self._tail = b""  # given to zlib, held back by max_length

    def compress(self, data: bytes) -> bytes:
        """``data`` compressed and sync-flushed: the client can inflate all of it now."""
        return self._out.compress(data) + self._out.flush(zlib.Z_SYNC_FLUSH)

    def add_input(self, data: bytes) -> None:
        """Compressed bytes from the client."""
        self._waiting += data

    @property
    def pending(self) -> bool:
        """Compressed input is waiting to be inflated."""
        return bool(self._tail or self._waiting)

    def inflate(self) -> bytes:
        """At most ``chunk`` inflated octets of the waiting input (b"" when none, or
        when the input so far ends inside a block); raises :class:`CorruptStream`."""
        out: list[bytes] = []
        room = self._chunk
        while room > 0:
            if not self._tail:
                if not self._waiting:
                    break
                # zlib copies what it holds back on every call: feed it small
                # pieces, so a bomb costs its inflated size, not that squared.
                self._tail = bytes(self._waiting[:_PIECE])
                del self._waiting[:_PIECE]
            if self._in.eof:
                raise CorruptStream("data after the end of the compressed stream")
            try:
                data = self._in.decompress(self._tail, room)
            except zlib.error as exc:
                raise CorruptStream(str(exc)) from None
            self._tail = self._in.unconsumed_tail
            if self._in.eof and (self._in.unused_data or self._waiting):
                raise CorruptStream("data after the end of the compressed stream")
            out.append(data)
            room -= len(data)
        return b"".join(out)
