"""PROXY headers on real sockets: a POP3 listener on 127.0.0.1 behind a "balancer" at 127.0.0.2.

The listener's gate expects a header from 127.0.0.2/32 only ([listen]
proxy_protocol). The test's sockets play the balancer by binding
127.0.0.2 as their source, and an ordinary client by connecting from
127.0.0.1. What is checked is what the session does with the octets:
the address it serves (logged, counted at the gate), that exactly the
header is taken off the socket (the protocol's, or TLS's, first octets
often come in the same segment), and how a missing, bad or late header
ends the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import ssl
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mailstead.limits import POP3Limits, ProxyProtocolLimits
from mailstead.logs import LogfmtFormatter, parse_line
from mailstead.net.listener import ConnectionGate, bind
from mailstead.net.pop3_session import POP3Service
from mailstead.proto.pop3.server import POP3Settings
from mailstead.proto.proxy import V2_SIGNATURE
from mailstead.tlscert import ensure_self_signed, server_context
from tests.e2e.harness import client_tls_context
from tests.net.test_pop3_session import MESSAGES, FakeStore

BALANCER = "127.0.0.2"
CLIENT = "192.0.2.7"
GREETING = b"+OK pop.example.test Mailstead POP3 ready\r\n"
TIMEOUT = 0.5  # the header deadline of these tests


def v1(client: str = CLIENT, port: int = 50000) -> bytes:
    family = "TCP6" if ":" in client else "TCP4"
    front = "::1" if family == "TCP6" else "10.0.0.1"
    return f"PROXY {family} {client} {front} {port} 110\r\n".encode()


def v2(client: str = CLIENT, port: int = 50000, *, command: int = 1) -> bytes:
    source = ipaddress.ip_address(client)
    front = ipaddress.ip_address("10.0.0.1" if source.version == 4 else "::1")
    block = source.packed + front.packed + struct.pack("!HH", port, 110)
    family = 0x11 if source.version == 4 else 0x21
    return V2_SIGNATURE + struct.pack("!BBH", 0x20 | command, family, len(block)) + block


@dataclass
class Listener:
    """One test's POP3 listeners (plain and implicit TLS), with their gates and log lines."""

    service: POP3Service
    tls_service: POP3Service
    port: int
    tls_port: int
    lines: list[dict[str, str]]

    def connect(self, source: str = BALANCER, *, tls: bool = False) -> socket.socket:
        sock = socket.create_connection(
            ("127.0.0.1", self.tls_port if tls else self.port),
            timeout=5,
            source_address=(source, 0),
        )
        return sock

    def peers(self) -> set[str]:
        """The addresses the listener's open sessions serve."""
        return {s.ip for s in self.service.sessions | self.tls_service.sessions}

    def logged(self, msg: str) -> list[dict[str, str]]:
        return [line for line in self.lines if line.get("msg", "").startswith(msg)]


class _Lines(logging.Handler):
    """Each record formatted where it is logged (its session's context), as in the log file."""

    def __init__(self, out: list[dict[str, str]]) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(LogfmtFormatter())
        self.out = out

    def emit(self, record: logging.LogRecord) -> None:
        parsed = parse_line(self.format(record))
        if parsed is not None:
            self.out.append(parsed)


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[Listener]:
    yield from _serve(tmp_path)


