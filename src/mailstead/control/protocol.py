"""The control socket's wire format, sans-IO: one JSON line each way, then close.

A client connects, writes one request line and reads one response line::

    C: {"command": "status"}
    S: {"protocol": 1, "ok": true, "command": "status", "result": {...}}

    C: {"command": "launch"}
    S: {"protocol": 1, "ok": false, "error": "unknown command 'launch' (status, ...)"}

A line is UTF-8 JSON ending in ``\\n``. A request is at most
:data:`MAX_REQUEST` octets (it names a command, nothing more), a response
at most :data:`MAX_RESPONSE`; anything longer, not UTF-8, not a JSON
object, or with fields other than ``command`` is refused with a one-line
error, never a traceback. Nothing here reads a socket or a clock:
:class:`LineReader` takes the bytes that arrived and says what they make.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Final, Literal, TypeAlias, get_args

__all__ = [
    "COMMANDS",
    "MAX_REQUEST",
    "MAX_RESPONSE",
    "PROTOCOL_VERSION",
    "Command",
    "ControlProtocolError",
    "LineReader",
    "Reply",
    "Request",
    "encode_error",
    "encode_request",
    "encode_result",
    "parse_reply",
    "parse_request",
]

#: Bumped only when a reply's shape changes incompatibly; clients check it.
PROTOCOL_VERSION: Final = 1
#: A request names a command: 4 KiB is far more than any needs.
MAX_REQUEST: Final = 4096
#: A status reply of hundreds of workers and listeners still fits.
MAX_RESPONSE: Final = 1024 * 1024

Command: TypeAlias = Literal["status", "reload", "stop", "wake"]
#: What the server does for each command (``mailstead status`` and friends).
COMMANDS: Final[tuple[Command, ...]] = get_args(Command)


class ControlProtocolError(Exception):
    """The peer broke the protocol: too long, not UTF-8, not JSON, wrong shape (one line)."""


@dataclass(frozen=True, slots=True)
class Request:
    """One client request: the command to run."""

    command: Command


@dataclass(frozen=True, slots=True)
class Reply:
    """The server's answer: a result object, or the one-line reason it failed."""

    ok: bool
    result: dict[str, object]
    error: str = ""


class LineReader:
    """Collects octets until the first ``\\n``; refuses a line longer than ``limit``."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._buffer = bytearray()
        self._line: bytes | None = None

    def receive_data(self, data: bytes) -> None:
        """Take what arrived; ``b""`` means the peer closed its side."""
        if self._line is not None:
            return  # one line per connection: what follows it is ignored
        if not data:
            raise ControlProtocolError(
                "connection closed before the end of the line"
                if self._buffer
                else "connection closed without a line"
            )
        self._buffer += data
        end = self._buffer.find(b"\n", 0, self._limit)
        if end >= 0:
            self._line = bytes(self._buffer[:end])
            self._buffer.clear()
        elif len(self._buffer) >= self._limit:
            raise ControlProtocolError(f"line longer than {self._limit} octets")

    def line(self) -> bytes | None:
        """The complete line without its ``\\n``; None while it is still arriving."""
        return self._line


def _json_object(line: bytes, what: str) -> dict[str, object]:
    try:
        value = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError:
        raise ControlProtocolError(f"{what} is not UTF-8") from None
    except (json.JSONDecodeError, RecursionError):
        raise ControlProtocolError(f"{what} is not JSON") from None
    if not isinstance(value, dict):
        raise ControlProtocolError(f"{what} is not a JSON object")
    return value


def parse_request(line: bytes) -> Request:
    """The request in ``line``; raises ControlProtocolError naming what is wrong."""
    value = _json_object(line, "request")
    extra = sorted(set(value) - {"command"})
    if extra:
        raise ControlProtocolError(f"unknown field {extra[0]!r} in the request")
    command = value.get("command")
    if not isinstance(command, str):
        raise ControlProtocolError('the request has no "command" string')
    for known in COMMANDS:
        if command == known:
            return Request(known)
    shown = command[:40].encode("ascii", "backslashreplace").decode()
    raise ControlProtocolError(f"unknown command {shown!r} ({', '.join(COMMANDS)})")


def encode_request(request: Request) -> bytes:
    return json.dumps({"command": request.command}).encode() + b"\n"


def encode_result(command: Command, result: dict[str, object]) -> bytes:
    """A successful reply to ``command``, one line."""
    reply = {"protocol": PROTOCOL_VERSION, "ok": True, "command": command, "result": result}
    return json.dumps(reply, ensure_ascii=False).encode() + b"\n"


def encode_error(reason: str) -> bytes:
    """A failure reply: ``reason`` is one line an operator reads."""
    reply = {"protocol": PROTOCOL_VERSION, "ok": False, "error": " ".join(reason.split())}
    return json.dumps(reply, ensure_ascii=False).encode() + b"\n"


def parse_reply(line: bytes) -> Reply:
    """The reply in ``line``, as a client reads it."""
    value = _json_object(line, "reply")
    version = value.get("protocol")
    if version != PROTOCOL_VERSION:
        raise ControlProtocolError(
            f"reply of protocol version {version!r}, this program speaks {PROTOCOL_VERSION}"
            " (is the server another Mailstead version? restart it)"
        )
    if value.get("ok") is True:
        result = value.get("result")
        if not isinstance(result, dict):
            raise ControlProtocolError("reply without a result object")
        return Reply(True, result)
    error = value.get("error")
    if value.get("ok") is not False or not isinstance(error, str):
        raise ControlProtocolError("reply is neither a result nor an error")
    return Reply(False, {}, error)
