"""Asking the running ``serve`` something over its control socket (``mailstead status`` …).

::

    from mailstead.control.client import NotRunning, request
    try:
        result = request(config, "wake")    # {"workers_woken": 2}
    except NotRunning:
        ...                                  # no server on this data directory

Only root and the server's ``[run]`` user may connect (server.py).
"""

from __future__ import annotations

import time
from pathlib import Path

from mailstead.config import Config
from mailstead.control.address import connect_unix, socket_path
from mailstead.control.protocol import (
    MAX_RESPONSE,
    Command,
    ControlProtocolError,
    LineReader,
    Request,
    encode_request,
    parse_reply,
)
from mailstead.system.lock import running_pid

__all__ = ["ControlError", "NotRunning", "request", "server_pid", "wait_stopped"]

#: Seconds to wait for a reply: longer than a reload may take at worst
#: (commands.py: the supervisor's, then every worker's).
DEFAULT_TIMEOUT = 45.0
_STOP_POLL = 0.1


class NotRunning(Exception):
    """No server runs on the config's data directory (one-line message)."""


class ControlError(Exception):
    """The server refused or failed the request, or could not be asked (one-line message)."""


def server_pid(config: Config) -> int | None:
    """The pid of the server holding the data directory's lock; None when none runs."""
    return running_pid(config.data_dir)


def request(
    config: Config, command: Command, *, timeout: float = DEFAULT_TIMEOUT
) -> dict[str, object]:
    """Send ``command`` to the server of ``config``'s data directory; its result object.

    Raises NotRunning when no server runs there, ControlError when one runs
    but refused or failed the request (the server's reason).
    """
    path = socket_path(config)
    try:
        sock = connect_unix(path, timeout)
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        try:
            pid = server_pid(config)
        except PermissionError:
            raise ControlError(_denied(config)) from None
        if pid is None:
            raise NotRunning(f"no server running on {config.data_dir}") from None
        reason = exc.strerror or str(exc)
        raise ControlError(
            f"a server runs on {config.data_dir} (pid {pid}) but its control socket"
            f" {path} does not answer: {reason.lower()}"
        ) from None
    except PermissionError:
        raise ControlError(_denied(config)) from None
    except TimeoutError:
        raise ControlError(f"{path}: no answer within {timeout:.0f} s") from None
    except OSError as exc:
        raise ControlError(f"{path}: {exc.strerror or exc}") from None
    reader = LineReader(MAX_RESPONSE)
    try:
        with sock:
            sock.sendall(encode_request(Request(command)))
            while (line := reader.line()) is None:
                reader.receive_data(sock.recv(65536))
    except TimeoutError:
        raise ControlError(f"{path}: no answer within {timeout:.0f} s") from None
    except ControlProtocolError as exc:
        raise ControlError(f"{path}: {exc}") from None
    except OSError as exc:
        raise ControlError(f"{path}: {exc.strerror or exc}") from None
    try:
        reply = parse_reply(line)
    except ControlProtocolError as exc:
        raise ControlError(f"{path}: {exc}") from None
    if not reply.ok:
        raise ControlError(reply.error)
    return reply.result


def _denied(config: Config) -> str:
    return (
        f"{socket_path(config)}: permission denied"
        f" (run as root or as the [run] user {config.run.user})"
    )


def wait_stopped(config: Config, timeout: float, pid: int | None = None) -> bool:
    """Wait until the server has exited; False at ``timeout``.

    Exited means: no process of it holds the data directory's lock (the
    kernel drops it when the last of the supervisor and its workers ends),
    and the supervisor ``pid``, when given, has ended too (a zombie waiting
    for its parent to reap it has).
    """
    deadline = time.monotonic() + timeout
    while server_pid(config) is not None or (pid is not None and _alive(pid)):
        if time.monotonic() >= deadline:
            return False
        time.sleep(_STOP_POLL)
    return True


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: the lock alone says it
        return False
    # proc(5): the state follows the command name in parentheses; Z and X have ended.
    return stat[stat.rindex(")") + 2 :][:1] not in ("Z", "X")
