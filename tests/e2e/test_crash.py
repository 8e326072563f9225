"""Durability under SIGKILL (docs/durability.md): what got a 250 is on disk, once.

A client sends messages one after another while the real ``mailstead serve``
process is killed at random points (between commands, in the middle of
DATA, right after the final dot, right after the 250, or by a timer at any
instant) and restarted on the same ports and data directory. At the end:

* every message whose 250 the client read is in ``new/`` of each of its
  mailboxes exactly once;
* a message whose final dot was sent but whose reply never came may be
  there or not, but at most once;
* nothing else is there, and every file in ``new/`` is whole: it parses,
  ends with the message's own trailer line and matches its ``,S=`` size.
  Files left in ``tmp/`` are allowed and never counted.
"""

from __future__ import annotations

import contextlib
import random
import re
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from email import message_from_bytes
from email.policy import compat32
from pathlib import Path

import pytest

from tests.e2e.process import ServerProcess

SEED = 20240515
CYCLES = 24
MAILBOXES = ("alice@example.test", "bob@example.test")
KILL_POINTS = ("between_commands", "mid_data", "after_dot", "after_250", "timer")


class ServerGone(Exception):
    """The connection broke: the server died under us."""


class RawClient:
    """A minimal blocking SMTP client over one socket, for exact control of timing."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError as exc:
            raise ServerGone(str(exc)) from exc

    def reply(self) -> tuple[int, bytes]:
        """Read one (possibly multi-line) reply."""
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                try:
                    chunk = self.sock.recv(65536)
                except OSError as exc:
                    raise ServerGone(str(exc)) from exc
                if not chunk:
                    raise ServerGone("EOF")
                self.buf += chunk
            line, self.buf = self.buf.split(b"\r\n", 1)
            lines.append(line)
            if line[3:4] != b"-":
                return int(line[:3]), b"\n".join(lines)

    def command(self, line: bytes, expect: int) -> None:
        self.send(line + b"\r\n")
        code, text = self.reply()
        assert code == expect, (line, code, text)


@dataclass
class Ledger:
    """What the client knows about each message it tried to send."""

    recipients: dict[str, tuple[str, ...]] = field(default_factory=dict)
    acked: set[str] = field(default_factory=set)  # the 250 was read
    in_doubt: set[str] = field(default_factory=set)  # final dot sent, no reply seen
    bodies: dict[str, bytes] = field(default_factory=dict)


def _message(msgid: str, rng: random.Random) -> bytes:
    # Sizes from one line to a few hundred KiB, so a kill can land mid-DATA.
    lines = rng.choice((1, 50, 2000, 8000))
    body = b"".join(b"line %d of %s\r\n" % (n, msgid.encode()) for n in range(lines))
    return (
        f"From: crash@remote.test\r\nSubject: crash test\r\nMessage-ID: <{msgid}>\r\n\r\n".encode()
        + body
        + f"END {msgid}\r\n".encode()
    )


def _send_one(
    client: RawClient,
    ledger: Ledger,
    msgid: str,
    rng: random.Random,
    kill_at: str | None,
    server: ServerProcess,
) -> None:
    """One transaction; if ``kill_at`` names a point in it, SIGKILL the server there."""
    rcpts = rng.choice((MAILBOXES[:1], MAILBOXES[1:], MAILBOXES))
    data = _message(msgid, rng)
    ledger.recipients[msgid] = rcpts
    ledger.bodies[msgid] = data
    client.command(b"MAIL FROM:<crash@remote.test>", 250)
    if kill_at == "between_commands" and rng.random() < 0.5:
        server.kill()
        raise ServerGone("killed after MAIL")
    for rcpt in rcpts:
        client.command(b"RCPT TO:<%s>" % rcpt.encode(), 250)
    if kill_at == "between_commands":
        server.kill()
        raise ServerGone("killed after RCPT")
    client.command(b"DATA", 354)
    if kill_at == "mid_data":
        client.send(data[: rng.randrange(len(data))])
        time.sleep(0.01)  # let the server take some of it in
        server.kill()
        raise ServerGone("killed mid-DATA")
    client.send(data)
    client.send(b".\r\n")
    ledger.in_doubt.add(msgid)
    if kill_at == "after_dot":
        server.kill()
    code, text = client.reply()
    assert code == 250, text
    ledger.in_doubt.discard(msgid)
    ledger.acked.add(msgid)
    if kill_at == "after_250":
        server.kill()


def _run_cycle(server: ServerProcess, ledger: Ledger, rng: random.Random, cycle: int) -> None:
    # Every kill point once, then a random one per cycle.
    kill_at = KILL_POINTS[cycle] if cycle < len(KILL_POINTS) else rng.choice(KILL_POINTS)
    before = rng.randint(0, 3)  # whole messages before the one that gets killed
    timer = None
    if kill_at == "timer":
        timer = threading.Timer(rng.uniform(0.0, 0.25), server.kill)
    client = RawClient(server.ports["smtp"])
    try:
        code, _ = client.reply()
        assert code == 220
        client.command(b"EHLO crash.remote.test", 250)
        if timer is not None:
            timer.start()
        n = 0
        while True:
            msgid = f"c{cycle}.m{n}@crash.test"
            point = kill_at if n == before and kill_at != "timer" else None
            _send_one(client, ledger, msgid, rng, point, server)
            n += 1
            if kill_at != "timer" and n > before:
                # The kill came after the 250 (after_250): the next command fails.
                client.command(b"NOOP", 250)
    except ServerGone:
        pass
    finally:
        client.close()
        if timer is not None:
            timer.join()
    assert not server.running, "the server should have been killed in this cycle"


def _stored(server: ServerProcess) -> dict[str, list[tuple[str, Path, bytes]]]:
    """Message-ID -> [(mailbox, file, content)] over every mailbox's ``new/``."""
    found: dict[str, list[tuple[str, Path, bytes]]] = {}
    for mailbox in MAILBOXES:
        new = server.handle.maildir(mailbox) / "new"
        if not new.exists():
            continue
        for path in sorted(new.iterdir()):
            content = path.read_bytes()
            size = re.search(r",S=(\d+)", path.name)
            assert size is not None, path.name
            assert int(size.group(1)) == len(content), f"{path.name}: size differs from name"
            msg = message_from_bytes(content, policy=compat32)
            msgid = (msg["Message-ID"] or "").strip("<> ")
            assert msgid, f"{path}: no Message-ID, half-written?"
            found.setdefault(msgid, []).append((mailbox, path, content))
    return found


