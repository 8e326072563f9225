"""The real asyncio POP3 session on 127.0.0.1, driven by Python's poplib.

The server runs in its own event loop on a background thread (as the e2e
harness does) with an in-memory maildrop, so the blocking poplib client
talks to it exactly as a mail client would, over plain TCP, STLS and
implicit TLS.
"""

from __future__ import annotations

import asyncio
import poplib
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mailstead.limits import POP3Limits
from mailstead.net.listener import bind
from mailstead.net.pop3_session import POP3Service, POP3Session
from mailstead.proto.pop3.content import crlf_size
from mailstead.proto.pop3.maildrop import Maildrop, MaildropInUse
from mailstead.proto.pop3.server import POP3Settings
from mailstead.tlscert import ensure_self_signed, server_context
from tests.e2e.harness import client_tls_context

USER, PASSWORD = "alice@example.test", "alice-pw"
MESSAGES = [
    b"From: bob@example.test\nSubject: one\n\nHello\n.dot line\nbye\n",
    b"Subject: two\r\n\r\nno final line end",
]


@dataclass
class FakeMaildrop:
    """An in-memory maildrop that records what the session asked of it."""

    messages: list[bytes]
    uidls: list[str] | None = None
    calls: list[tuple[str, tuple[int, ...]]] = field(default_factory=list)
    closed: threading.Event = field(default_factory=threading.Event)
    close_count: int = 0

    def listing(self) -> Sequence[tuple[str, int]]:
        uidls = self.uidls or [f"uid{i + 1}" for i in range(len(self.messages))]
        return [(u, crlf_size(m)) for u, m in zip(uidls, self.messages, strict=True)]

    def read(self, index: int) -> bytes:
        return self.messages[index]

    def read_head(self, index: int, body_lines: int) -> bytes:
        return self.messages[index]

    def mark_seen(self, indexes: Sequence[int]) -> None:
        self.calls.append(("mark_seen", tuple(indexes)))

    def delete(self, indexes: Sequence[int]) -> None:
        self.calls.append(("delete", tuple(indexes)))

    def close(self) -> None:
        self.close_count += 1
        self.closed.set()


class FakeStore:
    """Opens maildrops; one session at a time per user, as the lock would."""

    def __init__(self, messages: list[bytes]) -> None:
        self.drop = FakeMaildrop(list(messages))
        self.locked: set[str] = set()

    def authenticate(self, user: str, password: str) -> str | None:
        return USER if (user, password) == (USER, PASSWORD) else None

    def open(self, user: str) -> Maildrop:
        if user in self.locked:
            raise MaildropInUse(user)
        return self.drop


@dataclass
class Running:
    """The listeners of one test: plain (with STLS) and implicit TLS."""

    store: FakeStore
    service: POP3Service
    plain_port: int
    tls_port: int


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    ensure_self_signed(cert, key, "pop.example.test")
    return cert, key


