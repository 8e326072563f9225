"""Two real ``mailstead serve`` nodes on one PostgreSQL database (issue 25).

Each node is a ``serve`` child process (tests/e2e/process.py) with its own
data directory and ports and the default number of workers; both keep
everything shared in the test's database. The tests here:

* SMTP from several threads to both nodes, ``kill -9`` of one node (its
  supervisor and every worker at once) in the middle of the load: every
  message that got its ``250`` is readable over IMAP from the surviving
  node, under the UIDs both nodes showed before the kill, and the killed
  node, restarted, shows the same UIDs; a message whose ``250`` was lost in
  the crash is sent again by its client, and may then be there twice
  (docs/durability.md), never zero times;
* IMAP IDLE on one node hears of mail the other accepted.

The queue taken over from a dead node is in test_cluster_queue.py, HAProxy in
front of two nodes in test_cluster_haproxy.py.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import smtplib
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from imapclient import IMAPClient

from tests.e2e.harness import client_tls_context
from tests.e2e.process import ALL_ROLES, ServerProcess, children

ALICE = "alice@example.test"
PASSWORD = "alice-pw"


def node(root: Path, dsn: str, *, delivery: str = "", extra: str = "") -> ServerProcess:
    """One node of the cluster on ``dsn``: every listener, default workers."""
    root.mkdir(parents=True, exist_ok=True)
    return ServerProcess(root, roles=ALL_ROLES, dsn=dsn, delivery=delivery, extra=extra)


def kill_node(server: ServerProcess) -> None:
    """``kill -9`` of the whole node: every worker and the supervisor at once.

    (ServerProcess.kill alone kills the supervisor, and the workers follow a
    moment later by PR_SET_PDEATHSIG; a power cut stops them together.)
    """
    assert server.proc is not None
    for pid in children(server.proc.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    server.kill()  # the supervisor, then wait until nothing listens


@contextmanager
def cluster(
    tmp_path: Path, dsn: str, *, prepare: Callable[[ServerProcess], None] | None = None
) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """Nodes ``a`` and ``b`` on ``dsn``, started, stopped (or already killed) at the end;
    ``prepare`` may change each one's config before it starts."""
    a, b = node(tmp_path / "a", dsn), node(tmp_path / "b", dsn)
    if prepare is not None:
        prepare(a)
        prepare(b)
    try:
        a.start()
        b.start()
        yield a, b
    finally:
        a.stop()
        b.stop()


def message(msgid: str) -> bytes:
    return (
        f"From: carol@remote.test\r\nTo: {ALICE}\r\nSubject: {msgid}\r\n"
        f"Message-ID: <{msgid}>\r\n\r\nbody of {msgid}\r\n"
    ).encode()


def uid_map(server: ServerProcess) -> dict[int, str]:
    """UID -> Message-ID of every message in alice's INBOX, as ``server`` shows it;
    each message read whole, and whole."""
    with IMAPClient(
        "127.0.0.1", server.ports["imaps"], ssl_context=client_tls_context(), timeout=20
    ) as client:
        client.login(ALICE, PASSWORD)
        client.select_folder("INBOX", readonly=True)
        fetched = client.fetch(client.search("ALL"), ["BODY.PEEK[]"])
    found: dict[int, str] = {}
    for uid, item in fetched.items():
        content = item[b"BODY[]"]
        msgid = re.search(rb"\r\nMessage-ID: <([^>]+)>\r\n", content)
        assert msgid is not None, content
        found[uid] = msgid.group(1).decode()
        assert content.endswith(b"\r\n\r\nbody of %s\r\n" % msgid.group(1)), content
    return found


# -- SMTP load with a kill in the middle -------------------------------------------


