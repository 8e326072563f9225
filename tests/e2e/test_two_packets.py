"""Inputs that once blocked a whole event loop, against the real server.

Each case sends one hostile input on one listener (plain or TLS), then
checks that the server ends that session and that a normal client on every
protocol is still answered at once. The server runs on one event loop in
this process, so a loop that spins or a regular expression that backtracks
fails these tests by leaving every later client unanswered.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator

import pytest

from tests.e2e.harness import ServerHandle, client_tls_context, running_server

# A normal client must be served this soon after the hostile input.
ANSWER_WITHIN = 5.0

GREETINGS = {
    "smtp": b"220 ",
    "submissions": b"220 ",
    "imap": b"* OK",
    "imaps": b"* OK",
    "pop3": b"+OK",
    "pop3s": b"+OK",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    with running_server(tmp_path_factory.mktemp("two-packets")) as handle:
        yield handle


def _connect(server: ServerHandle, listener: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.ports[listener]), timeout=ANSWER_WITHIN)
    if listener.endswith("s"):
        return client_tls_context().wrap_socket(sock)
    return sock


def _read_until(sock: socket.socket, marker: bytes) -> bytes:
    data = b""
    while marker not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def _every_protocol_answers(server: ServerHandle) -> None:
    started = time.monotonic()
    for listener, greeting in GREETINGS.items():
        with _connect(server, listener) as sock:
            assert _read_until(sock, b"\r\n").startswith(greeting), listener
    assert time.monotonic() - started < ANSWER_WITHIN


def _closed_by_server(sock: socket.socket) -> bool:
    """Read until the server closes; False if it keeps the connection open."""
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return False
    except (ConnectionError, ssl.SSLError):
        pass
    return True


# Issue 24, input 2: a line cut off by the end of input, on every protocol.
@pytest.mark.parametrize(
    ("listener", "cut_line"),
    [
        ("pop3", b"CAPA"),
        ("pop3", b"CAPA\r"),
        ("pop3s", b"CAPA"),
        ("pop3", b"USER alice@example.test\r\nPASS alice"),
        ("smtp", b"EHLO client.test"),
        ("smtp", b"EHLO client.test\r"),
        ("submissions", b"EHLO client.test"),
        ("imap", b"a1 CAPABILITY"),
        ("imap", b"a1 LOGIN {5}\r\nali"),
        ("imaps", b"a1 NOOP\r"),
    ],
)
def test_end_of_input_after_an_unfinished_line_ends_the_session(
    server: ServerHandle, listener: str, cut_line: bytes
) -> None:
    with _connect(server, listener) as sock:
        _read_until(sock, b"\r\n")
        sock.sendall(cut_line)
        # Over TLS a TCP FIN without close_notify: the TLS layer sees the end too.
        sock.shutdown(socket.SHUT_WR)
        assert _closed_by_server(sock)
    _every_protocol_answers(server)


# Issue 24, input 1: unterminated tokens whose regular expressions backtracked
# exponentially (26 characters took 2.6 s, each one more doubled it).
@pytest.mark.parametrize(
    "line",
    [
        b'a1 LOGIN "' + b"a" * 40,
        b'a1 LOGIN "' + b"a" * 60_000,
        b'a1 ID ("x' + b"a" * 40,
        b"a1 X BODY[" + b"a" * 40,
        b'a1 FETCH 1 BODY[HEADER.FIELDS ("' + b"a" * 40,
    ],
)
@pytest.mark.parametrize("listener", ["imap", "imaps"])
def test_an_unterminated_imap_token_is_refused_at_once(
    server: ServerHandle, listener: str, line: bytes
) -> None:
    with _connect(server, listener) as sock:
        _read_until(sock, b"\r\n")
        sock.sendall(line + b"\r\n")
        reply = _read_until(sock, b"\r\n")
        assert reply.startswith((b"a1 BAD", b"* BAD", b"* BYE")), reply
        sock.sendall(b"a2 NOOP\r\n")
        assert b"a2 OK" in _read_until(sock, b"a2 ")
    _every_protocol_answers(server)
