"""The client against servers that misbehave: every failure is one line, never a hang."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailstead.config import Config, load_config
from mailstead.control.address import bind_unix, socket_path
from mailstead.control.client import ControlError, NotRunning, request
from mailstead.system.lock import ServeLock
from tests.e2e.harness import write_config


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return load_config(write_config(tmp_path))


@contextlib.contextmanager
def _serve_once(config: Config, reply: bytes | None) -> Iterator[None]:
    """A fake server: reads the request line, writes ``reply`` (None: nothing), closes."""
    listener = bind_unix(socket_path(config))

    def run() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(4096)
            if reply is None:
                closed.wait(10)
            else:
                with contextlib.suppress(BrokenPipeError):  # the client gave up
                    conn.sendall(reply)

    closed = threading.Event()
    thread = threading.Thread(target=run)
    thread.start()
    lock = ServeLock(config.data_dir)
    try:
        yield
    finally:
        closed.set()
        thread.join(10)
        listener.close()
        lock.close()


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (
            b'{"protocol": 1, "ok": false, "error": "the server is stopping: no reload"}\n',
            "the server is stopping: no reload",
        ),
        (
            b'{"protocol": 2, "ok": true, "result": {}}\n',
            "{sock}: reply of protocol version 2, this program speaks 1"
            " (is the server another Mailstead version? restart it)",
        ),
        (b"HTTP/1.1 400 Bad Request\r\n\r\n", "{sock}: reply is not JSON"),
        (b"", "{sock}: connection closed without a line"),
        (
            b'{"protocol": 1, "ok": true, "result": {"a": "' + b"x" * (2 << 20),
            "{sock}: line longer than 1048576 octets",
        ),
    ],
)
def test_a_bad_reply_is_one_line(config: Config, reply: bytes, error: str) -> None:
    with _serve_once(config, reply), pytest.raises(ControlError) as caught:
        request(config, "status", timeout=10)
    assert str(caught.value) == error.format(sock=socket_path(config))


def test_a_server_that_never_answers(config: Config) -> None:
    with _serve_once(config, None), pytest.raises(ControlError) as caught:
        request(config, "status", timeout=0.3)
    assert str(caught.value) == f"{socket_path(config)}: no answer within 0 s"


def test_no_server(config: Config) -> None:
    with pytest.raises(NotRunning, match=f"no server running on {config.data_dir}"):
        request(config, "status")


def test_a_socket_left_by_a_crash_and_no_server(config: Config) -> None:
    stale = bind_unix(socket_path(config))
    stale.close()  # the file stays; connecting is refused
    with pytest.raises(NotRunning):
        request(config, "status")
    assert isinstance(stale, socket.socket)
