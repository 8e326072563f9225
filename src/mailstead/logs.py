"""Log lines: one line per event, logfmt or JSON, each saying whose it is.

Every line carries the session it belongs to (``session``, ``ip``) and,
once there is one, the message (``queue_id``). The sessions and the
outbound engine set these context variables; code below them logs with
plain ``logging`` calls and the formatter reads the variables, so no id is
passed around. Work handed to a thread pool takes the context with it
through :func:`carry` (``run_in_executor`` does not copy it).

A line's own fields go in ``extra=fields(...)``; the free text is ``msg``,
always last. Nothing here knows what a password is: the callers never log
one, nor a message body (tests/logs checks both).
"""

from __future__ import annotations

import contextlib
import contextvars
import fcntl
import functools
import json
import logging
import logging.handlers
import os
import re
import secrets
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, TypeVar

__all__ = [
    "FORMATS",
    "JSONFormatter",
    "LogfmtFormatter",
    "SharedRotatingFileHandler",
    "carry",
    "fields",
    "new_session",
    "parse_line",
    "queue_id",
    "set_queue_id",
    "setup",
]

_T = TypeVar("_T")

SESSION: contextvars.ContextVar[str | None] = contextvars.ContextVar("session", default=None)
REMOTE_IP: contextvars.ContextVar[str | None] = contextvars.ContextVar("ip", default=None)
QUEUE_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("queue_id", default=None)

#: The values of ``[log] format``.
FORMATS = ("logfmt", "json")
# The context's keys, in the order they appear on a line.
_CONTEXT = ("session", "ip", "queue_id")


def new_session(ip: str | None, kind: str = "") -> str:
    """Name the current context's session (a fresh id) and its remote address.

    Call it at the top of the task that runs the session: a task runs in a
    copy of the context, so the names stay with that session.
    """
    session = kind + secrets.token_hex(5)
    SESSION.set(session)
    REMOTE_IP.set(ip)
    QUEUE_ID.set(None)
    return session


def set_queue_id(value: str | None) -> None:
    """The message the current context works on from now on."""
    QUEUE_ID.set(value)


@contextlib.contextmanager
def queue_id(value: str) -> Iterator[None]:
    """Lines logged inside the block carry ``queue_id=value``."""
    token = QUEUE_ID.set(value)
    try:
        yield
    finally:
        QUEUE_ID.reset(token)


def carry(func: Callable[..., _T], *args: object) -> Callable[[], _T]:
    """``func(*args)`` to run in another thread, in a copy of this context."""
    return functools.partial(contextvars.copy_context().run, func, *args)


def fields(**values: object) -> dict[str, object]:
    """``extra=`` for a log call: ``key=value`` pairs, in this order, before ``msg``."""
    return {"mailstead_fields": values}


def _line(record: logging.LogRecord) -> dict[str, object]:
    """The record's keys in line order: time, level, pid, logger, context, fields, msg."""
    own: Mapping[str, object] = getattr(record, "mailstead_fields", {})
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    out: dict[str, object] = {
        "time": f"{stamp}.{int(record.msecs):03d}Z",
        "level": record.levelname.lower(),
        "pid": record.process,
        "logger": record.name,
    }
    context = (SESSION.get(), REMOTE_IP.get(), QUEUE_ID.get())
    for key, current in zip(_CONTEXT, context, strict=True):
        value = own.get(key, current)  # a line's own value wins (outbound's queue_id)
        if value is not None:
            out[key] = value
    for key, value in own.items():
        if key not in out and value is not None:
            out[key] = value
    out["msg"] = record.getMessage()
    if record.exc_info:
        out["error"] = logging.Formatter().formatException(record.exc_info)
    return out


class LogfmtFormatter(logging.Formatter):
    """``key=value`` pairs on one line; a value with a space, quote, ``=`` or
    control character is quoted, and inside quotes ``\\``, ``"`` and control
    characters are escaped, so a peer's text can never start a line of its own."""

    def format(self, record: logging.LogRecord) -> str:
        return _once(record, "logfmt", _as_logfmt)


class JSONFormatter(logging.Formatter):
    """One JSON object per line, the same keys as logfmt's."""

    def format(self, record: logging.LogRecord) -> str:
        return _once(record, "json", _as_json)


def _as_logfmt(record: logging.LogRecord) -> str:
    return " ".join(f"{key}={_logfmt(value)}" for key, value in _line(record).items())


