"""Heartbeats from the workers' event loops, for the supervisor's watchdog.

Mailstead multiplexes thousands of sessions on one event loop per worker, so
one call that never returns (a regular expression that backtracks, a parser
that stops consuming) would stop every session of that worker for good.
Postfix and Dovecot are safe from such bugs by construction, with a process
per session or per few sessions under a master process. Here each worker's
loop writes the time into shared memory every ``interval`` seconds, and the
supervisor kills and replaces a worker whose last beat is older than the
limit (``[limits] watchdog_timeout``).

Beside the beat, each worker keeps one short note of the input it is working
on: protocol, client address and command name, written by the sessions just
before they hand fresh bytes to the protocol. The loop is single-threaded,
so when it blocks, the last note names the session that blocked it. Only a
command *name* from a known list is written, never arguments: a password or
a SASL response must not reach the log.
"""

from __future__ import annotations

import asyncio
import ctypes
import multiprocessing
import time

# Octets of one worker's note; longer notes are cut.
NOTE_SIZE = 120


class Heartbeats:
    """Owns the shared memory of every worker's beat and note (made before fork)."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._beats = multiprocessing.RawArray(ctypes.c_double, workers)
        self._notes = multiprocessing.RawArray(ctypes.c_char, workers * NOTE_SIZE)

    def reset(self, index: int) -> None:
        """A new worker starts with a fresh beat and no note (called by the supervisor)."""
        self._beats[index] = time.monotonic()
        self.note(index, b"")

    def beat(self, index: int) -> None:
        # CLOCK_MONOTONIC is one clock for every process of the machine.
        self._beats[index] = time.monotonic()

    def silence(self, index: int) -> float:
        """Seconds since worker ``index`` last beat."""
        return time.monotonic() - self._beats[index]

    def note(self, index: int, text: bytes) -> None:
        text = text[: NOTE_SIZE - 1] + b"\0"
        ctypes.memmove(ctypes.addressof(self._notes) + index * NOTE_SIZE, text, len(text))

    def last_note(self, index: int) -> str:
        raw = ctypes.string_at(ctypes.addressof(self._notes) + index * NOTE_SIZE, NOTE_SIZE)
        raw = raw.split(b"\0", 1)[0]
        return raw.decode("ascii", "replace")


class Pulse:
    """The worker's side: beats from its event loop and notes from its sessions."""

    def __init__(self, heartbeats: Heartbeats, index: int, interval: float) -> None:
        self.heartbeats = heartbeats
        self.index = index
        self.interval = interval
        self._timer: asyncio.TimerHandle | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.heartbeats.beat(self.index)
        self._timer = loop.call_later(self.interval, self.start, loop)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def note(self, protocol: str, ip: str, command: str) -> None:
        self.heartbeats.note(self.index, f"{protocol} [{ip}] {command}".encode("ascii", "replace"))


# This process's pulse: set in a worker after fork, None elsewhere (tests,
# the supervisor), where notes cost one comparison and go nowhere.
_pulse: Pulse | None = None


def install(pulse: Pulse | None) -> None:
    global _pulse
    _pulse = pulse


def note(protocol: str, ip: str, command: str) -> None:
    """Record what this worker's loop is about to work on (see the module docstring)."""
    if _pulse is not None:
        _pulse.note(protocol, ip, command)


def command_name(line: bytes, position: int, known: frozenset[bytes]) -> str:
    """The ``position``-th word of ``line`` upper-cased, if it is a ``known`` command; else "?".

    ``line`` is the start of fresh input; anything not on the list (message
    data, a base64 SASL response, garbage) is "?", so no secret is noted.
    """
    words = line[:64].split(None, position + 1)
    if len(words) <= position:
        return "?"
    word = words[position].upper()
    return word.decode("ascii") if word in known else "?"
