"""Two IMAP sessions in one worker: one's slow APPEND does not hold up the other.

The real :class:`IMAPSession` on 127.0.0.1, in the test's event loop, with
both sessions on one :class:`~mailstead.store.account.Account` (as in one
worker process, where they share the mailbox objects). The thread pool
holds every storage step until the test lets it go, as a slow disk would:
while the first session's APPEND of a large message waits for its fsyncs,
the second session's NOOP and FETCH are answered; its tagged OK comes once
they are done (RFC 9051 §6.3.12: the message is stored when OK is sent).
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import ParamSpec, TypeVar

from mailstead.limits import IMAPLimits
from mailstead.net.imap_session import IMAPService
from mailstead.net.listener import bind
from mailstead.proto.imap.server import IMAPSettings
from mailstead.store.account import Account
from tests.proto.imap.imap_transcript import MESSAGES, PASSWORD, USER, WHEN, deliver

P = ParamSpec("P")
T = TypeVar("T")

BIG = b"Subject: big\r\n\r\n" + b"0123456789abcdef" * 4096 * 64 + b"\r\n"  # 4 MiB


class HeldPool(ThreadPoolExecutor):
    """A thread pool that, once ``armed``, starts nothing before ``release`` is set."""

    def __init__(self) -> None:
        super().__init__(4)
        self.armed = False
        self.waiting = threading.Event()  # an armed job is being held
        self.release = threading.Event()

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        if not self.armed:
            return super().submit(fn, *args, **kwargs)

        def held() -> T:
            self.waiting.set()
            self.release.wait(30)
            return fn(*args, **kwargs)

        return super().submit(held)


class Client:
    """A minimal IMAP client: one command, then everything up to its tagged line."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int) -> Client:
        client = cls(*await asyncio.open_connection("127.0.0.1", port))
        assert (await client.reader.readline()).startswith(b"* OK ")
        return client

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def answer(self, tag: bytes) -> list[bytes]:
        lines = []
        while True:
            line = await asyncio.wait_for(self.reader.readline(), 10)
            assert line, "connection closed"
            lines.append(line)
            if line.startswith(tag + b" "):
                return lines

    async def say(self, tag: bytes, command: bytes) -> list[bytes]:
        self.send(tag + b" " + command + b"\r\n")
        return await self.answer(tag)


async def _scenario(root: Path) -> None:
    account = Account(root)
    pool = HeldPool()
    service = IMAPService(
        IMAPSettings("mx.example.test", secure=True),  # no TLS: as if under it
        IMAPLimits(),
        lambda user: account,
        lambda authcid, password, authzid: (
            USER if (authcid, password) == (USER, PASSWORD) else None
        ),
        pool,
        None,
    )
    sock = bind(("127.0.0.1", 0))
    server = await asyncio.get_running_loop().create_server(service.protocol_factory, sock=sock)
    try:
        port = sock.getsockname()[1]
        a, b = await Client.connect(port), await Client.connect(port)
        for c in (a, b):
            assert (await c.say(b"l", f"LOGIN {USER} {PASSWORD}".encode()))[-1].startswith(b"l OK")
            assert (await c.say(b"s", b"SELECT INBOX"))[-1].startswith(b"s OK")
        pool.armed = True

        a.send(b"a1 APPEND INBOX {%d+}\r\n" % len(BIG) + BIG + b"\r\n")
        # A's APPEND is in its storage step, in the pool.
        assert await asyncio.to_thread(pool.waiting.wait, 10)
        assert await b.say(b"b1", b"NOOP") == [b"b1 OK NOOP completed\r\n"]
        assert await b.say(b"b2", b"FETCH 3 (UID FLAGS)") == [
            b"* 3 FETCH (UID 3 FLAGS ())\r\n",
            b"b2 OK FETCH completed\r\n",
        ]
        assert not a.reader._buffer, "A was answered before its message was stored"  # type: ignore[attr-defined]

        pool.release.set()
        said = await a.answer(b"a1")
        assert re.fullmatch(rb"a1 OK \[APPENDUID \d+ 4\] APPEND completed\r\n", said[-1]), said
        assert await b.say(b"b3", b"NOOP") == [
            b"* 4 EXISTS\r\n",
            b"* 0 RECENT\r\n",  # \Recent in A, which selected it first (RFC 3501 §2.3.2)
            b"b3 OK NOOP completed\r\n",
        ]
        for c in (a, b):
            c.writer.close()
    finally:
        server.close()
        await server.wait_closed()
        pool.shutdown()


def test_a_slow_append_does_not_hold_up_another_session(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    deliver(root, *MESSAGES, when=WHEN)
    asyncio.run(_scenario(root))