@pytest.mark.slow
def test_sigkill_never_loses_or_duplicates_acknowledged_mail(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    ledger = Ledger()
    server = ServerProcess(tmp_path)
    started = time.monotonic()
    try:
        for cycle in range(CYCLES):
            server.start()
            _run_cycle(server, ledger, rng, cycle)
            if time.monotonic() - started > 45:
                break
        # One clean run at the end: the restarted server still takes mail.
        server.start()
        client = RawClient(server.ports["smtp"])
        assert client.reply()[0] == 220
        client.command(b"EHLO crash.remote.test", 250)
        _send_one(client, ledger, "final@crash.test", rng, None, server)
        client.close()
    finally:
        server.stop()

    stored = _stored(server)
    assert len(ledger.acked) >= CYCLES, "too few messages acknowledged to mean anything"
    assert set(stored) <= set(ledger.recipients), "a message nobody sent is in new/"
    for msgid, copies in stored.items():
        mailboxes = Counter(mailbox for mailbox, _, _ in copies)
        assert set(mailboxes) <= set(ledger.recipients[msgid]), f"{msgid}: wrong mailbox"
        duplicated = [m for m, n in mailboxes.items() if n > 1]
        assert not duplicated, f"{msgid} stored twice in {duplicated}"
        assert msgid in ledger.acked or msgid in ledger.in_doubt, (
            f"{msgid} stored although its final dot was never sent"
        )
        for mailbox, path, content in copies:
            # The whole body, with LF line ends, and nothing after it.
            body = ledger.bodies[msgid].replace(b"\r\n", b"\n")
            assert content.endswith(body), f"{path} ({mailbox}) is not the complete message"
    for msgid in ledger.acked:
        for mailbox in ledger.recipients[msgid]:
            copies = [c for c in stored.get(msgid, []) if c[0] == mailbox]
            assert len(copies) == 1, f"acknowledged {msgid} missing from {mailbox}"
