"""Issue 16, items 4-8 end to end: real clients against the running server.

IMAPClient lists and selects names in modified UTF-7 and searches address
fields; the literal8 APPEND and the BINARY answers are checked on the wire
itself (no Python client sends ``~{n}``), over the same TLS socket a client
would open.
"""

from __future__ import annotations

import contextlib
import imaplib
import socket
import ssl
from collections.abc import Iterator

import pytest
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError

from tests.e2e.harness import ServerHandle, client_tls_context

ALICE = ("alice@example.test", "alice-pw")
TIMEOUT = 10
ODD = "!#$&'+,-.0123456789:;<=>?@^_`|[}"


@pytest.fixture
def alice(server: ServerHandle) -> Iterator[IMAPClient]:
    client = IMAPClient(
        "127.0.0.1",
        server.ports["imaps"],
        ssl=True,
        ssl_context=client_tls_context(),
        timeout=TIMEOUT,
    )
    client.login(*ALICE)
    yield client
    with contextlib.suppress(OSError, imaplib.IMAP4.error):
        client.logout()


def test_utf7_names_round_trip_and_odd_names_answer(alice: IMAPClient) -> None:
    # RFC 3501 §5.1.3: IMAPClient sends "pää" as p&AOQA5A- and decodes the LIST.
    alice.create_folder("pää/Entwürfe")
    names = {name for _flags, _sep, name in alice.list_folders()}
    assert {"pää", "pää/Entwürfe"} <= names
    assert [n for _f, _s, n in alice.list_folders(pattern="p%")] == ["pää"]
    assert alice.select_folder("pää/Entwürfe")[b"EXISTS"] == 0
    # RFC 9051 §9: every ASTRING-CHAR parses; the name does not exist.
    with pytest.raises(IMAPClientError, match="NONEXISTENT"):
        alice.select_folder(ODD)
    assert alice.list_folders(pattern=ODD + "%*") == []
    assert alice.noop()[0].startswith(b"NOOP completed")


def test_search_from_finds_the_address_behind_comments(alice: IMAPClient) -> None:
    # RFC 9051 §6.4.4: FROM matches the address as it reads, comments aside.
    alice.append(
        "INBOX", b"From: <sender (the boss)@ (home) example.test>\r\nSubject: a\r\n\r\nx\r\n"
    )
    alice.append("INBOX", b"From: sender@example.test (Sam Sender)\r\nSubject: b\r\n\r\ny\r\n")
    alice.append(
        "INBOX", b"From: =?UTF-8?Q?J=C3=B6rg?= <j@example.test>\r\nSubject: c\r\n\r\nz\r\n"
    )
    alice.select_folder("INBOX")
    assert len(alice.search(["FROM", "sender@example.test"])) == 2
    assert len(alice.search(["FROM", "Sam Sender"])) == 1
    assert len(alice.search(["FROM", "jörg"], charset="UTF-8")) == 1


class Wire:
    """A bare TLS connection that speaks IMAP line by line, literal8 and all."""

    def __init__(self, port: int) -> None:
        raw = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.sock = client_tls_context().wrap_socket(raw, server_hostname="127.0.0.1")
        self.buf = b""
        assert self.line().startswith(b"* OK ")

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            assert chunk, "server closed the connection"
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line + b"\r\n"

    def until(self, tag: bytes) -> bytes:
        """Everything up to and including the tagged reply."""
        out = b""
        while True:
            out += self.line()
            if out.rsplit(b"\r\n", 2)[-2].startswith(tag + b" "):
                return out

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        with contextlib.suppress(OSError, ssl.SSLError):
            self.sock.close()


@pytest.fixture
def wire(server: ServerHandle) -> Iterator[Wire]:
    w = Wire(server.ports["imaps"])
    w.send(b"l LOGIN alice@example.test alice-pw\r\n")
    assert b"l OK " in w.until(b"l")
    yield w
    w.close()


def test_literal8_append_and_binary_fetch(wire: Wire) -> None:
    # RFC 3516 §4.3: APPEND with a literal8; BINARY gives the octets back,
    # NUL in a literal8, a partial answer with its origin (§4.2).
    msg = (
        b"From: a@example.test\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Transfer-Encoding: binary\r\n\r\n\x00\x01\x02\r\nend"
    )
    wire.send(b"a APPEND INBOX ~{%d}\r\n" % len(msg))
    assert wire.line().startswith(b"+ ")
    wire.send(msg + b"\r\n")
    assert b"a OK [APPENDUID " in wire.until(b"a")
    wire.send(b"s SELECT INBOX\r\n")
    assert b"s OK [READ-WRITE]" in wire.until(b"s")
    wire.send(b"f FETCH 1 (BINARY.SIZE[1] BINARY.PEEK[1] BINARY.PEEK[1]<1.2>)\r\n")
    said = wire.until(b"f")
    assert said.startswith(b"* 1 FETCH (BINARY.SIZE[1] 8 BINARY[1] ~{8}\r\n")
    assert b'\x00\x01\x02\r\nend BINARY[1]<1> "\x01\x02")\r\nf OK ' in said
