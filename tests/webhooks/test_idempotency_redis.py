"""RedisIdempotencyStore against a real redis-server on loopback, and against lossy networks.

Each server is private: a free port on 127.0.0.1, no persistence, its files
in the test's temporary directory. Lost replies come from a small proxy that
forwards a SET and swallows what comes back; hostile replies from a fake
server that answers every command with a fixed line.
"""

from __future__ import annotations

import json
import select
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailstead.webhooks.idempotency import (
    RedisCommandError,
    RedisIdempotencyStore,
    RedisProtocolError,
    RedisUnavailableError,
)
from mailstead.webhooks.receiver import Event, Outcome, WebhookRouter
from tests.tools import require
from tests.webhooks.deliveries import SECRET, payload, signed

PASSWORD = "hooks-test-password"
PREFIX = "test:webhook-id:"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A private redis-server, and a raw admin connection for looking behind the store."""

    def __init__(self, directory: Path, password: str | None) -> None:
        self.port = _free_port()
        self.password = password
        argv = [
            require("redis-server"),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(directory),
            "--logfile", str(directory / "redis.log"),
        ]  # fmt: skip
        if password is not None:
            argv += ["--requirepass", password]
        self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    log = (directory / "redis.log").read_text(errors="replace")
                    raise RuntimeError(f"redis-server did not start:\n{log}") from None
                time.sleep(0.02)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def admin(self, *args: str, db: int = 0) -> bytes | None:
        """Send one command (after AUTH and SELECT) and return its one reply, undecoded."""
        commands = [("SELECT", str(db)), args]
        if self.password is not None:
            commands.insert(0, ("AUTH", self.password))
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            replies = s.makefile("rb")
            for command in commands:
                parts = [b"*%d\r\n" % len(command)]
                for arg in command:
                    parts.append(b"$%d\r\n%s\r\n" % (len(arg.encode()), arg.encode()))
                s.sendall(b"".join(parts))
                line = replies.readline().rstrip(b"\r\n")
                if line.startswith(b"$"):
                    size = int(line[1:])
                    reply = None if size < 0 else replies.read(size + 2)[:-2]
                else:
                    reply = line
            return reply


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    running = RedisServer(tmp_path_factory.mktemp("redis"), password=None)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def locked_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    running = RedisServer(tmp_path_factory.mktemp("redis-auth"), password=PASSWORD)
    yield running
    running.stop()


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> str:
    # One server serves the module: each test keeps to its own keys.
    return f"{PREFIX}{request.node.name}:"


class Stores:
    """Opens stores on the test's key prefix, and closes them all when the test ends."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.opened: list[RedisIdempotencyStore] = []

    def __call__(self, port: int, **options: object) -> RedisIdempotencyStore:
        options = {"prefix": self.prefix, "connect_timeout": 2, "read_timeout": 2, **options}
        store = RedisIdempotencyStore("127.0.0.1", port, **options)  # type: ignore[arg-type]
        self.opened.append(store)
        return store


@pytest.fixture
def store_on(prefix: str) -> Iterator[Stores]:
    stores = Stores(prefix)
    yield stores
    for store in stores.opened:
        store.close()


# -- claims on a real server ----------------------------------------------------


def test_claim_duplicate_release(server: RedisServer, prefix: str, store_on: Stores) -> None:
    store = store_on(server.port)
    assert store.claim("msg_1") is True
    assert store.claim("msg_1") is False
    assert store.claim("msg_2") is True
    token = server.admin("GET", prefix + "msg_1")
    assert token is not None and len(token) == 32  # a random token, not "1"
    store.release("msg_1")
    assert server.admin("EXISTS", prefix + "msg_1") == b":0"
    assert store.claim("msg_1") is True
    assert server.admin("GET", prefix + "msg_1") != token  # a new token per claim
    store.release("never-claimed")  # harmless


def test_claims_expire(server: RedisServer, prefix: str, store_on: Stores) -> None:
    store = store_on(server.port, ttl=0.3)
    assert store.claim("msg_1") is True
    pttl = server.admin("PTTL", prefix + "msg_1")
    assert pttl is not None and 0 < int(pttl[1:]) <= 300
    assert store.claim("msg_1") is False
    time.sleep(0.4)
    assert store.claim("msg_1") is True


