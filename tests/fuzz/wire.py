"""What every protocol fuzz test shares: streams, their mutations, reads, a watchdog.

A fuzz case is what one peer sends in one connection: a stream built from
real commands (or replies) of the protocol, or such a stream mutated
(octets flipped, inserted, deleted, repeated; CR, LF, NUL, quotes and
brackets injected; numbers made huge; the stream truncated). It reaches the
engine cut into reads at arbitrary places, and the peer may close after any
octet (:class:`Case`). The engine tests then drive the engine the way its
asyncio session does and check what it says.
"""

from __future__ import annotations

import itertools
import re
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import TypeVar

from hypothesis import strategies as st

T = TypeVar("T")

# Per example: hypothesis fails an example slower than this (a loop that
# ends, but late), and the watchdog one that does not end at all.
DEADLINE_MS = 2000
HANG_SECONDS = 10.0
# However a stream is cut, an engine yields at most this many events per
# octet fed to it, plus a constant per read: more means it spins.
EVENTS_PER_OCTET = 1
EVENTS_PER_READ = 8

# Octets that mean something to a line protocol or its parser.
_INJECT = st.sampled_from(
    [
        b"\r",
        b"\n",
        b"\r\n",
        b"\0",
        b" ",
        b"\t",
        b'"',
        b"\\",
        b"{",
        b"}",
        b"{5}\r\n",
        b"{3+}\r\n",
        b"~{2}\r\n",
        b"[",
        b"]",
        b"(",
        b")",
        b"<",
        b">",
        b"*",
        b"+",
        b"=",
        b":",
        b".",
        b"\r\n.\r\n",
        b"\x80",
        b"\xff",
        b"\xc4\xb1",  # dotless i: "ı".upper() == "I"
    ]
)
# Numbers that overflow a field, a 32- or 64-bit counter, or a limit.
_HUGE = st.sampled_from(
    [
        b"0",
        b"-1",
        b"4294967295",
        b"4294967296",
        b"18446744073709551615",
        b"18446744073709551616",
        b"99999999999999999999999",
        b"\xef\xbc\x95",  # FULLWIDTH DIGIT FIVE: isdigit() but not ASCII
    ]
)
_DIGITS = re.compile(rb"[0-9]+")


@st.composite
def mutated(draw: st.DrawFn, valid: st.SearchStrategy[bytes]) -> bytes:
    """``valid`` with one to six mutations, each at a place hypothesis picks."""
    data = bytearray(draw(valid))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(
            st.sampled_from(
                ["flip", "inject", "insert", "delete", "repeat", "number", "truncate", "bare-lf"]
            )
        )
        at = draw(st.integers(0, len(data)))
        if op == "flip" and at < len(data):
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "inject":
            data[at:at] = draw(_INJECT)
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 16))]
        elif op == "repeat":
            data[at:at] = data[at : at + draw(st.integers(1, 32))] * draw(st.integers(1, 4))
        elif op == "number":
            m = _DIGITS.search(data, at)
            if m is not None:
                data[m.start() : m.end()] = draw(_HUGE)
            else:
                data[at:at] = draw(_HUGE)
        elif op == "truncate":
            del data[at:]
        elif op == "bare-lf":
            data = bytearray(data.replace(b"\r\n", b"\n"))
    return bytes(data)


@dataclass(frozen=True)
class Case:
    """One connection's input: the octets, where reads end, where the peer closes."""

    data: bytes
    cuts: tuple[int, ...]
    stop: int | None  # None: everything is sent

    def reads(self) -> list[bytes]:
        """The reads the engine sees, up to the close."""
        data = self.data if self.stop is None else self.data[: self.stop % (len(self.data) + 1)]
        bounds = sorted({c % (len(data) + 1) for c in self.cuts} | {0, len(data)})
        return [data[a:b] for a, b in itertools.pairwise(bounds) if b > a]


def cases(
    stream: st.SearchStrategy[bytes], barrier: bytes | None = None
) -> st.SearchStrategy[Case]:
    """``stream`` in arbitrary reads, closed after any octet (or, mostly, not at all).

    A read always ends after ``barrier``: a real client sends nothing behind
    STARTTLS until the handshake (RFC 3207 §4.2), and the engine drops what it does.
    """

    def with_barriers(data: bytes, cuts: list[int], stop: int | None) -> Case:
        if barrier:
            cuts += [m.end() for m in re.finditer(re.escape(barrier), data)]
        return Case(data, tuple(cuts), stop)

    return st.builds(
        with_barriers,
        stream,
        st.lists(st.integers(0, 1 << 16), max_size=12),
        st.one_of(st.none(), st.none(), st.integers(0, 1 << 16)),
    )


def weighted(*branches: tuple[int, st.SearchStrategy[T]]) -> st.SearchStrategy[T]:
    """One of ``branches``, each drawn as often as its weight says.

    (``st.one_of`` flattens nested ``one_of``s, so a branch that is itself a
    choice of five would count five times.)
    """
    pool = [strategy for weight, strategy in branches for _ in range(weight)]
    return st.sampled_from(pool).flatmap(lambda strategy: strategy)


def ascii_text(max_size: int = 12, alphabet: str = "abcxyz019.-_") -> st.SearchStrategy[str]:
    return st.text(alphabet=alphabet, min_size=1, max_size=max_size)


class Hang(Exception):
    """An engine call did not return within :data:`HANG_SECONDS`."""


@contextmanager
def watchdog(seconds: float = HANG_SECONDS) -> Iterator[None]:
    """Turn an engine call that never returns into a failure (Unix, main thread).

    The regex engine checks for signals too, so catastrophic backtracking
    is caught as well as a Python loop.
    """
    if not hasattr(signal, "setitimer") or threading.current_thread() is not (
        threading.main_thread()
    ):
        yield
        return

    def expired(signum: int, frame: FrameType | None) -> None:
        raise Hang(f"no return within {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def event_budget(read: bytes) -> int:
    return EVENTS_PER_OCTET * len(read) + EVENTS_PER_READ


def crlf_lines(out: bytes) -> list[bytes]:
    """``out`` as lines; each must end in CRLF and hold no other CR or LF."""
    assert not out or out.endswith(b"\r\n"), f"output does not end in CRLF: {out[-80:]!r}"
    lines = out.split(b"\r\n")[:-1]
    for line in lines:
        assert b"\r" not in line and b"\n" not in line, f"bare CR or LF in {line!r}"
    return lines
