"""Many IMAP clients on one mailbox across worker processes, each checking every reply.

The short version of ``bench/imap_stress.py`` (which says what each client
checks): a few seconds of random SELECT, FETCH, STORE, EXPUNGE, APPEND,
COPY, MOVE, SEARCH and IDLE by six clients against ``mailstead serve``
with two workers, while mail arrives over SMTP. RFC 2180 §4.1 and RFC 9051
§7.5.1: not one NO or BAD to these valid commands, no disconnect, and no
reply that contradicts a client's view of the mailbox.
"""

from __future__ import annotations

import asyncio
import smtplib
import sys
import threading
from pathlib import Path

from tests.e2e.harness import USERS
from tests.e2e.process import ALL_ROLES, ServerProcess

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from imap_stress import stress

ALICE = "alice@example.test"


def _deliver(port: int, count: int, stop: threading.Event | None = None) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        for i in range(count):
            if stop is not None and stop.wait(0.2):
                return
            smtp.sendmail("carol@remote.test", [ALICE], f"Subject: m{i}\r\n\r\nbody {i}\r\n")


def test_clients_in_two_workers_keep_consistent_views(tmp_path: Path) -> None:
    with ServerProcess(tmp_path, workers=2, roles=ALL_ROLES) as server:
        _deliver(server.ports["smtp"], 20)
        stop = threading.Event()
        arriving = threading.Thread(target=_deliver, args=(server.ports["smtp"], 40, stop))
        arriving.start()
        try:
            stats, _ = asyncio.run(
                stress(server.ports["imaps"], (ALICE, USERS[ALICE]), clients=6, seconds=6, seed=3)
            )
        finally:
            stop.set()
            arriving.join()
        log = server.log_tail(200)
    assert stats.commands > 100, stats
    assert (stats.no, stats.bad, stats.disconnects, stats.mismatches) == (0, 0, 0, 0), (
        stats.examples
    )
    assert "Traceback" not in log, log