@dataclass
class Ledger:
    """What the sending clients know: which messages got a 250, which were in doubt."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    acked: set[str] = field(default_factory=set)
    # The message data went out but the reply never came (the node died):
    # committed or not, the client sends it again elsewhere.
    in_doubt: set[str] = field(default_factory=set)
    # Refused before the data went out (connection refused, reset mid-envelope).
    retried_before_data: int = 0
    by_node: Counter[str] = field(default_factory=Counter)


def _send_until_acked(nodes: list[tuple[str, ServerProcess]], msgid: str, ledger: Ledger) -> None:
    """Send ``msgid`` to the first node, then the others, as an MTA retries; 250 or fail."""
    for name, server in nodes * 3:
        data_sent = False
        try:
            with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=20) as smtp:
                smtp.ehlo("sender.remote.test")
                code, reply = smtp.mail("carol@remote.test")
                assert code == 250, reply
                code, reply = smtp.rcpt(ALICE)
                assert code == 250, reply
                data_sent = True
                code, reply = smtp.data(message(msgid))
            assert code == 250, (code, reply)
        except (OSError, smtplib.SMTPException):
            with ledger.lock:
                if data_sent:
                    ledger.in_doubt.add(msgid)
                else:
                    ledger.retried_before_data += 1
            time.sleep(0.05)
            continue
        with ledger.lock:
            ledger.acked.add(msgid)
            ledger.by_node[name] += 1
        return
    raise AssertionError(f"{msgid}: no node took it")


def _load(
    a: ServerProcess, b: ServerProcess, prefix: str, threads: int, each: int, ledger: Ledger
) -> list[threading.Thread]:
    """``threads`` senders of ``each`` messages, alternating between the nodes; started."""

    def sender(t: int) -> None:
        for n in range(each):
            pair = [("a", a), ("b", b)] if (t + n) % 2 == 0 else [("b", b), ("a", a)]
            _send_until_acked(pair, f"{prefix}.t{t}.m{n}@cluster.test", ledger)

    started = [threading.Thread(target=sender, args=(t,)) for t in range(threads)]
    for thread in started:
        thread.start()
    return started


THREADS = 4
BEFORE = 6  # messages per thread before the UIDs are first read
DURING = 20  # messages per thread in the load the kill lands in


def test_kill_9_of_a_node_mid_load_loses_nothing_acknowledged(tmp_path: Path, pg_dsn: str) -> None:
    with cluster(tmp_path, pg_dsn) as (a, b):
        ledger = Ledger()
        for thread in _load(a, b, "before", THREADS, BEFORE, ledger):
            thread.join()
        assert ledger.by_node["a"] and ledger.by_node["b"]
        # Both nodes show every message under the same UID.
        seen_on_a = uid_map(a)
        assert uid_map(b) == seen_on_a
        assert sorted(seen_on_a.values()) == sorted(ledger.acked)
        assert sorted(seen_on_a) == list(range(1, len(ledger.acked) + 1))

        # The load again; node a dies in the middle of it.
        load = _load(a, b, "during", THREADS, DURING, ledger)
        deadline = time.monotonic() + 60
        while len(ledger.acked) < len(seen_on_a) + THREADS * DURING // 3:
            assert time.monotonic() < deadline, "the load stalled"
            time.sleep(0.005)
        kill_node(a)
        killed_at = len(ledger.acked)
        for thread in load:
            thread.join()
        assert len(ledger.acked) > killed_at, "nothing was accepted after the kill"

        after = uid_map(b)
        # Nothing acknowledged is lost; nothing nobody sent is there; only a
        # message whose 250 was lost in the crash may be there twice.
        copies = Counter(after.values())
        assert set(copies) == ledger.acked
        twice = {msgid for msgid, n in copies.items() if n > 1}
        assert twice <= ledger.in_doubt, twice - ledger.in_doubt
        assert max(copies.values()) <= 2
        # The UIDs both nodes showed before the kill are unchanged.
        assert {uid: after[uid] for uid in seen_on_a} == seen_on_a

        a.start()  # the operator's init system brings it back
        assert uid_map(a) == after
        # Both go on from there: new mail takes the next UIDs, the same on both.
        for thread in _load(a, b, "after", 2, 2, ledger):
            thread.join()
        final = uid_map(a)
        assert uid_map(b) == final
        assert len(final) == len(after) + 4
        assert min(set(final) - set(after)) > max(after)
    print(
        f"acked {len(ledger.acked)} (a {ledger.by_node['a']}, b {ledger.by_node['b']}),"
        f" in doubt {len(ledger.in_doubt)}, stored twice {len(twice)},"
        f" retried before data {ledger.retried_before_data}"
    )


# -- IDLE across nodes ------------------------------------------------------------


IDLE_BOUND = 2.0  # seconds from the 250 on one node to the EXISTS on the other


def test_idle_on_one_node_sees_mail_accepted_by_the_other(tmp_path: Path, pg_dsn: str) -> None:
    with cluster(tmp_path, pg_dsn) as (a, b):
        ledger = Ledger()
        _send_until_acked([("a", a)], "first@cluster.test", ledger)
        imap = IMAPClient("127.0.0.1", b.ports["imaps"], ssl_context=client_tls_context())
        imap.login(ALICE, PASSWORD)
        assert imap.select_folder("INBOX")[b"EXISTS"] == 1
        imap.idle()
        try:
            delays = []
            for n in range(3):
                _send_until_acked([("a", a)], f"idle{n}@cluster.test", ledger)
                accepted = time.monotonic()
                heard: list[object] = []
                while (n + 2, b"EXISTS") not in heard:
                    left = accepted + IDLE_BOUND - time.monotonic()
                    assert left > 0, f"no EXISTS within {IDLE_BOUND} s: {heard}"
                    heard += imap.idle_check(timeout=left)
                delays.append(time.monotonic() - accepted)
        finally:
            imap.idle_done()
            imap.logout()
    assert max(delays) < IDLE_BOUND
    print(f"IDLE delays across nodes: {', '.join(f'{d * 1000:.0f} ms' for d in delays)}")
