"""The metrics listener over real sockets: one scrape per connection, hostile clients cut off."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from mailstead.net.listener import bind
from mailstead.net.metrics_http import MetricsService

TEXT = b"# TYPE up gauge\nup 1\n"


@contextmanager
def serving(
    render: Callable[[], bytes] = lambda: TEXT, *, timeout: float = 10.0, max_connections: int = 16
) -> Iterator[tuple[int, MetricsService]]:
    """A MetricsService on 127.0.0.1 in a loop of its own thread; its port."""
    loop = asyncio.new_event_loop()
    sock = bind(("127.0.0.1", 0))
    service = MetricsService(
        render,
        "text/plain; version=0.0.4; charset=utf-8",
        timeout=timeout,
        max_connections=max_connections,
    )
    server = loop.run_until_complete(loop.create_server(service.protocol_factory, sock=sock))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[1], service
    finally:
        loop.call_soon_threadsafe(server.close)
        loop.call_soon_threadsafe(service.close)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def exchange(port: int, data: bytes, *, shut: bool = False) -> bytes:
    """Send ``data``, read until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(data)
        if shut:
            conn.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    return answer


def test_get_metrics_is_answered_and_closed() -> None:
    with serving() as (port, _):
        answer = exchange(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer == (
        b"HTTP/1.1 200 OK\r\n"
        b"Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
        b"Content-Length: 21\r\n"
        b"Connection: close\r\n"
        b"\r\n" + TEXT
    )


def test_a_request_in_one_byte_pieces_is_answered() -> None:
    with serving() as (port, _), socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        for byte in b"GET /metrics HTTP/1.0\r\n\r\n":
            conn.send(bytes([byte]))
        assert conn.recv(65536).startswith(b"HTTP/1.1 200 OK\r\n")


def test_a_client_that_half_closes_after_its_request_gets_the_answer() -> None:
    with serving() as (port, _):
        assert exchange(port, b"GET /metrics HTTP/1.1\r\n\r\n", shut=True).endswith(TEXT)


def test_other_paths_and_methods() -> None:
    with serving() as (port, _):
        assert exchange(port, b"GET / HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 404 Not Found\r\n")
        assert exchange(port, b"POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc").startswith(
            b"HTTP/1.1 405 Method Not Allowed\r\n"
        )


def test_hostile_heads() -> None:
    with serving() as (port, _):
        assert exchange(port, b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n").startswith(
            b"HTTP/1.1 400 "
        )
        assert exchange(port, b"GET /" + b"a" * 5000).startswith(b"HTTP/1.1 414 ")
        endless = b"GET /metrics HTTP/1.1\r\n" + b"X-Junk: " + b"a" * 20000
        assert exchange(port, endless).startswith(b"HTTP/1.1 431 ")


def test_only_one_request_per_connection() -> None:
    two = b"GET /metrics HTTP/1.1\r\n\r\nGET /metrics HTTP/1.1\r\n\r\n"
    with serving() as (port, _):
        assert exchange(port, two).count(b"HTTP/1.1 200 OK") == 1


def test_a_slow_client_is_told_408_at_the_deadline() -> None:
    with serving(timeout=0.3) as (port, _):
        started = time.monotonic()
        answer = exchange(port, b"GET /metrics HTTP/1.1\r\nHost:")
        assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
        assert time.monotonic() - started < 3


def test_an_incomplete_head_then_eof_is_closed_unanswered() -> None:
    with serving() as (port, _):
        assert exchange(port, b"GET /metrics HTTP/1.1\r\n", shut=True) == b""


def test_connections_beyond_the_cap_are_closed_at_once() -> None:
    with serving(max_connections=2) as (port, service):
        held = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(2)]
        try:
            deadline = time.monotonic() + 5
            while len(service.connections) < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            with socket.create_connection(("127.0.0.1", port), timeout=5) as extra:
                extra.sendall(b"GET /metrics HTTP/1.1\r\n\r\n")
                with contextlib.suppress(ConnectionResetError):  # a reset is a close too
                    assert extra.recv(100) == b""
        finally:
            for conn in held:
                conn.close()


def test_a_failing_render_is_a_500() -> None:
    def broken() -> bytes:
        raise OSError("disk on fire")

    with serving(broken) as (port, _):
        assert exchange(port, b"GET /metrics HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 500 ")
