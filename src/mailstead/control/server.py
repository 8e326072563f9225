"""The control socket's server: a thread in the supervisor, one request per connection.

Who may connect: the socket is ``<data_dir>/control.sock``, mode 0600,
owned by the account the server runs as (the ``[run]`` user after the
privilege drop), inside the data directory (0700, same owner). On top of
the file modes each peer's credentials are read from the kernel
(``SO_PEERCRED``): only root and the server's own uid are answered.

Connections are served one after another, each within
:data:`CONNECTION_DEADLINE` for reading its request and as long again for
writing the reply, so a client that stalls costs the next one seconds,
never the server.

The supervisor forks (workers are restarted) while this thread runs. A
fork copies only the forking thread, so a lock this thread held at that
instant (SQLite's, while it reads the queue) would stay locked forever in
the child. :func:`fork_guard` is held around every piece of work here, and
taken by the fork itself (``os.register_at_fork``): a fork waits for the
request being answered, and never happens in the middle of one. The child
closes the inherited listening socket.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import signal
import socket
import struct
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path

from mailstead.control.address import bind_unix
from mailstead.control.protocol import (
    MAX_REQUEST,
    ControlProtocolError,
    LineReader,
    Request,
    encode_error,
    encode_result,
    parse_request,
)

__all__ = ["CONNECTION_DEADLINE", "CommandFailed", "ControlServer", "Handler", "fork_guard"]

log = logging.getLogger("mailstead")

#: Seconds a client has to send its request, and the server to write the reply.
CONNECTION_DEADLINE = 5.0
_UCRED = struct.Struct("3i")
# After the reply: how much of a client's leftover input is read, and for how long.
_DRAIN_LIMIT = 1024 * 1024
_DRAIN_TIME = 0.5  # struct ucred: pid, uid, gid

#: Does one request; raises CommandFailed (one line for the client).
Handler = Callable[[Request], dict[str, object]]


class CommandFailed(Exception):
    """The command could not be done now (one line, sent to the client)."""


_guard = threading.Lock()
_servers: weakref.WeakSet[ControlServer] = weakref.WeakSet()
_hooks_registered = False


def _before_fork() -> None:
    _guard.acquire()


def _after_fork_in_parent() -> None:
    _guard.release()


def _after_fork_in_child() -> None:
    _guard.release()
    for server in list(_servers):
        server._forget()


@contextlib.contextmanager
def fork_guard() -> Iterator[None]:
    """Hold off the supervisor's forks while the body runs."""
    with _guard:
        yield


def _register_fork_hooks() -> None:
    global _hooks_registered
    if not _hooks_registered:
        os.register_at_fork(
            before=_before_fork,
            after_in_parent=_after_fork_in_parent,
            after_in_child=_after_fork_in_child,
        )
        _hooks_registered = True


class ControlServer:
    """Owns the control socket and the thread that answers it."""

    def __init__(self, path: Path, handler: Handler, *, guarded: Callable[[Request], bool]) -> None:
        """``guarded(request)``: run this request's handler under the fork guard.

        Commands that wait for the supervisor's loop (a reload) must not
        hold the guard: the loop may need to fork meanwhile.
        """
        self.path = path
        self._handler = handler
        self._guarded = guarded
        self._sock = bind_unix(path)
        self._stop_r, self._stop_w = socket.socketpair()
        self._thread: threading.Thread | None = None
        self._uid = os.geteuid()
        _register_fork_hooks()
        _servers.add(self)

    @property
    def address(self) -> str:
        return str(self.path)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="control", daemon=True)
        # Signals (SIGHUP, SIGTERM, SIGCHLD) stay with the supervisor's main
        # thread, which handles them; blocked here before the thread exists.
        every = signal.valid_signals()
        old = signal.pthread_sigmask(signal.SIG_BLOCK, every)
        try:
            self._thread.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)

    def close(self) -> None:
        """Stop answering, wait for the request being answered, remove the socket."""
        with contextlib.suppress(OSError):
            self._stop_w.send(b"x")
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(2 * CONNECTION_DEADLINE + 30)
        self._sock.close()
        self._stop_r.close()
        self._stop_w.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        _servers.discard(self)

    def _forget(self) -> None:
        # In a forked child: this thread does not exist there; the file stays the parent's.
        self._sock.close()
        self._stop_r.close()
        self._stop_w.close()
        _servers.discard(self)

    def _run(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._sock, selectors.EVENT_READ)
            selector.register(self._stop_r, selectors.EVENT_READ)
            while True:
                ready = {key.fileobj for key, _ in selector.select()}
                if self._stop_r in ready:
                    return
                try:
                    conn, _ = self._sock.accept()
                except OSError:
                    continue
                with conn:
                    try:
                        self._answer(conn)
                    except Exception:  # never lose the control socket to one request
                        log.exception("control: request failed")

    def _answer(self, conn: socket.socket) -> None:
        uid = self._peer_uid(conn)
        if uid not in (0, self._uid):
            log.warning("control: refused a connection from uid %d", uid)
            self._send(conn, encode_error("permission denied: only root and the server's user"))
            return
        try:
            request = parse_request(self._read_line(conn))
        except ControlProtocolError as exc:
            self._send(conn, encode_error(str(exc)))
            return
        except TimeoutError:
            self._send(conn, encode_error(f"no request within {CONNECTION_DEADLINE:.0f} s"))
            return
        try:
            if self._guarded(request):
                with fork_guard():
                    result = self._handler(request)
            else:
                result = self._handler(request)
        except CommandFailed as exc:
            reply = encode_error(str(exc))
        else:
            reply = encode_result(request.command, result)
        self._send(conn, reply)

    @staticmethod
    def _peer_uid(conn: socket.socket) -> int:
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
        _, uid, _ = _UCRED.unpack(creds)
        return int(uid)

    @staticmethod
    def _read_line(conn: socket.socket) -> bytes:
        reader = LineReader(MAX_REQUEST)
        deadline = time.monotonic() + CONNECTION_DEADLINE
        while (line := reader.line()) is None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            conn.settimeout(left)
            reader.receive_data(conn.recv(MAX_REQUEST))
        return line

    @staticmethod
    def _send(conn: socket.socket, reply: bytes) -> None:
        conn.settimeout(CONNECTION_DEADLINE)
        with contextlib.suppress(OSError):  # the client left: nothing to tell it
            conn.sendall(reply)
            conn.shutdown(socket.SHUT_WR)
            # Closing with unread input resets the connection, and the client
            # would lose the reply (a line too long is refused before its
            # end): what it still sends is read and dropped, a little at most.
            conn.settimeout(_DRAIN_TIME)
            drained = 0
            while drained < _DRAIN_LIMIT and (chunk := conn.recv(65536)):
                drained += len(chunk)
