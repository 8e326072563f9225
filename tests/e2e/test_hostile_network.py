"""Hostile peers over real sockets: limits, timeouts, injection and smuggling.

Each case talks raw SMTP to the real server (in this process, on
127.0.0.1), checks the exact replies and what reached the disk, and then
checks that an ordinary client is still served.
"""

from __future__ import annotations

import contextlib
import smtplib
import socket
import ssl
import struct
import threading
import time
from pathlib import Path

import pytest

from mailstead.config import load_config
from mailstead.limits import SMTPLimits
from tests.e2e.harness import (
    ServerHandle,
    client_tls_context,
    running_config,
    running_server,
    write_config,
)


class Conn:
    """A raw SMTP connection: bytes out, replies in, nothing hidden."""

    def __init__(self, port: int, timeout: float = 5.0) -> None:
        self.sock: socket.socket | ssl.SSLSocket = socket.create_connection(
            ("127.0.0.1", port), timeout=timeout
        )
        self.buf = b""

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError(f"server closed the connection; unread {self.buf!r}")
        self.buf += chunk

    def reply(self) -> bytes:
        """One complete reply, all its lines, CRLFs stripped and joined by LF."""
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                self._fill()
            line, self.buf = self.buf.split(b"\r\n", 1)
            lines.append(line)
            if line[3:4] != b"-":
                return b"\n".join(lines)

    def cmd(self, line: bytes) -> bytes:
        self.send(line + b"\r\n")
        return self.reply()

    def greet(self) -> Conn:
        assert self.reply().startswith(b"220 ")
        assert self.cmd(b"EHLO hostile.remote.test").startswith(b"250-")
        return self

    def closed_by_server(self, timeout: float = 3.0) -> bool:
        """True once the server has closed (EOF or reset), False if it stays open."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False

    def silent(self, seconds: float = 0.3) -> bool:
        """True if the server sends nothing more within ``seconds``."""
        if self.buf:
            return False
        self.sock.settimeout(seconds)
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            return True
        finally:
            self.sock.settimeout(5.0)
        self.buf += chunk
        return False


def _delivered(server: ServerHandle) -> int:
    return len(list(server.mail_root.glob("*/*/Maildir/new/*")))


def _assert_serves(server: ServerHandle) -> None:
    """An ordinary client still gets its message delivered."""
    before = len(server.new_messages("bob@example.test"))
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as smtp:
        smtp.sendmail("carol@remote.test", ["bob@example.test"], b"Subject: ok\r\n\r\nok\r\n")
    assert len(server.new_messages("bob@example.test")) == before + 1


# --------------------------------------------------------------------------- connections


def test_connections_per_ip_limit(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, extra="[limits]\nconnections_per_ip = 3\n"))
    with running_config(config) as server:
        port = server.ports["smtp"]
        held = [Conn(port).greet() for _ in range(3)]
        extra = Conn(port)
        # S: 421 4.7.0 Too many connections, then the server hangs up.
        assert extra.reply() == b"421 4.7.0 Too many connections from your address, try again later"
        assert extra.closed_by_server()
        extra.close()
        for conn in held:
            assert conn.cmd(b"NOOP") == b"250 2.0.0 OK"
        # Another listener keeps its own count.
        other = Conn(server.ports["submission"])
        assert other.reply().startswith(b"220 ")
        other.close()
        # A slot freed by QUIT is available again.
        assert held[0].cmd(b"QUIT").startswith(b"221 ")
        held.pop(0).close()
        deadline = time.monotonic() + 3
        while True:
            again = Conn(port)
            greeting = again.reply()
            if greeting.startswith(b"220 ") or time.monotonic() > deadline:
                break
            again.close()
            time.sleep(0.05)
        assert greeting.startswith(b"220 ")
        again.close()
        for conn in held:
            assert conn.cmd(b"QUIT").startswith(b"221 ")
            conn.close()
        _assert_serves(server)


def test_idle_client_is_timed_out(tmp_path: Path) -> None:
    with running_server(tmp_path, limits=SMTPLimits(idle_timeout=0.5, data_timeout=0.5)) as server:
        port = server.ports["smtp"]
        conn = Conn(port)
        assert conn.reply().startswith(b"220 ")
        started = time.monotonic()
        # C: (nothing)  S: 421 4.4.2 Timeout, closing connection
        assert conn.reply() == b"421 4.4.2 Timeout, closing connection"
        assert 0.4 <= time.monotonic() - started < 3
        assert conn.closed_by_server()
        conn.close()

        # A slow-loris in the middle of DATA meets the data timeout.
        conn = Conn(port).greet()
        assert conn.cmd(b"MAIL FROM:<slow@remote.test>").startswith(b"250 ")
        assert conn.cmd(b"RCPT TO:<alice@example.test>").startswith(b"250 ")
        assert conn.cmd(b"DATA").startswith(b"354 ")
        conn.send(b"Subject: slow\r\n\r\nhalf a message")
        assert conn.reply() == b"421 4.4.2 Timeout, closing connection"
        assert conn.closed_by_server()
        conn.close()
        assert server.new_messages("alice@example.test") == []
        _assert_serves(server)


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/self/status")


def test_endless_line_is_refused_in_bounded_memory(server: ServerHandle) -> None:
    conn = Conn(server.ports["smtp"]).greet()
    assert conn.cmd(b"NOOP") == b"250 2.0.0 OK"  # warm up before measuring
    chunk = b"A" * 65536
    before = _rss_kib()
    # 1 MiB first (the case the limit exists for), then on to 32 MiB: if the
    # server kept the line, its memory would grow by that much.
    for _ in range(32 * 16):
        conn.send(chunk)
    conn.send(b"\r\nNOOP\r\n")
    # S: 500 5.5.2 Line too long (once), and the session goes on.
    assert conn.reply() == b"500 5.5.2 Line too long"
    assert conn.reply() == b"250 2.0.0 OK"
    grown_mib = (_rss_kib() - before) / 1024  # the server has read it all by now
    assert conn.silent()
    assert grown_mib < 8, f"server memory grew by {grown_mib:.1f} MiB for one line"
    assert conn.cmd(b"QUIT").startswith(b"221 ")
    conn.close()
    _assert_serves(server)


# --------------------------------------------------------------------------- STARTTLS


def _tls_upgrade(conn: Conn) -> None:
    tls = client_tls_context().wrap_socket(conn.sock)
    # Give the server time to finish its side of the handshake before the
    # first command; test_data_in_the_same_segment_as_the_tls_finished_is_kept
    # covers a command that arrives together with the client's Finished.
    time.sleep(0.2)
    conn.sock = tls


@pytest.mark.parametrize(
    ("role", "injected", "after_tls", "expected"),
    [
        # An injected MAIL would have opened a transaction for the RCPT.
        (
            "smtp",
            b"MAIL FROM:<evil@remote.test>\r\n",
            b"RCPT TO:<alice@example.test>",
            b"503 5.5.1 Send MAIL first",
        ),
        # An injected AUTH would have logged the session in as alice.
        (
            "submission",
            b"EHLO x\r\nAUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABhbGljZS1wdw==\r\n",
            b"MAIL FROM:<alice@example.test>",
            b"530 5.7.0 Authentication required",
        ),
    ],
)
def test_commands_pipelined_behind_starttls_are_discarded(
    server: ServerHandle, role: str, injected: bytes, after_tls: bytes, expected: bytes
) -> None:
    conn = Conn(server.ports[role]).greet()
    # C: STARTTLS<CRLF>MAIL FROM:<evil@remote.test><CRLF>   (one packet)
    conn.send(b"STARTTLS\r\n" + injected)
    assert conn.reply() == b"220 2.0.0 Ready to start TLS"
    assert conn.silent(), "the server answered a command injected before the TLS handshake"
    _tls_upgrade(conn)
    ehlo = conn.cmd(b"EHLO hostile.remote.test")
    assert ehlo.startswith(b"250-mx.example.test greets hostile.remote.test\n"), ehlo
    assert conn.cmd(after_tls) == expected
    assert conn.cmd(b"NOOP") == b"250 2.0.0 OK"
    assert conn.silent()
    conn.close()
    _assert_serves(server)


def test_data_in_the_same_segment_as_the_tls_finished_is_kept(server: ServerHandle) -> None:
    conn = Conn(server.ports["smtp"]).greet()
    assert conn.cmd(b"STARTTLS") == b"220 2.0.0 Ready to start TLS"
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = client_tls_context().wrap_bio(incoming, outgoing)
    while True:
        try:
            tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            if pending := outgoing.read():
                conn.sock.sendall(pending)
            incoming.write(conn.sock.recv(65536))
    # The client's Finished and its EHLO leave in one write (as msmtp's do).
    tls.write(b"EHLO hostile.remote.test\r\n")
    conn.sock.sendall(outgoing.read())
    conn.sock.settimeout(3)
    answer = b""
    with contextlib.suppress(TimeoutError):
        while b"\r\n250 " not in answer:
            incoming.write(conn.sock.recv(65536))
            with contextlib.suppress(ssl.SSLWantReadError):
                answer += tls.read(65536)
    conn.close()
    assert answer.startswith(b"250-mx.example.test greets hostile.remote.test\r\n")


# --------------------------------------------------------------------------- recipients


def test_ten_thousand_recipients_get_452_and_the_session_goes_on(tmp_path: Path) -> None:
    with running_server(tmp_path, limits=SMTPLimits(recipients_per_message=5)) as server:
        conn = Conn(server.ports["smtp"], timeout=30).greet()
        assert conn.cmd(b"MAIL FROM:<many@remote.test>") == b"250 2.1.0 Sender OK"
        flood = b"RCPT TO:<alice@example.test>\r\n" * 10_000
        # Write and read at once, or both sides could block on full buffers.
        writer = threading.Thread(target=conn.send, args=(flood,))
        writer.start()
        replies = [conn.reply() for _ in range(10_000)]
        writer.join()
        assert replies[:5] == [b"250 2.1.5 Recipient OK"] * 5
        assert set(replies[5:]) == {b"452 4.5.3 Too many recipients"}
        # RFC 5321 §4.5.3.1.10: 452 is no error; the accepted five still count.
        assert conn.cmd(b"DATA").startswith(b"354 ")
        assert conn.cmd(b"Subject: many\r\n\r\nmany\r\n.").startswith(b"250 2.0.0 Ok")
        assert len(server.new_messages("alice@example.test")) == 1  # one mailbox, one copy
        # The same session still takes a normal message.
        assert conn.cmd(b"MAIL FROM:<many@remote.test>").startswith(b"250 ")
        assert conn.cmd(b"RCPT TO:<bob@example.test>").startswith(b"250 ")
        assert conn.cmd(b"DATA").startswith(b"354 ")
        assert conn.cmd(b"Subject: next\r\n\r\nnext\r\n.").startswith(b"250 2.0.0 Ok")
        assert len(server.new_messages("bob@example.test")) == 1
        conn.close()
        _assert_serves(server)


PWNED = "pwned-by-rcpt"


@pytest.mark.parametrize(
    "path",
    [
        b"<../../pwned-by-rcpt@example.test>",
        b'<"../../pwned-by-rcpt"@example.test>',
        b'<"../../../../../../../../pwned-by-rcpt"@example.test>',
        b'<"alice/../bob"@example.test>',
        b'<"alice/../../../pwned-by-rcpt"@example.test>',
        b'<"alice\\/..\\/..\\/pwned-by-rcpt"@example.test>',
        b'<"a\\0b"@example.test>',
        b'<"a\x00b"@example.test>',
        b"<alice\x00@example.test>",
        b'<"$(reboot)"@example.test>',
        b"<$(reboot)@example.test>",
        b'<"`touch pwned-by-rcpt`"@example.test>',
        b'<"."@example.test>',
        b'<".."@example.test>',
        b"<alice@example.test/../../pwned-by-rcpt>",
        b"<alice@../../pwned-by-rcpt>",
        b"<alice@..>",
        b'<"alice@example.test"@example.test>',
        b"<alice%bob@example.test>",
    ],
)
def test_hostile_local_parts_are_refused(server: ServerHandle, tmp_path: Path, path: bytes) -> None:
    def snapshot() -> set[Path]:
        return {p for p in tmp_path.rglob("*") if not p.name.endswith(("-wal", "-shm", "-journal"))}

    before = snapshot()
    conn = Conn(server.ports["smtp"]).greet()
    assert conn.cmd(b"MAIL FROM:<carol@remote.test>").startswith(b"250 ")
    # C: RCPT TO:<../../pwned-by-rcpt@example.test>  S: 5xx
    reply = conn.cmd(b"RCPT TO:" + path)
    data = conn.cmd(b"DATA")
    if data.startswith(b"354"):  # accepted after all: finish, so the damage shows
        conn.cmd(b"Subject: pwned\r\n\r\npwned\r\n.")
    conn.close()
    assert reply[:1] == b"5", reply
    assert data == b"554 5.5.1 No valid recipients"
    assert snapshot() - before == set()
    for ancestor in [server.mail_root, *server.mail_root.parents]:
        assert not (ancestor / PWNED).exists()
    assert _delivered(server) == 0
    _assert_serves(server)


# --------------------------------------------------------------------------- smuggling

REAL = b"Subject: real\r\n\r\nhello"
SMUGGLED = (
    b"MAIL FROM:<evil@remote.test>\r\n"
    b"RCPT TO:<bob@example.test>\r\n"
    b"DATA\r\n"
    b"Subject: smuggled\r\n\r\nevil\r\n"
)


@pytest.mark.parametrize(
    ("fake_end", "expected"),
    [
        # Bare LF is a content line end, never part of the terminator: one message.
        (b"\n.\n", b"250"),
        (b"\n.\r\n", b"250"),
        (b"\r\n.\n", b"250"),
        # A bare CR refuses the whole message (RFC 5321 §2.3.8).
        (b"\r.\r", b"550 5.6.0"),
        (b"\r\n.\r", b"550 5.6.0"),
        (b"\r.\r\n", b"550 5.6.0"),
    ],
)
def test_smtp_smuggling_yields_at_most_one_message(
    server: ServerHandle, fake_end: bytes, expected: bytes
) -> None:
    conn = Conn(server.ports["smtp"]).greet()
    assert conn.cmd(b"MAIL FROM:<carol@remote.test>").startswith(b"250 ")
    assert conn.cmd(b"RCPT TO:<alice@example.test>").startswith(b"250 ")
    assert conn.cmd(b"DATA").startswith(b"354 ")
    # C: hello<fake end>MAIL FROM:…RCPT TO:<bob>…DATA…<CRLF>.<CRLF>  (one write)
    conn.send(REAL + fake_end + SMUGGLED + b".\r\n")
    assert conn.reply().startswith(expected)
    # Exactly one reply to all of that: the smuggled commands were never commands.
    assert conn.cmd(b"NOOP") == b"250 2.0.0 OK"
    assert conn.silent()
    conn.close()
    assert server.new_messages("bob@example.test") == []
    alice = server.new_messages("alice@example.test")
    if expected == b"250":
        (stored,) = alice
        assert b"MAIL FROM:<evil@remote.test>\nRCPT TO:<bob@example.test>\n" in stored
    else:
        assert alice == []
    _assert_serves(server)


# --------------------------------------------------------------------------- disconnects


@pytest.mark.parametrize("how", ["fin", "rst", "fin-after-partial-dot"])
def test_disconnect_mid_data_leaves_no_message(server: ServerHandle, how: str) -> None:
    conn = Conn(server.ports["smtp"]).greet()
    assert conn.cmd(b"MAIL FROM:<carol@remote.test>").startswith(b"250 ")
    assert conn.cmd(b"RCPT TO:<alice@example.test>").startswith(b"250 ")
    assert conn.cmd(b"DATA").startswith(b"354 ")
    body = b"Subject: cut\r\n\r\n" + b"half of a message\r\n" * 1000
    conn.send(body + (b"\r\n." if how == "fin-after-partial-dot" else b""))
    if how == "rst":
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()
    time.sleep(0.3)
    _assert_serves(server)
    assert server.new_messages("alice@example.test") == []
