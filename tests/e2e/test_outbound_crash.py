"""SIGKILL during outbound delivery: nothing queued is lost.

Our server (a real `mailstead serve` with two workers) has 600 messages
queued for remote.test, whose MX is a second Mailstead on 127.0.0.3. It is
killed at random moments while it hands them over and restarted each time;
in the end every message has arrived, and only the few whose outcome was
not yet committed when the kill came may have arrived twice.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path

from mailstead.config import load_config
from mailstead.mta.envelope import QueuedRecipient
from mailstead.mta.outbound import DESTINATION_CONCURRENCY
from mailstead.mta.queue import Queue
from mailstead.testing.dns import DNSServer
from tests.e2e.harness import running_config
from tests.e2e.process import ServerProcess
from tests.e2e.test_outbound import _config, _free_port_on

MESSAGES = 600
KILLS = 4  # at least; more (up to MAX_KILLS) until one lands mid-delivery
MAX_KILLS = 10


def _message(n: int) -> bytes:
    return (
        # From a domain that is not ours: no DKIM signing, so the kills land
        # while mail flows rather than while it is being signed.
        f"From: alice@elsewhere.test\r\nTo: bob@remote.test\r\nSubject: {n}\r\n"
        f"Message-ID: <crash-{n}@example.test>\r\n\r\n" + "body line\r\n" * 200
    ).encode()


def _arrived(maildir: Path) -> Counter[str]:
    seen: Counter[str] = Counter()
    for path in (maildir / "new").glob("*"):
        for line in path.read_bytes().split(b"\n"):
            if line.startswith(b"Message-ID: <crash-"):
                seen[line.decode().split("<", 1)[1].rstrip(">")] += 1
                break
    return seen


def test_sigkill_during_delivery_loses_nothing(tmp_path: Path) -> None:
    mx_port = _free_port_on("127.0.0.3")
    zones = {
        "remote.test": {"MX": [(10, "mx.remote.test")]},
        "mx.remote.test": {"A": ["127.0.0.3"]},
    }
    rng = random.Random(7)
    with DNSServer(zones) as (dns_host, dns_port):
        theirs = load_config(
            _config(
                tmp_path / "theirs",
                domain="remote.test",
                smtp=f"127.0.0.3:{mx_port}",
                mx_port=mx_port,
                dns=f"{dns_host}:{dns_port}",
                users={"bob@remote.test": "bob-pw"},
            )
        )
        (tmp_path / "ours").mkdir()
        ours = ServerProcess(
            tmp_path / "ours",
            workers=2,
            delivery=f'dns_servers = ["{dns_host}:{dns_port}"]\nsmtp_port = {mx_port}\n'
            'retry_schedule = ["1s"]\n',
        )
        with Queue(ours.config.data_dir) as queue:
            for n in range(MESSAGES):
                queue.enqueue(
                    "alice@example.test",
                    [QueuedRecipient("bob@remote.test")],
                    [_message(n)],
                    received_at=time.time(),
                )
        maildir = theirs.mail_root / "remote.test" / "bob" / "Maildir"
        with running_config(theirs):
            ours.start()
            try:
                mid_delivery = kills = 0
                while kills < KILLS or (not mid_delivery and kills < MAX_KILLS):
                    kills += 1
                    time.sleep(rng.uniform(0.1, 0.5))
                    ours.kill()
                    delivered = len(_arrived(maildir))
                    mid_delivery += 0 < delivered < MESSAGES
                    ours.start()  # again, on the same queue
                deadline = time.monotonic() + 60
                while True:
                    with Queue(ours.config.data_dir) as queue:
                        if not queue.list():
                            break
                    assert time.monotonic() < deadline, "the queue never emptied"
                    time.sleep(0.1)
            finally:
                ours.stop()
            seen = _arrived(maildir)
    assert mid_delivery, "no kill landed while mail was being handed over"
    assert set(seen) == {f"crash-{n}@example.test" for n in range(MESSAGES)}
    duplicates = sum(count - 1 for count in seen.values())
    # A kill can repeat, per connection of each of the 2 workers, the message
    # whose 250 was on its way and the one answered but not yet committed.
    assert duplicates <= kills * 2 * DESTINATION_CONCURRENCY * 2