def test_release_frees_only_this_stores_claim(server: RedisServer, store_on: Stores) -> None:
    first, second = store_on(server.port, ttl=0.2), store_on(server.port)
    assert first.claim("msg_1") is True
    second.release("msg_1")  # another worker's claim stays
    assert second.claim("msg_1") is False
    time.sleep(0.3)  # first's claim expires and second takes the id
    assert second.claim("msg_1") is True
    first.release("msg_1")  # first's token is gone from the key: nothing deleted
    assert first.claim("msg_1") is False


def test_racing_claims_have_one_winner(server: RedisServer, store_on: Stores) -> None:
    # Two stores (two connections, as two workers) with four threads each.
    stores = [store_on(server.port), store_on(server.port)]
    wins: list[bool] = []
    start = threading.Barrier(8)

    def race(store: RedisIdempotencyStore) -> None:
        start.wait()
        wins.append(store.claim("msg_race"))

    threads = [threading.Thread(target=race, args=(stores[i % 2],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(wins) == [False] * 7 + [True]


def test_a_connection_the_server_killed_is_reopened(server: RedisServer, store_on: Stores) -> None:
    store = store_on(server.port)
    assert store.claim("msg_1") is True
    assert store.claim("msg_2") is True
    assert server.admin("CLIENT", "KILL", "TYPE", "normal") == b":1"  # the store's
    assert store.claim("msg_3") is True  # SET on the dead socket, GET (nil), SET again
    assert store.claim("msg_1") is False
    server.admin("CLIENT", "KILL", "TYPE", "normal")
    store.release("msg_2")  # the compare-and-delete is sent again on a new connection
    assert store.claim("msg_2") is True


def test_wrong_password_is_a_clear_error(locked_server: RedisServer, store_on: Stores) -> None:
    wrong = store_on(locked_server.port, password="not-it")
    with pytest.raises(RedisCommandError, match=r"refused AUTH: WRONGPASS"):
        wrong.claim("msg_1")
    anonymous = store_on(locked_server.port)
    with pytest.raises(RedisCommandError, match="NOAUTH"):
        anonymous.claim("msg_1")


def test_password_and_database(locked_server: RedisServer, prefix: str, store_on: Stores) -> None:
    store = store_on(locked_server.port, password=PASSWORD, db=3)
    assert store.claim("msg_1") is True
    assert store.claim("msg_1") is False
    assert locked_server.admin("EXISTS", prefix + "msg_1", db=3) == b":1"
    assert locked_server.admin("EXISTS", prefix + "msg_1", db=0) == b":0"


def test_unreachable_server(store_on: Stores) -> None:
    store = store_on(_free_port())
    with pytest.raises(RedisUnavailableError, match=r"Redis at 127\.0\.0\.1:\d+ unreachable"):
        store.claim("msg_1")
    store.release("msg_1")  # never claimed: nothing to send


@pytest.mark.parametrize(
    "options", [{"ttl": 0}, {"connect_timeout": 0}, {"read_timeout": -1}, {"db": -1}]
)
def test_bad_options_are_refused(options: dict[str, float], store_on: Stores) -> None:
    with pytest.raises(ValueError):
        store_on(6379, **options)


# -- lost replies -------------------------------------------------------------------


class LossyProxy:
    """Forwards loopback TCP to the server; can lose the next SET, or its reply, and hang up."""

    def __init__(self, upstream: int) -> None:
        self._upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self.mode = "forward"  # "drop-reply", "drop-request", or "refuse" new connections
        self.then = "forward"  # the mode after a SET is lost
        self.lost = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def lose_next_set(self, how: str, *, then: str = "forward") -> None:
        self.mode, self.then = how, then

    def close(self) -> None:
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._pipe, args=(client,), daemon=True).start()

    def _pipe(self, client: socket.socket) -> None:
        with client, socket.create_connection(("127.0.0.1", self._upstream)) as upstream:
            if self.mode == "refuse":
                return
            while True:
                ready, _, _ = select.select([client, upstream], [], [])
                if client in ready:
                    data = client.recv(65536)
                    if not data:
                        return
                    if b"$3\r\nSET\r\n" in data and self.mode.startswith("drop"):
                        if self.mode == "drop-reply":
                            upstream.sendall(data)
                            upstream.recv(65536)  # the reply the client never sees
                        self.lost += 1
                        self.mode = self.then
                        return
                    upstream.sendall(data)
                if upstream in ready:
                    data = upstream.recv(65536)
                    if not data:
                        return
                    client.sendall(data)


@pytest.fixture
def proxy(server: RedisServer) -> Iterator[LossyProxy]:
    running = LossyProxy(server.port)
    yield running
    running.close()


@pytest.mark.parametrize("how", ["drop-reply", "drop-request"])
def test_a_lost_claim_on_a_free_id_is_ours(
    how: str, server: RedisServer, proxy: LossyProxy, prefix: str, store_on: Stores
) -> None:
    store = store_on(proxy.port)
    proxy.lose_next_set(how)
    assert store.claim("msg_1") is True  # drop-reply: GET finds our token; else SET again
    assert proxy.lost == 1
    assert store.claim("msg_1") is False
    store.release("msg_1")  # the token read back is ours to delete
    assert server.admin("EXISTS", prefix + "msg_1") == b":0"


def test_a_lost_claim_on_a_taken_id_is_a_duplicate(
    server: RedisServer, proxy: LossyProxy, prefix: str, store_on: Stores
) -> None:
    other_worker = store_on(server.port)
    assert other_worker.claim("msg_1") is True
    store = store_on(proxy.port)
    proxy.lose_next_set("drop-reply")
    assert store.claim("msg_1") is False  # GET finds another token
    assert proxy.lost == 1
    store.release("msg_1")  # not ours: left alone
    assert server.admin("EXISTS", prefix + "msg_1") == b":1"


def test_a_claim_left_in_doubt_is_undone_at_the_next_contact(
    server: RedisServer, proxy: LossyProxy, prefix: str, store_on: Stores
) -> None:
    store = store_on(proxy.port)
    proxy.lose_next_set("drop-reply", then="refuse")  # the SET lands; no one can ask
    with pytest.raises(RedisUnavailableError, match="connection lost"):
        store.claim("msg_1")
    assert server.admin("EXISTS", prefix + "msg_1") == b":1"
    proxy.mode = "forward"
    # The sender retries the 500: its claim must win, not be taken for a duplicate.
    assert store.claim("msg_1") is True


# -- hostile replies -------------------------------------------------------------


def _answering(reply: bytes) -> tuple[socket.socket, int]:
    """A fake server that answers the first command with ``reply`` and then waits."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        with listener:
            conn, _ = listener.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(reply)
                conn.recv(65536)  # until the client hangs up

    threading.Thread(target=serve, daemon=True).start()
    return listener, int(listener.getsockname()[1])


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (b"$1000000000\r\n", "bulk reply of 1000000000 bytes"),
        (b"$5\r\nabcdefgh\r\n", "longer than announced"),
        (b"+" + b"x" * 5000, "reply line over 1024 bytes"),
        (b":12a\r\n", "not a RESP integer"),
        (b"$-7\r\n", "bulk reply of -7 bytes"),
        (b"*1\r\n$2\r\nOK\r\n", "unexpected reply type b'\\*'"),
        (b"%1\r\n", "unexpected reply type"),  # RESP3, never asked for
    ],
)
def test_hostile_replies_are_protocol_errors(reply: bytes, message: str, store_on: Stores) -> None:
    _, port = _answering(reply)
    store = store_on(port)
    with pytest.raises(RedisProtocolError, match=message):
        store.claim("msg_1")


# -- behind a router ----------------------------------------------------------------

NOW = 1_796_648_400


def test_routers_sharing_a_redis_store(server: RedisServer, store_on: Stores) -> None:
    # Two routers on two stores stand for two worker processes.
    first = WebhookRouter(SECRET, idempotency=store_on(server.port), clock=lambda: NOW)
    second = WebhookRouter(SECRET, idempotency=store_on(server.port), clock=lambda: NOW)
    calls: list[str] = []

    @first.on("message.received")
    def flaky(event: Event) -> None:
        calls.append(event.webhook_id)
        if len(calls) == 1:
            raise RuntimeError("database down")

    second.on("message.received")(lambda event: calls.append(event.webhook_id))
    body = payload()
    headers = signed(body, "msg_1", timestamp=NOW)
    assert first.reply(body, headers).status == 500  # released: the retry runs again
    assert first.handle(body, headers).outcome is Outcome.HANDLED
    assert second.handle(body, headers).outcome is Outcome.DUPLICATE
    assert calls == ["msg_1", "msg_1"]


def test_an_unreachable_store_answers_500_so_the_sender_retries(store_on: Stores) -> None:
    router = WebhookRouter(SECRET, idempotency=store_on(_free_port()), clock=lambda: NOW)
    calls: list[Event] = []
    router.on("*")(calls.append)
    body = payload()
    reply = router.reply(body, signed(body, "msg_1", timestamp=NOW))
    assert (reply.status, json.loads(reply.body)) == (
        500,
        {"error": "idempotency store unavailable"},
    )
    assert calls == []
