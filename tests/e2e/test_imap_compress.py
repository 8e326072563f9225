"""COMPRESS=DEFLATE (RFC 4978) against the running server: imaplib, mutt, hostile input.

imaplib has no COMPRESS: :class:`DeflateIMAP` adds it the way a client
does, raw DEFLATE (wbits -15) both ways with a sync flush after each write,
and counts the octets that really crossed the wire. mutt (2.x, with
``imap_deflate``) is the real client; isync/mbsync does not offer COMPRESS.
"""

from __future__ import annotations

import imaplib
import re
import resource
import socket
import ssl
import zlib
from pathlib import Path

import pytest

from tests.e2e.harness import ServerHandle, client_tls_context
from tests.e2e.test_imap_mutt import Mutt, _deliver, _files

ALICE = ("alice@example.test", "alice-pw")
TIMEOUT = 10

# imaplib checks a command's state against its table; COMPRESS is not in it.
imaplib.Commands.setdefault("COMPRESS", ("NONAUTH", "AUTH", "SELECTED"))


class DeflateIMAP(imaplib.IMAP4_SSL):
    """imaplib over implicit TLS, with ``compress()`` (RFC 4978) and wire counters."""

    def __init__(self, port: int) -> None:
        self._deflate: zlib._Compress | None = None
        self._inflate: zlib._Decompress | None = None
        self._inflated = b""
        self.wire_in = self.wire_out = 0
        super().__init__("127.0.0.1", port, ssl_context=client_tls_context(), timeout=TIMEOUT)

    def compress(self) -> tuple[str, list[bytes]]:
        typ, data = self._simple_command("COMPRESS", "DEFLATE")
        if typ == "OK":
            self._deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
            self._inflate = zlib.decompressobj(-15)
        return typ, data

    def send_raw(self, data: bytes) -> None:
        """Bytes onto the wire as they are (after COMPRESS: already compressed)."""
        self.wire_out += len(data)
        self.sock.sendall(data)

    def send(self, data: bytes) -> None:
        if self._deflate is not None:
            data = self._deflate.compress(data) + self._deflate.flush(zlib.Z_SYNC_FLUSH)
        self.send_raw(data)

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise imaplib.IMAP4.abort("socket closed")
        self.wire_in += len(chunk)
        assert self._inflate is not None
        self._inflated += self._inflate.decompress(chunk)

    def read(self, size: int) -> bytes:
        if self._inflate is None:
            data = super().read(size)
            self.wire_in += len(data)
            return data
        while len(self._inflated) < size:
            self._fill()
        data, self._inflated = self._inflated[:size], self._inflated[size:]
        return data

    def readline(self) -> bytes:
        if self._inflate is None:
            line = super().readline()
            self.wire_in += len(line)
            return line
        while b"\n" not in self._inflated:
            self._fill()
        line, _, self._inflated = self._inflated.partition(b"\n")
        return line + b"\n"


def _client(server: ServerHandle) -> DeflateIMAP:
    client = DeflateIMAP(server.ports["imaps"])
    client.login(*ALICE)
    return client


def test_imaplib_compresses_both_ways(server: ServerHandle) -> None:
    body = "The same line of text again and again.\r\n" * 2000  # 82 kB, very compressible
    client = _client(server)
    try:
        assert client.compress() == ("OK", [b"DEFLATE active"])
        message = f"From: bob@example.test\r\nSubject: big\r\n\r\n{body}".encode()
        sent_before = client.wire_out
        assert client.append("INBOX", None, None, message)[0] == "OK"
        assert client.wire_out - sent_before < len(message) // 10
        assert client.select("INBOX")[0] == "OK"
        received_before = client.wire_in
        typ, data = client.fetch("1", "(BODY.PEEK[])")
        assert typ == "OK"
        assert data[0][1] == message
        assert client.wire_in - received_before < len(message) // 10
        # RFC 4978 §3: once is enough.
        again = client._simple_command("COMPRESS", "DEFLATE")
        assert again == ("NO", [b"[COMPRESSIONACTIVE] DEFLATE is active already"])
        assert client.noop()[0] == "OK"
    finally:
        client.logout()


def test_compress_is_refused_before_login(server: ServerHandle) -> None:
    client = DeflateIMAP(server.ports["imaps"])
    try:
        with pytest.raises(imaplib.IMAP4.error, match="Log in first"):
            client.compress()
    finally:
        client.logout()


