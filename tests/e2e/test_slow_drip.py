"""Clients that hold connections without finishing anything, against the real server.

Deadlines are configured short ([limits]), so every case ends in seconds:
a trickled line, a login that never comes, a transaction that never ends,
one network's many addresses, and a listener filled with slow sockets,
where a new client is still greeted and a logged-in one is not disturbed.
"""

from __future__ import annotations

import contextlib
import imaplib
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailstead.config import load_config
from tests.e2e.harness import (
    USERS,
    ServerHandle,
    client_tls_context,
    running_config,
    write_config,
)

ALICE = "alice@example.test"
GREETING = {"smtp": b"220 ", "submission": b"220 ", "imap": b"* OK", "pop3": b"+OK"}


@contextlib.contextmanager
def serving(tmp_path: Path, limits: str) -> Iterator[ServerHandle]:
    config = load_config(write_config(tmp_path, extra=f"[limits]\n{limits}"))
    with running_config(config) as handle:
        yield handle


def connect(
    server: ServerHandle, listener: str, source: str = "127.0.0.1", timeout: float = 10.0
) -> socket.socket:
    sock = socket.create_connection(
        ("127.0.0.1", server.ports[listener]), timeout=timeout, source_address=(source, 0)
    )
    return sock


def read_line(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            break
        data += chunk
    return data.rstrip(b"\r\n")


def last_words(sock: socket.socket) -> tuple[bytes, float]:
    """Read until the server closes; its last line, and when the close came."""
    lines = b""
    with contextlib.suppress(ConnectionError):
        while chunk := sock.recv(4096):
            lines += chunk
    return lines.rstrip(b"\r\n").rsplit(b"\r\n", 1)[-1], time.monotonic()


def drip(sock: socket.socket, data: bytes, every: float) -> None:
    """Send ``data`` one byte at a time until the server closes the connection."""
    with contextlib.suppress(OSError):
        for byte in data:
            sock.sendall(bytes([byte]))
            time.sleep(every)


# --------------------------------------------------------------------------- deadlines


@pytest.mark.parametrize(
    ("listener", "last"),
    [
        ("smtp", b"421 4.4.2 Command line not completed in time, closing connection"),
        ("imap", b"* BYE Command line not completed in time"),
        ("pop3", b"-ERR [SYS/TEMP] Command line not completed in time"),
    ],
)
def test_a_trickled_line_cannot_outlast_the_line_deadline(
    tmp_path: Path, listener: str, last: bytes
) -> None:
    with serving(tmp_path, 'line_timeout = "2s"\nlogin_timeout = "1m"\n') as server:
        sock = connect(server, listener)
        assert read_line(sock).startswith(GREETING[listener])
        started = time.monotonic()
        # One byte every 0.3 s: each restarts the idle timer, none ends a line.
        drip(sock, b"a1 NOOP and on and on and on and on", every=0.3)
        words, closed = last_words(sock)
        assert words == last
        assert 2.0 <= closed - started < 4.0


@pytest.mark.parametrize(
    ("listener", "command", "last"),
    [
        ("imap", b"a1 NOOP\r\n", b"* BYE Login not completed in time"),
        ("pop3", b"CAPA\r\n", b"-ERR [SYS/TEMP] Login not completed in time"),
        (
            "submission",
            b"NOOP\r\n",
            b"421 4.7.0 Authentication not completed in time, closing connection",
        ),
    ],
)
def test_busy_without_logging_in_ends_at_the_login_deadline(
    tmp_path: Path, listener: str, command: bytes, last: bytes
) -> None:
    with serving(tmp_path, 'login_timeout = "2s"\n') as server:
        sock = connect(server, listener)
        started = time.monotonic()
        with contextlib.suppress(OSError):
            for _ in range(20):  # whole commands, answered: never idle
                sock.sendall(command)
                time.sleep(0.25)
        words, closed = last_words(sock)
        assert words == last
        assert 2.0 <= closed - started < 4.0


def test_an_smtp_transaction_ends_at_its_deadline(tmp_path: Path) -> None:
    with serving(tmp_path, 'transaction_timeout = "2s"\n') as server:
        sock = connect(server, "smtp")
        read_line(sock)
        sock.sendall(b"EHLO client.test\r\nMAIL FROM:<c@remote.test>\r\nRCPT TO:<" + ALICE.encode())
        sock.sendall(b">\r\nDATA\r\n")
        started = time.monotonic()
        with contextlib.suppress(OSError):
            for n in range(20):  # whole lines of message data, never idle
                sock.sendall(b"line %d\r\n" % n)
                time.sleep(0.25)
        words, closed = last_words(sock)
        assert words == b"421 4.4.2 Transaction not completed in time, closing connection"
        assert 1.5 <= closed - started < 4.0
        assert server.new_messages(ALICE) == []


# --------------------------------------------------------------------------- networks


def test_addresses_of_one_network_count_together(tmp_path: Path) -> None:
    limits = "connections_per_ip = 2\nconnections_per_network = 3\n"
    with serving(tmp_path, limits) as server:
        held = [
            connect(server, "smtp", source) for source in ("127.0.0.2", "127.0.0.2", "127.0.0.3")
        ]
        for sock in held:
            assert read_line(sock).startswith(b"220 ")
        # S: 421 from a fourth address of 127.0.0.0/24, then the server hangs up.
        refused = connect(server, "smtp", "127.0.0.4")
        assert read_line(refused) == (
            b"421 4.7.0 Too many connections from your network, try again later"
        )
        assert read_line(refused) == b""
        # Another network is served.
        other = connect(server, "smtp", "127.0.1.1")
        assert read_line(other).startswith(b"220 ")
        for sock in [*held, refused, other]:
            sock.close()


# --------------------------------------------------------------------------- stress


def test_a_full_listener_makes_room_and_keeps_logged_in_sessions(tmp_path: Path) -> None:
    limits = "connections_per_ip = 8\nconnections_per_network = 8\nconnections_total = 8\n"
    with serving(tmp_path, limits) as server:
        # A logged-in IMAP client in IDLE, the first connection of all.
        context = client_tls_context()
        imap = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=10)
        imap.starttls(context)
        imap.login(ALICE, USERS[ALICE])
        imap.select("INBOX")
        tag = imap._new_tag().decode()
        imap.send(f"{tag} IDLE\r\n".encode())
        assert imap.readline().startswith(b"+ ")
        # Slow sockets take every other slot.
        slow = [connect(server, "imap", "127.0.0.2") for _ in range(7)]
        for sock in slow:
            assert read_line(sock).startswith(b"* OK")
        # A new client from elsewhere is greeted: the oldest slow one made room.
        started = time.monotonic()
        newcomer = connect(server, "imap", "127.0.1.1")
        assert read_line(newcomer).startswith(b"* OK")
        assert time.monotonic() - started < 1.0
        assert read_line(slow[0]) == b"* BYE Server busy, closing to make room for another client"
        # The IDLE session was not touched and still hears about new mail.
        imap.send(b"DONE\r\n")
        assert imap.readline().startswith(f"{tag} OK".encode())
        assert imap.noop()[0] == "OK"
        imap.logout()
        for sock in [*slow, newcomer]:
            sock.close()


