"""IDLE across nodes on PostgreSQL: mail taken by one node reaches an IDLE session on another.

Two harness servers share the test's database. An IMAPClient session on
node A is in IDLE; smtplib hands node B a message; the ``EXISTS`` must
arrive well within a second of node B's ``250`` (a change notice through
LISTEN/NOTIFY; without one IDLE would read only every 5 s).
"""

from __future__ import annotations

import random
import smtplib
import statistics
import time
from pathlib import Path

from imapclient import IMAPClient

from mailstead.store.pg_notify import FALLBACK_POLL, shared_notices
from tests.e2e.harness import ServerHandle, client_tls_context, running_server

ALICE = "alice@example.test"
PASSWORD = "alice-pw"
ROUNDS = 8


def _send(server: ServerHandle, subject: str) -> None:
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as smtp:
        smtp.sendmail(
            "carol@remote.test",
            [ALICE],
            f"From: carol@remote.test\r\nTo: {ALICE}\r\nSubject: {subject}\r\n\r\nhi\r\n",
        )


def test_idle_on_one_node_hears_mail_taken_by_the_other_within_a_second(
    tmp_path: Path, pg_dsn: str
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with (
        running_server(tmp_path / "a", dsn=pg_dsn) as a,
        running_server(tmp_path / "b", dsn=pg_dsn) as b,
    ):
        _send(b, "before")
        imap = IMAPClient("127.0.0.1", a.ports["imaps"], ssl_context=client_tls_context())
        imap.login(ALICE, PASSWORD)
        imap.select_folder("INBOX")
        latencies = []
        imap.idle()
        try:
            # The first IDLE look starts this process's listener.
            notices = shared_notices(pg_dsn)
            deadline = time.monotonic() + 5
            while not notices.listening and time.monotonic() < deadline:
                imap.idle_check(timeout=0.05)
            assert notices.listening
            for n in range(2, 2 + ROUNDS):
                # At a random moment of the session's look interval.
                pause = time.monotonic() + random.uniform(0, 0.5)
                while time.monotonic() < pause:
                    imap.idle_check(timeout=0.02)
                _send(b, f"during {n}")  # S: 250 -- committed
                sent = time.monotonic()
                responses: list[tuple[int | bytes, ...]] = []
                while (n, b"EXISTS") not in responses and time.monotonic() - sent < FALLBACK_POLL:
                    responses += imap.idle_check(timeout=0.02)
                latencies.append(time.monotonic() - sent)
                assert (n, b"EXISTS") in responses, responses
        finally:
            imap.idle_done()
        print(
            f"IDLE across nodes: median {statistics.median(latencies) * 1000:.0f} ms,"
            f" max {max(latencies) * 1000:.0f} ms over {ROUNDS}"
        )
        assert max(latencies) < 1.0, latencies
        assert imap.search(["ALL"]) == list(range(1, 2 + ROUNDS))
        imap.logout()