def _serve(
    tls_files: tuple[Path, Path],
    *,
    messages: list[bytes] = MESSAGES,
    limits: POP3Limits | None = None,
    delete_retrieved: bool = False,
) -> Iterator[Running]:
    loop = asyncio.new_event_loop()
    store = FakeStore(messages)
    settings = POP3Settings(
        hostname="pop.example.test",
        limits=limits or POP3Limits(auth_failure_delay=0.01),
        tls_available=True,
        delete_retrieved=delete_retrieved,
    )
    context = server_context(*tls_files)
    plain_sock, tls_sock = bind(("127.0.0.1", 0)), bind(("127.0.0.1", 0))
    plain = POP3Service(settings, store.authenticate, store.open, context)
    implicit = POP3Service(
        POP3Settings(
            hostname="pop.example.test",
            limits=settings.limits,
            secure=True,
            delete_retrieved=delete_retrieved,
        ),
        store.authenticate,
        store.open,
        context,
    )
    servers: list[asyncio.Server] = []

    async def start() -> None:
        for service, sock in ((plain, plain_sock), (implicit, tls_sock)):
            # The session does implicit TLS itself, after admission.
            servers.append(await loop.create_server(service.protocol_factory, sock=sock))

    loop.run_until_complete(start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield Running(store, plain, plain_sock.getsockname()[1], tls_sock.getsockname()[1])
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


@pytest.fixture
def server(tls_files: tuple[Path, Path]) -> Iterator[Running]:
    yield from _serve(tls_files)


def _stls_login(port: int) -> poplib.POP3:
    client = poplib.POP3("127.0.0.1", port, timeout=10)
    client.stls(client_tls_context())
    client.user(USER)
    client.pass_(PASSWORD)
    return client


def test_plain_capa_refuses_login_then_stls_login_and_retr(server: Running) -> None:
    client = poplib.POP3("127.0.0.1", server.plain_port, timeout=10)
    assert client.getwelcome() == b"+OK pop.example.test Mailstead POP3 ready"
    capa = client.capa()
    assert "STLS" in capa and "USER" not in capa and "SASL" not in capa
    with pytest.raises(poplib.error_proto, match="Login needs TLS"):
        client.user(USER)
    client.stls(client_tls_context())
    capa = client.capa()
    assert "STLS" not in capa and "USER" in capa and capa["SASL"] == ["PLAIN", "LOGIN"]
    client.user(USER)
    client.pass_(PASSWORD)
    assert client.stat() == (2, sum(crlf_size(m) for m in MESSAGES))
    _, lines, _ = client.retr(1)
    # poplib undoes the dot-stuffing and drops the CRLFs.
    assert lines == [
        b"From: bob@example.test",
        b"Subject: one",
        b"",
        b"Hello",
        b".dot line",
        b"bye",
    ]
    assert client.uidl()[1] == [b"1 uid1", b"2 uid2"]
    assert client.uidl(2) == b"+OK 2 uid2"
    assert client.top(2, 0)[1] == [b"Subject: two", b""]
    client.quit()
    drop = server.store.drop
    assert drop.closed.wait(5)
    assert drop.calls == [("mark_seen", (0,))]
    assert drop.close_count == 1


def test_retr_bytes_on_the_wire_are_crlf_and_stuffed(server: Running) -> None:
    client = _stls_login(server.plain_port)
    client._putcmd("RETR 2")
    assert client._getline()[0] == b"+OK %d octets" % crlf_size(MESSAGES[1])
    raw = b""
    while not raw.endswith(b"\r\n.\r\n"):
        raw += client.file.readline()
    assert raw == b"Subject: two\r\n\r\nno final line end\r\n.\r\n"
    client.quit()


def test_pop3s_dele_quit_deletes(server: Running) -> None:
    client = poplib.POP3_SSL("127.0.0.1", server.tls_port, context=client_tls_context(), timeout=10)
    assert "USER" in client.capa() and "STLS" not in client.capa()
    client.user(USER)
    client.pass_(PASSWORD)
    client.dele(2)
    assert client.list()[1] == [b"1 %d" % crlf_size(MESSAGES[0])]
    client.quit()
    drop = server.store.drop
    assert drop.closed.wait(5)
    assert drop.calls == [("delete", (1,))]


def test_dropped_connection_closes_the_maildrop_and_deletes_nothing(server: Running) -> None:
    client = _stls_login(server.plain_port)
    client.dele(1)
    client.retr(2)
    client.file.close()  # no QUIT: RFC 1939 §6, no UPDATE state
    client.sock.close()
    drop = server.store.drop
    assert drop.closed.wait(5)
    time.sleep(0.05)
    assert drop.calls == [] and drop.close_count == 1


def test_failed_login_is_delayed_and_in_use_is_reported(tls_files: tuple[Path, Path]) -> None:
    limits = POP3Limits(auth_failure_delay=0.3)
    for running in _serve(tls_files, limits=limits):
        client = poplib.POP3_SSL(
            "127.0.0.1", running.tls_port, context=client_tls_context(), timeout=10
        )
        client.user(USER)
        started = time.monotonic()
        with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
            client.pass_("wrong")
        assert time.monotonic() - started >= 0.3
        running.store.locked.add(USER)
        client.user(USER)
        with pytest.raises(poplib.error_proto, match=r"\[IN-USE\]"):
            client.pass_(PASSWORD)
        running.store.locked.clear()
        client.user(USER)
        client.pass_(PASSWORD)
        assert client.stat()[0] == 2
        client.quit()


def test_delete_retrieved(tls_files: tuple[Path, Path]) -> None:
    for running in _serve(tls_files, delete_retrieved=True):
        client = poplib.POP3_SSL(
            "127.0.0.1", running.tls_port, context=client_tls_context(), timeout=10
        )
        assert client.capa()["EXPIRE"] == ["0"]
        client.user(USER)
        client.pass_(PASSWORD)
        client.retr(2)
        client.quit()
        assert running.store.drop.closed.wait(5)
        assert running.store.drop.calls == [("delete", (1,))]


def test_100000_message_list_streams(
    tls_files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    pauses: list[int] = []
    original = POP3Session.pause_writing

    def pause_writing(self: POP3Session) -> None:
        pauses.append(1)
        original(self)

    monkeypatch.setattr(POP3Session, "pause_writing", pause_writing)
    uidls = [f"{i:070d}" for i in range(1, 100_001)]
    for running in _serve(tls_files, messages=[b"x\n"] * 100_000):
        running.store.drop.uidls = uidls
        # A small receive window and a slow start make the server's write
        # buffer fill, so it must wait for resume_writing between pieces.
        raw = socket.socket()
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        raw.settimeout(10)
        raw.connect(("127.0.0.1", running.tls_port))
        sock = client_tls_context().wrap_socket(raw)
        lines = sock.makefile("rb")
        assert lines.readline().startswith(b"+OK")
        sock.sendall(f"USER {USER}\r\nPASS {PASSWORD}\r\nLIST\r\nUIDL\r\nSTAT\r\n".encode())
        time.sleep(0.3)
        assert lines.readline() == b"+OK Send PASS\r\n"
        assert lines.readline().startswith(b"+OK Logged in, 100000 messages")
        assert lines.readline() == b"+OK 100000 messages (300000 octets)\r\n"
        count = 0
        while lines.readline() != b".\r\n":
            count += 1
        assert count == 100_000
        assert lines.readline() == b"+OK Unique-ID listing follows\r\n"
        last = b""
        while (line := lines.readline()) != b".\r\n":
            last = line
        assert last == f"100000 {uidls[-1]}\r\n".encode()
        assert lines.readline() == b"+OK 100000 300000\r\n"
        sock.sendall(b"QUIT\r\n")
        assert lines.readline().startswith(b"+OK")
        sock.close()
    assert pauses, "the listing should have filled the transport's buffer"


def test_idle_timeout_closes_silently(tls_files: tuple[Path, Path]) -> None:
    for running in _serve(tls_files, limits=POP3Limits(idle_timeout=0.2)):
        with socket.create_connection(("127.0.0.1", running.plain_port), timeout=5) as sock:
            data = b""
            while chunk := sock.recv(4096):
                data += chunk
            # RFC 1939 §3: no response on autologout, just the close.
            assert data == b"+OK pop.example.test Mailstead POP3 ready\r\n"


def test_shutdown_says_err(tls_files: tuple[Path, Path]) -> None:
    for running in _serve(tls_files):
        sock = socket.create_connection(("127.0.0.1", running.plain_port), timeout=5)
        sock.recv(4096)
        deadline = time.monotonic() + 5
        while not running.service.sessions and time.monotonic() < deadline:
            time.sleep(0.01)
        session = next(iter(running.service.sessions))
        session.loop.call_soon_threadsafe(session.shutdown)
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
        assert data == b"-ERR [SYS/TEMP] Server shutting down\r\n"
        sock.close()
