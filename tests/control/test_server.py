"""The control socket's server on a real Unix socket: who may connect, what it answers,
and what a stalling or hostile client costs.

Transcripts: ``C:`` what the client writes, ``S:`` the line it reads back.
"""

from __future__ import annotations

import os
import socket
import stat
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailstead.control import server as control_server
from mailstead.control.address import bind_unix, connect_unix
from mailstead.control.protocol import Request
from mailstead.control.server import CommandFailed, ControlServer, fork_guard

NOBODY = 65534


def _handler(request: Request) -> dict[str, object]:
    if request.command == "reload":
        raise CommandFailed("reload failed, keeping the previous config: bad")
    return {"answered": request.command}


@pytest.fixture
def served(tmp_path: Path) -> Iterator[ControlServer]:
    server = ControlServer(tmp_path / "control.sock", _handler, guarded=lambda r: True)
    server.start()
    yield server
    server.close()


def _exchange(path: Path, sent: bytes, *, shut: bool = True) -> bytes:
    with connect_unix(path, 10) as sock:
        sock.sendall(sent)
        if shut:
            sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        return received


def test_a_request_and_its_reply(served: ControlServer) -> None:
    # C: {"command": "status"}
    # S: {"protocol": 1, "ok": true, "command": "status", "result": {"answered": "status"}}
    assert _exchange(served.path, b'{"command": "status"}\n') == (
        b'{"protocol": 1, "ok": true, "command": "status", "result": {"answered": "status"}}\n'
    )


def test_a_failed_command_is_one_line(served: ControlServer) -> None:
    assert _exchange(served.path, b'{"command": "reload"}\n') == (
        b'{"protocol": 1, "ok": false,'
        b' "error": "reload failed, keeping the previous config: bad"}\n'
    )


@pytest.mark.parametrize(
    ("sent", "error"),
    [
        (b"GET / HTTP/1.1\r\n\r\n", b"request is not JSON"),
        (
            b'{"command": "launch"}\n',
            b"unknown command 'launch' (status, reload, stop, wake)",
        ),
        (b"x" * 100_000, b"line longer than 4096 octets"),
        (b'{"command": "status"}', b"connection closed before the end of the line"),
        (b"", b"connection closed without a line"),
    ],
)
def test_hostile_clients_get_one_line(served: ControlServer, sent: bytes, error: str) -> None:
    reply = _exchange(served.path, sent)
    assert reply == b'{"protocol": 1, "ok": false, "error": "' + error + b'"}\n'
    # ... and the server still answers the next one.
    assert b'"ok": true' in _exchange(served.path, b'{"command": "wake"}\n')


def test_a_client_that_stalls_is_cut_off_at_the_deadline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(control_server, "CONNECTION_DEADLINE", 0.3)
    server = ControlServer(tmp_path / "control.sock", _handler, guarded=lambda r: False)
    server.start()
    try:
        with connect_unix(server.path, 10) as stalled:
            stalled.sendall(b'{"command": ')  # and nothing more
            started = time.monotonic()
            reply = stalled.recv(4096)
            assert time.monotonic() - started < 5
        assert reply == b'{"protocol": 1, "ok": false, "error": "no request within 0 s"}\n'
        assert b'"ok": true' in _exchange(server.path, b'{"command": "status"}\n')
    finally:
        server.close()


def test_the_socket_is_the_owners_alone_and_removed_at_close(tmp_path: Path) -> None:
    server = ControlServer(tmp_path / "control.sock", _handler, guarded=lambda r: True)
    mode = os.lstat(server.path).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
    server.start()
    server.close()
    assert not server.path.exists()


def test_a_stale_socket_left_by_a_crash_is_replaced(tmp_path: Path) -> None:
    stale = bind_unix(tmp_path / "control.sock")
    stale.close()  # the file stays, as after a SIGKILL
    server = ControlServer(tmp_path / "control.sock", _handler, guarded=lambda r: True)
    server.start()
    try:
        assert b'"ok": true' in _exchange(server.path, b'{"command": "status"}\n')
    finally:
        server.close()


def test_a_data_dir_too_deep_for_a_socket_address(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    assert len(str(deep / "control.sock")) > 108
    server = ControlServer(deep / "control.sock", _handler, guarded=lambda r: True)
    server.start()
    try:
        assert b'"ok": true' in _exchange(server.path, b'{"command": "status"}\n')
    finally:
        server.close()


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory another account can reach (pytest's own are 0700)."""
    path = Path(tempfile.mkdtemp(prefix="mailstead-control-"))
    path.chmod(0o711)
    yield path
    for entry in path.iterdir():
        entry.unlink()
    path.rmdir()


def _status_as(uid: int, path: Path) -> str:
    """Connect as ``uid`` (a forked child that left root) and say what happened."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(10)
                try:
                    sock.connect(str(path))
                except OSError as exc:
                    os.write(write, type(exc).__name__.encode())
                else:
                    sock.sendall(b'{"command": "status"}\n')
                    os.write(write, sock.recv(4096).strip())
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read, "rb") as said:
        return said.read().decode()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a client as another user")
def test_another_account_is_refused_by_mode_and_by_credentials(open_dir: Path) -> None:
    server = ControlServer(open_dir / "control.sock", _handler, guarded=lambda r: True)
    server.start()
    try:
        # Mode 0600: the kernel refuses the connection.
        assert _status_as(NOBODY, server.path) == "PermissionError"
        # Even with the file opened to everyone, SO_PEERCRED names the peer.
        server.path.chmod(0o666)
        assert _status_as(NOBODY, server.path) == (
            '{"protocol": 1, "ok": false,'
            ' "error": "permission denied: only root and the server\'s user"}'
        )
        # Root is always answered.
        assert '"ok": true' in _status_as(0, server.path)
    finally:
        server.close()


def test_a_fork_waits_for_the_request_being_answered() -> None:
    # The supervisor forks workers while the control thread reads the queue
    # (SQLite's locks): a fork in the middle would copy a held lock.
    held = threading.Event()
    released_at: list[float] = []

    def answer() -> None:
        with fork_guard():
            held.set()
            time.sleep(0.3)
            released_at.append(time.monotonic())

    thread = threading.Thread(target=answer)
    thread.start()
    held.wait(5)
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    forked_at = time.monotonic()
    os.waitpid(pid, 0)
    thread.join()
    assert released_at and forked_at >= released_at[0]


def test_a_forked_child_does_not_keep_the_control_socket(served: ControlServer) -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(write, b"closed" if served._sock.fileno() == -1 else b"open")
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    assert os.read(read, 16) == b"closed"
    os.close(read)
    # The parent's is untouched.
    assert b'"ok": true' in _exchange(served.path, b'{"command": "status"}\n')