def _serve(
    tmp_path: Path, *, per_ip: int = 50, header_timeout: float = TIMEOUT
) -> Iterator[Listener]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    ensure_self_signed(cert, key, "pop.example.test")
    context = server_context(cert, key)
    loop = asyncio.new_event_loop()
    store = FakeStore(MESSAGES)
    limits = POP3Limits(auth_failure_delay=0.01)
    proxy = ProxyProtocolLimits(header_timeout=header_timeout)

    def gate() -> ConnectionGate:
        networks = [ipaddress.ip_network(f"{BALANCER}/32")]
        return ConnectionGate(per_ip, 100, proxy_from=networks, proxy_limits=proxy)

    def settings(secure: bool) -> POP3Settings:
        return POP3Settings("pop.example.test", limits=limits, tls_available=True, secure=secure)

    plain = POP3Service(settings(False), store.authenticate, store.open, context, gate())
    implicit = POP3Service(settings(True), store.authenticate, store.open, context, gate())
    socks = bind(("127.0.0.1", 0)), bind(("127.0.0.1", 0))
    lines: list[dict[str, str]] = []
    handler = _Lines(lines)
    logger = logging.getLogger("mailstead")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    servers: list[asyncio.Server] = []

    async def start() -> None:
        for service, sock in zip((plain, implicit), socks, strict=True):
            servers.append(await loop.create_server(service.protocol_factory, sock=sock))

    loop.run_until_complete(start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield Listener(plain, implicit, socks[0].getsockname()[1], socks[1].getsockname()[1], lines)
    finally:

        async def stop() -> None:
            for server in servers:
                server.close()
            for service in (plain, implicit):
                for session in list(service.sessions):
                    session.shutdown()
                    await session.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def read_until(sock: socket.socket, end: bytes) -> bytes:
    got = b""
    while not got.endswith(end):
        chunk = sock.recv(4096)
        if not chunk:
            break
        got += chunk
    return got


def closed_without_a_word(sock: socket.socket) -> bool:
    """The server closed the connection having sent nothing."""
    try:
        return sock.recv(100) == b""
    except ConnectionResetError:
        return True


def wait_for(condition: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "not within 5 s"
        time.sleep(0.01)


# -- the client's address, from either version ----------------------------------------


@pytest.mark.parametrize("header", [v1(), v2()], ids=["v1", "v2"])
def test_the_session_serves_the_address_the_header_names(listener: Listener, header: bytes) -> None:
    with listener.connect() as sock:
        # B: PROXY …   (the balancer's header and the client's first command, one segment)
        sock.sendall(header + b"CAPA\r\n")
        # S: +OK … ready, then the CAPA listing: not one octet of the header reached POP3.
        said = read_until(sock, b"\r\n.\r\n")
        assert said.startswith(GREETING + b"+OK Capability list follows\r\n")
        assert listener.peers() == {CLIENT}
        sock.sendall(b"QUIT\r\n")
        assert read_until(sock, b"\r\n").startswith(b"+OK")
    (connect,) = listener.logged("connect")
    assert connect["ip"] == CLIENT and connect["proxy"] == BALANCER


def test_an_ipv6_client_behind_an_ipv4_balancer(listener: Listener) -> None:
    with listener.connect() as sock:
        sock.sendall(v2("2001:db8::7"))
        assert read_until(sock, b"\r\n") == GREETING
        assert listener.peers() == {"2001:db8::7"}


def test_the_header_arrives_in_pieces(listener: Listener) -> None:
    header = v1()
    with listener.connect() as sock:
        for piece in (header[:3], header[3:20], header[20:-1], header[-1:] + b"CAPA\r\n"):
            sock.sendall(piece)
            time.sleep(0.02)
        said = read_until(sock, b"\r\n.\r\n")
        assert said.startswith(GREETING + b"+OK Capability list follows\r\n")
        assert listener.peers() == {CLIENT}


def test_local_and_unknown_keep_the_balancer_s_own_address(listener: Listener) -> None:
    # v2 LOCAL: HAProxy's health checks (proxy-protocol.txt §2.2); v1 UNKNOWN (§2.1).
    for header in (v2(command=0), b"PROXY UNKNOWN\r\n"):
        with listener.connect() as sock:
            sock.sendall(header)
            assert read_until(sock, b"\r\n") == GREETING
            assert listener.peers() == {BALANCER}
            sock.sendall(b"QUIT\r\n")
            read_until(sock, b"\r\n")
        wait_for(lambda: not listener.peers())


# -- implicit TLS: the header comes in clear, before the ClientHello ----------------------


class _TLSClient:
    """A TLS client over memory BIOs, so its first flight can share a segment with the header."""

    def __init__(self, sock: socket.socket, first: bytes) -> None:
        self.sock = sock
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = client_tls_context().wrap_bio(self.incoming, self.outgoing)
        with contextlib.suppress(ssl.SSLWantReadError):
            self.tls.do_handshake()
        # B: PROXY … + ClientHello, in one send.
        sock.sendall(first + self.outgoing.read())
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._pump()
        self._flush()

    def _flush(self) -> None:
        pending = self.outgoing.read()
        if pending:
            self.sock.sendall(pending)

    def _pump(self) -> None:
        self._flush()
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("closed")
        self.incoming.write(data)

    def read_line(self) -> bytes:
        got = b""
        while not got.endswith(b"\r\n"):
            try:
                got += self.tls.read(4096)
            except ssl.SSLWantReadError:
                self._pump()
        return got


@pytest.mark.parametrize("header", [v1(), v2()], ids=["v1", "v2"])
def test_implicit_tls_reads_the_header_then_shakes_hands(listener: Listener, header: bytes) -> None:
    with listener.connect(tls=True) as sock:
        client = _TLSClient(sock, header)
        assert client.read_line() == GREETING
        assert client.tls.version() in ("TLSv1.2", "TLSv1.3")
        assert listener.peers() == {CLIENT}


# -- required from the listed network ---------------------------------------------------


@pytest.mark.parametrize(
    ("first", "why"),
    [
        (b"CAPA\r\n", "not a PROXY header"),
        (b"PROXY TCP4 192.0.2.7 10.0.0.1 1 2\n", "not ended by CRLF"),
        (b"PROXY TCP4 192.0.2.07 10.0.0.1 1 2\r\n", "not an IPv4 address"),
        (V2_SIGNATURE + b"\x21\x11\xff\xff", "65535 octets of addresses and TLVs"),
        (V2_SIGNATURE + b"\x21\x11\x00\x0d" + b"\x00" * 12 + b"\x01", "truncated TLV"),
    ],
)
def test_a_bad_header_closes_at_once_with_one_line(
    listener: Listener, first: bytes, why: str
) -> None:
    with listener.connect() as sock:
        began = time.monotonic()
        sock.sendall(first)
        assert closed_without_a_word(sock)
        assert time.monotonic() - began < TIMEOUT  # not left to the deadline
    wait_for(lambda: bool(listener.logged("PROXY header refused")))
    (line,) = listener.logged("PROXY header refused")
    assert why in line["msg"] and line["ip"] == BALANCER and line["protocol"] == "pop3"
    assert not listener.logged("connect")


def test_a_tls_client_straight_from_the_balancer_s_network_is_closed(listener: Listener) -> None:
    with listener.connect(tls=True) as sock, pytest.raises((ssl.SSLError, ConnectionError)):
        client_tls_context().wrap_socket(sock).recv(10)
    wait_for(lambda: bool(listener.logged("PROXY header refused")))


def test_a_balancer_that_closes_at_once_is_one_line(listener: Listener) -> None:
    listener.connect().close()
    wait_for(lambda: bool(listener.logged("PROXY header refused")))
    assert "closed before its PROXY header" in listener.logged("PROXY header refused")[0]["msg"]


@pytest.mark.parametrize(
    "sent", [b"", b"PROXY TCP4 192.0.2.7", V2_SIGNATURE + b"\x21\x11\x00\x0c\x01"]
)
def test_a_stalled_header_ends_at_the_deadline(listener: Listener, sent: bytes) -> None:
    with listener.connect() as sock:
        sock.sendall(sent)
        began = time.monotonic()
        assert closed_without_a_word(sock)
        assert TIMEOUT * 0.8 < time.monotonic() - began < TIMEOUT + 2
    wait_for(lambda: bool(listener.logged("PROXY header refused")))
    assert (
        "no complete PROXY header within 0.5 s" in listener.logged("PROXY header refused")[0]["msg"]
    )


def test_trickled_octets_do_not_move_the_deadline(listener: Listener) -> None:
    # Slowloris: a byte every 50 ms of a header that would be valid.
    with listener.connect() as sock:
        began = time.monotonic()
        for octet in v1()[:-2]:
            try:
                sock.sendall(bytes([octet]))
            except OSError:
                break
            time.sleep(0.05)
        assert closed_without_a_word(sock)
        assert time.monotonic() - began < TIMEOUT + 1
    assert "no complete PROXY header" in listener.logged("PROXY header refused")[0]["msg"]


# -- never trusted from elsewhere -------------------------------------------------------


def test_from_another_network_a_proxy_line_is_just_bad_input(listener: Listener) -> None:
    with listener.connect("127.0.0.1") as sock:
        assert read_until(sock, b"\r\n") == GREETING  # no header awaited
        # C: PROXY TCP4 192.0.2.7 …   (spoofing attempt)
        sock.sendall(v1())
        # S: -ERR …   (an unknown POP3 command, nothing more)
        assert read_until(sock, b"\r\n").startswith(b"-ERR")
        assert listener.peers() == {"127.0.0.1"}


# -- the gate counts clients, not the balancer ------------------------------------------


def test_the_connection_caps_count_the_client_not_the_balancer(tmp_path: Path) -> None:
    for listener in _serve(tmp_path, per_ip=1):
        with listener.connect() as first, listener.connect() as second:
            first.sendall(v2(CLIENT))
            assert read_until(first, b"\r\n") == GREETING
            second.sendall(v2(CLIENT, 50001))  # same client, another port
            assert read_until(second, b"\r\n") == (
                b"-ERR [SYS/TEMP] Too many connections from your address, try again later\r\n"
            )
            with listener.connect() as third:
                third.sendall(v2("192.0.2.8"))  # another client, same balancer
                assert read_until(third, b"\r\n") == GREETING
                assert listener.peers() == {CLIENT, "192.0.2.8"}


# -- shutdown -----------------------------------------------------------------------------


def test_shutdown_does_not_wait_for_a_header(tmp_path: Path) -> None:
    serving = _serve(tmp_path, header_timeout=30)
    listener = next(serving)
    with listener.connect() as sock:
        wait_for(lambda: bool(listener.service.sessions))
        began = time.monotonic()
        with pytest.raises(StopIteration):
            next(serving)  # stops the listener: shutdown reaches the waiting session
        assert time.monotonic() - began < 5
        assert closed_without_a_word(sock)


# -- which connections must start with a header -----------------------------------------


@pytest.mark.parametrize(
    ("peer", "expected"),
    [
        ("10.1.2.3", True),
        ("127.0.0.2", True),
        ("2001:db8:0:1::5", True),
        ("::ffff:10.1.2.3", True),  # an IPv4 balancer seen on a dual-stack socket
        ("127.0.0.1", False),
        ("11.0.0.1", False),
        ("2001:db9::5", False),
        ("unknown", False),
        ("fe80::1%lo", False),
    ],
)
def test_the_gate_expects_a_header_from_the_listed_networks_only(peer: str, expected: bool) -> None:
    networks = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "127.0.0.2/32", "2001:db8::/48")]
    assert ConnectionGate(1, 1, proxy_from=networks).expects_proxy_header(peer) is expected
    assert ConnectionGate(1, 1).expects_proxy_header(peer) is False  # [] = off