def _hostile(server: ServerHandle) -> tuple[ssl.SSLSocket, zlib._Compress]:
    """A raw TLS connection, logged in, compression on: what the client sends is ours."""
    raw = socket.create_connection(("127.0.0.1", server.ports["imaps"]), timeout=TIMEOUT)
    tls = client_tls_context().wrap_socket(raw)
    tls.recv(4096)  # greeting
    tls.sendall(b"a LOGIN alice@example.test alice-pw\r\nb COMPRESS DEFLATE\r\n")
    said = b""
    while b"b OK DEFLATE active\r\n" not in said:
        chunk = tls.recv(4096)
        assert chunk, said
        said += chunk
    return tls, zlib.compressobj(9, zlib.DEFLATED, -15)


def _inflated_answer(tls: ssl.SSLSocket) -> bytes:
    """Everything the server says until it closes, inflated."""
    inflate = zlib.decompressobj(-15)
    said = b""
    while True:
        try:
            chunk = tls.recv(65536)
        except (ConnectionResetError, ssl.SSLError):
            break
        if not chunk:
            break
        said += inflate.decompress(chunk)
    return said


def test_a_decompression_bomb_is_inflated_a_bounded_chunk_at_a_time(
    server: ServerHandle,
) -> None:
    # One 64 MiB line from ~64 KiB on the wire: the line limit applies to the
    # inflated bytes, which are skipped chunk by chunk, never held whole.
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB, this process
    tls, deflate = _hostile(server)
    with tls:
        megabyte = b"A" * (1 << 20)
        bomb = deflate.compress(b"c NOOP ")
        for _ in range(64):
            bomb += deflate.compress(megabyte)
        bomb += deflate.compress(b"\r\nd LOGOUT\r\n") + deflate.flush(zlib.Z_SYNC_FLUSH)
        assert len(bomb) < 100_000
        tls.sendall(bomb)
        said = _inflated_answer(tls)
    expected = b"c BAD Line too long\r\n* BYE Logging out\r\nd OK LOGOUT completed\r\n"
    assert said == expected, said[-300:]
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown < 32 * 1024, f"the server grew by {grown} KiB"


def test_corrupt_compressed_input_ends_the_session(server: ServerHandle) -> None:
    tls, _ = _hostile(server)
    with tls:
        tls.sendall(b"\xff\xff\xff\xff not deflate at all\r\n")
        said = _inflated_answer(tls)
    assert said == b"* BYE Compressed input is corrupt\r\n"


def test_pipelined_compressed_commands_after_compress(server: ServerHandle) -> None:
    tls, deflate = _hostile(server)
    with tls:
        data = deflate.compress(b"c NOOP\r\nd LOGOUT\r\n") + deflate.flush(zlib.Z_SYNC_FLUSH)
        for octet in data:  # one octet per write: the inflater waits for whole blocks
            tls.sendall(bytes([octet]))
        said = _inflated_answer(tls)
    assert said.endswith(b"c OK NOOP completed\r\n* BYE Logging out\r\nd OK LOGOUT completed\r\n")


def test_mutt_with_imap_deflate(server: ServerHandle, tmp_path: Path) -> None:
    _deliver(server, "compressed hello", body="deflated " * 200)
    mutt = Mutt(server, tmp_path / "mutt")
    mutt.muttrc.write_text(mutt.muttrc.read_text() + "set imap_deflate=yes\n")
    mutt.run("<search>~s hello<enter><display-message><exit><sync-mailbox><quit>")
    transcript = mutt.transcript()
    assert "COMPRESS DEFLATE" in transcript, transcript
    assert "OK DEFLATE active" in transcript, transcript
    # What mutt read and did after COMPRESS went through the compressed streams
    # (the debug log shows them inflated; a literal's octets it leaves out).
    assert re.search(r"< \* 1 FETCH \(UID 1 BODY\[\] \{\d+\}", transcript), transcript
    assert "OK LOGOUT completed" in transcript, transcript
    assert _files(server.maildir(ALICE[0])) == {"compressed hello": "S"}


def test_idle_news_arrives_compressed(server: ServerHandle) -> None:
    # The IDLE poll writes through the compressor too (RFC 2177 under RFC 4978).
    tls, deflate = _hostile(server)
    inflate = zlib.decompressobj(-15)

    def send(line: bytes) -> None:
        tls.sendall(deflate.compress(line) + deflate.flush(zlib.Z_SYNC_FLUSH))

    def until(marker: bytes) -> bytes:
        said = b""
        while marker not in said:
            chunk = tls.recv(65536)
            assert chunk, said
            said += inflate.decompress(chunk)
        return said

    with tls:
        send(b"c SELECT INBOX\r\n")
        assert b"* 0 EXISTS" in until(b"c OK [READ-WRITE]")
        send(b"d IDLE\r\n")
        until(b"+ idling\r\n")
        _deliver(server, "while idling")
        assert b"* 1 EXISTS\r\n" in until(b"EXISTS\r\n")
        send(b"DONE\r\n")
        assert until(b"d OK IDLE terminated\r\n").endswith(b"d OK IDLE terminated\r\n")