def _as_json(record: logging.LogRecord) -> str:
    return _printable(json.dumps(_line(record), ensure_ascii=False, default=str))


def _once(record: logging.LogRecord, kind: str, make: Callable[[logging.LogRecord], str]) -> str:
    # Each handler (stderr, the file, and the file's size check) formats the
    # record: the line is made once and kept on it.
    key = f"_mailstead_{kind}"
    line = record.__dict__.get(key)
    if line is None:
        line = record.__dict__[key] = make(record)
    return str(line)


# What makes a logfmt value need quotes (besides a character that is not printable).
_QUOTED = re.compile(r'[ "=\\]')


def _logfmt(value: object) -> str:
    text = str(value)
    if text and text.isprintable() and _QUOTED.search(text) is None:  # both in C
        return text
    return _printable(json.dumps(text, ensure_ascii=False))


def _printable(encoded: str) -> str:
    """JSON text with what ``json`` leaves raw but a terminal or ``splitlines``
    takes as a control (DEL, C1, U+2028 …) escaped as ``\\uXXXX``."""
    if encoded.isprintable():
        return encoded
    return "".join(c if c.isprintable() else _escaped(ord(c)) for c in encoded)


def _escaped(code: int) -> str:
    if code > 0xFFFF:  # RFC 8259 §7: a surrogate pair
        code -= 0x10000
        return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
    return f"\\u{code:04x}"


def parse_line(line: str) -> dict[str, str] | None:
    """A logfmt or JSON line as written here, its values as text; None if it is neither."""
    line = line.strip()
    if line.startswith("{"):
        try:
            data = json.loads(line)
        except ValueError:
            return None
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else None
    out: dict[str, str] = {}
    decoder = json.JSONDecoder()
    i, n = 0, len(line)
    while i < n:
        eq = line.find("=", i)
        if eq <= i or " " in line[i:eq]:
            return None
        key = line[i:eq]
        if line.startswith('"', eq + 1):
            try:
                value, i = decoder.raw_decode(line, eq + 1)
            except ValueError:
                return None
            out[key] = str(value)
        else:
            end = line.find(" ", eq + 1)
            end = n if end < 0 else end
            out[key], i = line[eq + 1 : end], end
        while i < n and line[i] == " ":
            i += 1
    return out or None


class SharedRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """Rotation by size that the worker processes share.

    Every process appends (``O_APPEND``: lines never overwrite each other);
    the one that finds the file full rotates it under a lock
    (``<file>.lock``), after checking that no other did first. The others
    notice the new file within a second (its inode changed) and reopen;
    their lines of that second land in the copy just rotated, which
    ``mailstead log`` reads as well.
    """

    _CHECK_EVERY = 1.0  # seconds between two looks at which file the path names

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        super().__init__(path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
        self._lock_path = f"{path}.lock"
        self._next_check = 0.0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            now = time.monotonic()
            if now >= self._next_check:
                self._next_check = now + self._CHECK_EVERY
                self._reopen_if_moved()
            if self.shouldRollover(record):
                with open(self._lock_path, "a") as lock:
                    fcntl.flock(lock, fcntl.LOCK_EX)
                    self._reopen_if_moved()  # another process may have rotated it
                    if self.shouldRollover(record):
                        self.doRollover()
            logging.FileHandler.emit(self, record)
        except OSError:
            self.handleError(record)

    def _reopen_if_moved(self) -> None:
        stream: IO[str] | None = self.stream
        if stream is None:
            return
        try:
            moved = os.stat(self.baseFilename).st_ino != os.fstat(stream.fileno()).st_ino
        except FileNotFoundError:
            moved = True
        if moved:
            stream.close()
            self.stream = self._open()


def setup(
    fmt: str = "logfmt",
    *,
    file: Path | None = None,
    max_bytes: int = 10 * 1024 * 1024,
    backups: int = 5,
    stream: IO[str] | None = None,
) -> None:
    """Send every ``mailstead`` line to stderr (journald takes it from there)
    and, with ``file``, append it there too for ``mailstead log``."""
    formatter: logging.Formatter = JSONFormatter() if fmt == "json" else LogfmtFormatter()
    handlers: list[logging.Handler] = [logging.StreamHandler(stream or sys.stderr)]
    if file is not None:
        file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        handlers.append(SharedRotatingFileHandler(file, max_bytes, backups))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    for handler in handlers:
        handler.setFormatter(formatter)
        root.addHandler(handler)
    root.setLevel(logging.INFO)