def test_under_stress_sessions_not_logged_in_get_short_deadlines(tmp_path: Path) -> None:
    limits = (
        "connections_total = 10\nconnections_per_ip = 10\nconnections_per_network = 10\n"
        'stress_threshold = 50\nstress_timeout = "1s"\n'
    )
    with serving(tmp_path, limits) as server:
        calm = connect(server, "imap")
        read_line(calm)
        time.sleep(1.5)  # under the threshold, the 60 s login deadline applies
        calm.sendall(b"a1 NOOP\r\n")
        assert read_line(calm) == b"a1 OK NOOP completed"
        calm.close()
        # Five logged-in sessions keep the listener at the threshold.
        logged_in = []
        for _ in range(5):
            imap = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=10)
            imap.starttls(client_tls_context())
            imap.login(ALICE, USERS[ALICE])
            logged_in.append(imap)
        for _ in range(3):  # each newcomer that does not log in is closed in about 1 s
            sock = connect(server, "imap", "127.0.0.2")
            started = time.monotonic()
            read_line(sock)
            words, closed = last_words(sock)
            assert words == b"* BYE Login not completed in time"
            assert closed - started < 2.5
        for imap in logged_in:  # never touched
            assert imap.noop()[0] == "OK"
            imap.logout()


def test_under_stress_an_idle_smtp_client_gets_the_short_idle_timeout(tmp_path: Path) -> None:
    # One connection of four is already a quarter: stressed from the start.
    limits = (
        "connections_total = 4\nconnections_per_ip = 4\nconnections_per_network = 4\n"
        'stress_threshold = 25\nstress_timeout = "1s"\n'
    )
    with serving(tmp_path, limits) as server:
        sock = connect(server, "smtp")
        started = time.monotonic()
        read_line(sock)
        sock.sendall(b"EHLO client.test\r\n")
        words, closed = last_words(sock)
        assert words == b"421 4.4.2 Timeout, closing connection"
        assert 1.0 <= closed - started < 2.5  # not the 5 minutes of RFC 5321 §4.5.3.2.7


def test_a_pending_tls_handshake_holds_a_counted_slot(tmp_path: Path) -> None:
    limits = "connections_per_ip = 2\n"
    with serving(tmp_path, limits) as server:
        # Two TCP connections to the implicit-TLS port that never say hello.
        silent = [connect(server, "imaps") for _ in range(2)]
        time.sleep(0.2)
        third = connect(server, "imaps")
        third.settimeout(5)
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            client_tls_context().wrap_socket(third)
        for sock in [*silent, third]:
            sock.close()
