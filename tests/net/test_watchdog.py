"""The watchdog's parts: notes that never carry arguments, and the kill of a blocked loop."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from mailstead.net.watchdog import NOTE_SIZE, Heartbeats, Pulse, command_name
from mailstead.proto.imap.server import COMMAND_NAMES as IMAP
from mailstead.proto.smtp.server import COMMAND_NAMES as SMTP


@pytest.mark.parametrize(
    ("line", "word", "known", "name"),
    [
        (b"a1 LOGIN alice secret\r\n", 1, IMAP, "LOGIN"),
        (b"a1 uid fetch 1:* FLAGS\r\n", 1, IMAP, "UID"),
        (b"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n", 0, SMTP, "AUTH"),
        (b"AGFsaWNlAHNlY3JldA==\r\n", 0, SMTP, "?"),  # a SASL response: never noted
        (b"a1\r\n", 1, IMAP, "?"),
        (b"", 0, SMTP, "?"),
        (b"Subject: hello\r\n", 0, SMTP, "?"),  # message data
    ],
)
def test_a_note_names_a_known_command_and_nothing_else(
    line: bytes, word: int, known: frozenset[bytes], name: str
) -> None:
    assert command_name(line, word, known) == name


def test_notes_are_per_worker_and_cut_to_size() -> None:
    beats = Heartbeats(2)
    Pulse(beats, 0, 1.0).note("IMAP", "192.0.2.1", "LOGIN")
    Pulse(beats, 1, 1.0).note("POP3", "x" * 500, "CAPA")
    assert beats.last_note(0) == "IMAP [192.0.2.1] LOGIN"
    assert len(beats.last_note(1)) == NOTE_SIZE - 1
    beats.reset(0)
    assert beats.last_note(0) == ""


# A supervisor in its own process (it forks), with one worker whose loop
# beats, notes a command, then blocks in a call that never returns.
_BLOCKING_SERVER = textwrap.dedent(
    """
    import asyncio, logging, signal, sys, threading
    from mailstead.net import watchdog
    from mailstead.net.supervisor import Supervisor
    from mailstead.net.watchdog import Heartbeats, Pulse

    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
    beats = Heartbeats(1)
    starts = 0

    async def worker(index):
        pulse = Pulse(beats, index, 0.1)
        watchdog.install(pulse)
        pulse.start(asyncio.get_running_loop())
        await asyncio.sleep(0.3)
        watchdog.note("IMAP", "127.0.0.9", "LOGIN")
        while True:  # a parser that never returns
            pass

    def on_exit(index):
        global starts
        starts += 1
        if starts == 2:  # replaced once: enough
            signal.raise_signal(signal.SIGTERM)

    Supervisor(
        1, lambda index: asyncio.run(worker(index)), on_exit=on_exit,
        heartbeats=beats, block_limit=1.0, shutdown_timeout=1.0,
    ).run()
    print("supervisor exited")
    """
)


def test_a_blocked_worker_is_killed_replaced_and_named_in_the_log() -> None:
    run = subprocess.run(
        [sys.executable, "-c", _BLOCKING_SERVER], capture_output=True, text=True, timeout=60
    )
    out = run.stdout
    assert run.returncode == 0, run.stderr
    kills = [line for line in out.splitlines() if line.startswith("watchdog:")]
    assert len(kills) == 2, out
    assert "blocked for 1." in kills[0]
    assert "last in: IMAP [127.0.0.9] LOGIN; killing it" in kills[0]
    assert "restarting" in out
    assert out.rstrip().endswith("supervisor exited")
