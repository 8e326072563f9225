"""The C:/S: transcript player every protocol engine's tests share.

A transcript is written as the RFCs write them::

    S: 220 mx.example.test ESMTP Mailstead
    C: EHLO client.example
    S: 250-mx.example.test greets client.example

One side is the peer, played by the test; the other is the engine under
test (``us``: ``S`` for the SMTP, POP3 and IMAP servers, ``C`` for the SMTP
client). Consecutive peer lines go to the engine in one ``receive_data``
call, so a run of them is a pipelined batch (or one TCP read); the engine's
lines that follow must be, byte for byte with CRLF, everything it has to
send after working through that batch. A peer group followed by none of
the engine's lines asserts that it said nothing; what is waiting before the
first peer line (a greeting) must be the first group of the engine's lines.
A mismatch fails with a line diff and the raw bytes.
"""

from __future__ import annotations

import difflib
import textwrap
from collections.abc import Callable
from typing import Protocol

Steps = list[tuple[str, list[str]]]


class Wire(Protocol):
    """The bytes side of a sans-IO engine."""

    def receive_data(self, data: bytes) -> None: ...

    def data_to_send(self) -> bytes: ...


def parse(script: str) -> Steps:
    """The transcript's lines grouped into runs of one side: [("C", [...]), ("S", [...])]."""
    steps: Steps = []
    for raw in textwrap.dedent(script).splitlines():
        if not raw.strip():
            continue
        side, sep, text = raw.partition(":")
        if side not in ("C", "S") or not sep:
            raise ValueError(f"transcript line must start with C: or S: - {raw!r}")
        text = text[1:] if text.startswith(" ") else text
        if steps and steps[-1][0] == side:
            steps[-1][1].append(text)
        else:
            steps.append((side, [text]))
    return steps


def _shown(line: bytes) -> str:
    text = line.decode("utf-8", "backslashreplace")
    return text if text.isprintable() else repr(text)


def expect(us: str, lines: list[str], said: bytes) -> None:
    """Assert that ``said`` is exactly ``lines``, each ended by CRLF."""
    expected = b"".join(f"{line}\r\n".encode() for line in lines)
    if said == expected:
        return
    *complete, rest = said.split(b"\r\n")
    got = [f"{us}: {_shown(line)}" for line in complete]
    if rest:
        got.append(f"{us}: {_shown(rest)}  (no CRLF)")
    want = [f"{us}: {line}" for line in lines]
    who = "client" if us == "C" else "server"
    diff = "\n".join(difflib.ndiff(want, got)) or "(nothing either way)"
    raise AssertionError(
        f"{who} said something else (- transcript, + {who}):\n{diff}\nraw: {said!r}"
    )


def play(
    script: str, *, us: str, output: Callable[[], bytes], feed: Callable[[bytes], bytes]
) -> None:
    """Play ``script`` against the side ``us`` ("S" or "C") byte for byte.

    ``output()`` is what the engine says unprompted; ``feed(data)`` gives it
    the peer's bytes and returns everything it said in answer.
    """
    steps = parse(script)
    said = output()
    if not steps or steps[0][0] != us:
        expect(us, [], said)
    for i, (side, lines) in enumerate(steps):
        if side != us:
            said = feed(b"".join(f"{line}\r\n".encode() for line in lines))
            if i + 1 == len(steps):
                expect(us, [], said)
        else:
            expect(us, lines, said)


class Player:
    """Base of one protocol's transcript driver: owns the engine's bytes
    side; a subclass answers the engine's events in :meth:`drive`."""

    us = "S"

    def __init__(self, wire: Wire) -> None:
        self._wire = wire

    def drive(self) -> None:
        """Take the engine's events until it needs bytes, answering them."""
        raise NotImplementedError

    def feed(self, data: bytes) -> bytes:
        """Send raw bytes, let the engine work, return everything it said."""
        self._wire.receive_data(data)
        self.drive()
        return self._wire.data_to_send()

    def output(self) -> bytes:
        """What the engine has to say without new input (a greeting, at first)."""
        self.drive()
        return self._wire.data_to_send()

    def run(self, script: str) -> None:
        """Play a C:/S: transcript and assert each batch of the engine byte for byte."""
        play(script, us=self.us, output=self.output, feed=self.feed)
