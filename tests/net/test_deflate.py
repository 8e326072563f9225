"""The DEFLATE streams of IMAP COMPRESS (RFC 4978): sync-flushed out, bounded in."""

from __future__ import annotations

import zlib

import pytest

from mailstead.net.deflate import CorruptStream, DeflateStreams


def _client_deflate(data: bytes) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)


def test_each_burst_is_whole_for_the_client() -> None:
    # RFC 4978 §4: a sync flush after each write; the client needs no more bytes.
    streams = DeflateStreams()
    inflate = zlib.decompressobj(-15)
    for burst in (b"* OK one\r\n", b"a OK two\r\n" * 50):
        assert inflate.decompress(streams.compress(burst)) == burst


def test_input_is_inflated_a_chunk_at_a_time() -> None:
    streams = DeflateStreams(chunk=1000)
    streams.add_input(_client_deflate(b"x" * 2500))
    assert [len(streams.inflate()) for _ in range(3)] == [1000, 1000, 500]
    assert not streams.pending
    assert streams.inflate() == b""


def test_a_bomb_never_comes_out_at_once() -> None:
    streams = DeflateStreams(chunk=64 * 1024)
    bomb = _client_deflate(bytes(50 * 1024 * 1024))
    assert len(bomb) < 60_000
    streams.add_input(bomb)
    total = steps = 0
    while streams.pending:
        out = streams.inflate()
        assert len(out) <= 64 * 1024
        total += len(out)
        steps += 1
    assert (total, steps) == (50 * 1024 * 1024, 800)


def test_a_block_split_across_reads_waits_for_its_end() -> None:
    streams = DeflateStreams()
    data = _client_deflate(b"a NOOP\r\n")
    streams.add_input(data[:3])
    first = streams.inflate()
    streams.add_input(data[3:])
    assert first + streams.inflate() == b"a NOOP\r\n"


@pytest.mark.parametrize(
    "garbage",
    [
        b"\xff\xff\xff\xff",  # no valid block type
        zlib.compress(b"a NOOP\r\n"),  # a zlib header: not raw DEFLATE
    ],
)
def test_corrupt_input(garbage: bytes) -> None:
    streams = DeflateStreams()
    streams.add_input(garbage)
    with pytest.raises(CorruptStream):
        streams.inflate()


def test_nothing_may_follow_the_end_of_the_stream() -> None:
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    streams = DeflateStreams()
    streams.add_input(c.compress(b"a LOGOUT\r\n") + c.flush(zlib.Z_FINISH) + b"more")
    with pytest.raises(CorruptStream):
        while streams.pending:
            streams.inflate()
