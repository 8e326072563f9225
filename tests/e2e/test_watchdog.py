"""The supervisor's watchdog and shutdown deadline, against `mailstead serve`.

A worker stopped with SIGSTOP beats no more, exactly like one whose event
loop is stuck in a call that never returns.
"""

from __future__ import annotations

import email
import imaplib
import os
import poplib
import signal
import time
from pathlib import Path

from tests.e2e.harness import USERS, client_tls_context
from tests.e2e.process import ALL_ROLES, ServerProcess
from tests.e2e.test_workers import _send, _wait_for, _workers

ALICE = "alice@example.test"


def _every_protocol_serves(server: ServerProcess, subject: str) -> None:
    _send(server, subject)
    tls = client_tls_context()
    imap = imaplib.IMAP4_SSL("127.0.0.1", server.ports["imaps"], ssl_context=tls, timeout=5)
    imap.login(ALICE, USERS[ALICE])
    imap.select("INBOX")
    imap.logout()
    pop = poplib.POP3_SSL("127.0.0.1", server.ports["pop3s"], context=tls, timeout=5)
    pop.user(ALICE)
    pop.pass_(USERS[ALICE])
    pop.quit()


def test_a_blocked_worker_is_killed_and_replaced_within_the_limit(tmp_path: Path) -> None:
    limit = 2.0
    extra = '[limits]\nwatchdog_timeout = "2s"\n'
    with ServerProcess(tmp_path, workers=2, extra=extra, roles=ALL_ROLES) as server:
        assert server.proc is not None
        parent = server.proc.pid
        _wait_for(lambda: len(_workers(parent)) == 2)
        for n in range(6):
            _send(server, f"acknowledged {n}")
        victim = min(_workers(parent))
        os.kill(victim, signal.SIGSTOP)
        stopped = time.monotonic()
        # The other worker accepts every new connection meanwhile.
        _every_protocol_serves(server, "while one worker is frozen")
        _wait_for(lambda: victim not in _workers(parent) and len(_workers(parent)) == 2)
        assert time.monotonic() - stopped < limit + 2.0
        log = server.log_path.read_text()
        assert f"(pid {victim}) blocked for" in log
        _every_protocol_serves(server, "after the restart")
        subjects = {email.message_from_bytes(m)["Subject"] for m in _messages(server)}
        # nothing acknowledged was lost with the killed worker
        assert {f"acknowledged {n}" for n in range(6)} <= subjects


def _messages(server: ServerProcess) -> list[bytes]:
    maildir = server.handle.maildir(ALICE)
    return [p.read_bytes() for sub in ("new", "cur") for p in sorted((maildir / sub).iterdir())]


def _catches(pid: int, sig: signal.Signals) -> bool:
    status = Path(f"/proc/{pid}/status").read_text()
    caught = int(status.split("SigCgt:")[1].split()[0], 16)
    return bool(caught & (1 << (sig - 1)))


def test_sigterm_ends_a_server_whose_worker_is_frozen(tmp_path: Path) -> None:
    extra = '[limits]\nwatchdog_timeout = "1m"\nshutdown_timeout = "2s"\n'
    server = ServerProcess(tmp_path, workers=2, extra=extra, roles=ALL_ROLES)
    server.start()
    assert server.proc is not None
    parent = server.proc.pid
    _wait_for(lambda: len(_workers(parent)) == 2)
    frozen = min(_workers(parent))
    # Until its loop handles SIGTERM, a stopped worker would simply die of it.
    _wait_for(lambda: _catches(frozen, signal.SIGTERM))
    os.kill(frozen, signal.SIGSTOP)
    asked = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    server.proc.wait(15)
    assert time.monotonic() - asked < 8.0
    assert f"(pid {frozen}) still running 2 s after SIGTERM" in server.log_path.read_text()
    assert not Path(f"/proc/{frozen}").exists() or "Z" in Path(f"/proc/{frozen}/stat").read_text()
