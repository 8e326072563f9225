"""sendmail, queue hold and queue release against a running outbound MTA.

Our server for example.test (127.0.0.2) and a second Mailstead for
other.test (127.0.0.3, its backup MX; the primary 127.0.0.4 is dead), with
the test's own DNS server: the world of tests/e2e/test_outbound.py. The
message goes in through the `sendmail` command before our server starts,
and is held; the running server must leave it alone until it is released.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from mailstead.config import load_config
from mailstead.mta.queue import Queue
from mailstead.testing.dns import DNSServer
from tests.e2e.harness import running_config
from tests.e2e.test_outbound import ZONES, _config, _free_port_on, _wait_for

TIMEOUT = 60
# The outbound loop looks at the queue every 2 seconds (POLL_INTERVAL):
# three looks at least.
IDLE = 6.5


def _mailstead(config: Path, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "mailstead", "--config", str(config), *args],
        input=stdin,
        capture_output=True,
        timeout=TIMEOUT,
        check=False,
    )


def test_a_held_message_waits_for_release(tmp_path: Path) -> None:
    mx_port = _free_port_on("127.0.0.2", "127.0.0.3", "127.0.0.4")
    with DNSServer(ZONES) as (dns_host, dns_port):
        dns = f"{dns_host}:{dns_port}"
        theirs_cfg = _config(
            tmp_path / "theirs",
            domain="other.test",
            smtp=f"127.0.0.3:{mx_port}",
            mx_port=mx_port,
            dns=dns,
            users={"bob@other.test": "bob-pw"},
        )
        ours_cfg = _config(
            tmp_path / "ours",
            domain="example.test",
            smtp=f"127.0.0.2:{mx_port}",
            mx_port=mx_port,
            dns=dns,
            users={"alice@example.test": "alice-pw"},
        )
        sent = _mailstead(
            ours_cfg,
            "sendmail",
            "-t",
            "-i",
            "-f",
            "alice@example.test",
            stdin=b"To: Bob <bob@other.test>\nSubject: held\n\nWait for it.\n",
        )
        assert (sent.returncode, sent.stderr) == (0, b"")
        held = _mailstead(ours_cfg, "queue", "hold", "--to-domain", "other.test")
        assert held.returncode == 0 and held.stdout.startswith(b"held queued message ")
        queue_id = held.stdout.split()[-1].decode()

        with (
            running_config(load_config(theirs_cfg), outbound=True) as theirs,
            running_config(load_config(ours_cfg), outbound=True) as ours,
        ):
            time.sleep(IDLE)
            assert theirs.new_messages("bob@other.test") == []
            listed = _mailstead(ours_cfg, "queue", "list")
            assert f"{queue_id}! ".encode() in listed.stdout

            released = _mailstead(ours_cfg, "queue", "release", queue_id)
            assert released.stdout == f"released queued message {queue_id}\n".encode()
            _wait_for(lambda: theirs.new_messages("bob@other.test"), timeout=30)
            (stored,) = theirs.new_messages("bob@other.test")
            assert b"Subject: held\n" in stored and stored.endswith(b"\n\nWait for it.\n")
            with Queue(ours.config.data_dir) as q:
                _wait_for(lambda: q.get(queue_id) is None)
