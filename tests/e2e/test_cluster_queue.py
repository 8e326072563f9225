"""A queued message whose node died is delivered by the other node (issue 25).

Two ``serve`` nodes on one PostgreSQL database share the outbound queue;
each claims what it delivers under a lease (``[limits] queue_lease``, 10 s
here instead of the default 60 s). remote.test's MX is 127.0.0.3, where at
first a listener takes connections and never answers: node a, which queued
alice's message, sits in its delivery waiting for the greeting, renewing its
claim. Node b starts meanwhile and must leave the message alone. Then node a
is killed (``kill -9``, every process), a real SMTP server (a second
Mailstead for remote.test) comes up on the MX's address, and node b
delivers the message once a's lease has run out: once, from b's own source
address, and not before the lease could have ended.
"""

from __future__ import annotations

import contextlib
import smtplib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from mailstead.config import Config, load_config
from mailstead.mta.queue import open_queue
from mailstead.testing.dns import DNSServer
from tests.e2e.harness import client_tls_context, running_config
from tests.e2e.process import ServerProcess
from tests.e2e.test_cluster import kill_node, node
from tests.e2e.test_outbound import _config, _free_port_on

LEASE = 10  # seconds, [limits] queue_lease (the least it may be)
SOURCE = {"a": "127.0.0.5", "b": "127.0.0.6"}  # each node's outbound address
MX = "127.0.0.3"
ZONES = {
    "remote.test": {"MX": [(10, "mx.remote.test")]},
    "mx.remote.test": {"A": [MX]},
}
MESSAGE = (
    b"From: alice@example.test\r\nTo: bob@remote.test\r\nSubject: orphaned\r\n"
    b"Message-ID: <orphaned@example.test>\r\n\r\nqueued on a node that died\r\n"
)


class SilentMX:
    """Takes SMTP connections on the MX's address and never says a word:
    the sending node waits for the greeting (RFC 5321 §4.5.3.2: 5 minutes)."""

    def __init__(self, port: int) -> None:
        self.listener = socket.create_server((MX, port))
        self.peers: list[str] = []
        self.held: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, peer = self.listener.accept()
            except OSError:  # closed
                return
            self.held.append(conn)
            self.peers.append(peer[0])

    def close(self) -> None:
        # shutdown wakes the accept() blocked in the thread; close alone would not.
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self.thread.join(5)
        for conn in self.held:
            conn.close()


def _wait(condition: object, timeout: float, what: str) -> float:
    """Poll ``condition`` (a callable) until true; the time it became true."""
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.05)
    return time.monotonic()


def _arrived(maildir: Path) -> list[bytes]:
    new = maildir / "new"
    return [p.read_bytes() for p in new.iterdir()] if new.exists() else []


@dataclass
class World:
    """Nodes a and b (not started), the silent MX, and the real one to start later."""

    a: ServerProcess
    b: ServerProcess
    silent: SilentMX
    theirs: Config
    dsn: str

    @property
    def arrived(self) -> list[bytes]:
        return _arrived(self.theirs.mail_root / "remote.test" / "bob" / "Maildir")

    def queue_on_a(self) -> None:
        """C: alice submits on node a; S: 250 means queued in the shared database.
        Then a is delivering it: connected to the MX, waiting for its greeting."""
        with smtplib.SMTP("127.0.0.1", self.a.ports["submission"], timeout=10) as smtp:
            smtp.starttls(context=client_tls_context())
            smtp.login("alice@example.test", "alice-pw")
            smtp.sendmail("alice@example.test", ["bob@remote.test"], MESSAGE)
        _wait(lambda: SOURCE["a"] in self.silent.peers, 20, "node a connecting to the MX")

    def one_delivery(self, since: float) -> tuple[float, bytes]:
        """With the real MX up: seconds from ``since`` to the message's arrival, and it."""
        self.silent.close()
        with running_config(self.theirs):  # the MX answers from now on
            delivered = _wait(lambda: bool(self.arrived), LEASE + 20, "the delivery")
            time.sleep(1)  # a second copy would come now
            (copy,) = self.arrived
        assert copy.endswith(b"queued on a node that died\n")
        return delivered - since, copy


@pytest.fixture
def world(tmp_path: Path, pg_dsn: str) -> Iterator[World]:
    mx_port = _free_port_on(MX)
    silent = SilentMX(mx_port)
    with DNSServer(ZONES) as (dns_host, dns_port):
        a, b = (
            node(
                tmp_path / name,
                pg_dsn,
                delivery=f'dns_servers = ["{dns_host}:{dns_port}"]\nsmtp_port = {mx_port}\n'
                f'source_ip = "{SOURCE[name]}"\nretry_schedule = ["1s"]\n',
                extra=f'[limits]\nqueue_lease = "{LEASE}s"\n',
            )
            for name in ("a", "b")
        )
        theirs = load_config(
            _config(
                tmp_path / "theirs",
                domain="remote.test",
                smtp=f"{MX}:{mx_port}",
                mx_port=mx_port,
                dns=f"{dns_host}:{dns_port}",
                users={"bob@remote.test": "bob-pw"},
            )
        )
        try:
            yield World(a, b, silent, theirs, pg_dsn)
        finally:
            silent.close()
            a.stop()
            b.stop()


def test_a_dead_nodes_queued_message_is_delivered_by_the_other(world: World) -> None:
    world.a.start()
    world.queue_on_a()
    world.b.start()
    # b runs through more than one lease while a holds the claim.
    time.sleep(LEASE + 2)
    assert world.silent.peers == [SOURCE["a"]], "node b took a message node a holds"

    kill_node(world.a)
    waited, copy = world.one_delivery(since=time.monotonic())
    with open_queue(world.b.config) as queue:
        assert queue.list() == []
    # a renewed its claim at most 2 s before the kill; b looks every 2 s.
    assert LEASE - 2.5 < waited < LEASE + 6, waited
    assert f"[{SOURCE['b']}]".encode() in copy.split(b"\n\n", 1)[0], "not from node b"
    print(f"delivered by node b {waited:.1f} s after node a was killed (lease {LEASE} s)")


def test_a_node_restarted_after_kill_9_takes_its_queue_back_at_once(world: World) -> None:
    # The claims a killed node left name it (host and data directory): the
    # same node started again frees them before its workers run, instead of
    # waiting out its own lease (mta/queue_db.py node_name).
    world.a.start()
    world.queue_on_a()
    kill_node(world.a)
    killed = time.monotonic()
    world.a.start()
    waited, copy = world.one_delivery(since=killed)
    assert waited < LEASE - 3, f"waited {waited:.1f} s: the restarted node waited out its lease"
    assert f"[{SOURCE['a']}]".encode() in copy.split(b"\n\n", 1)[0], "not from node a"
    print(f"delivered by node a, restarted, {waited:.1f} s after its kill (lease {LEASE} s)")


def test_a_node_stopped_hands_its_queue_to_the_other_at_once(world: World) -> None:
    # SIGTERM: the node gives the delivery in progress its shutdown grace
    # (10 s, app.RunningServer.stop: here it waits on a silent MX), then
    # hands its claims back (docs/durability.md): b need not wait for the lease.
    world.a.start()
    world.b.start()
    world.queue_on_a()
    stopping = time.monotonic()
    world.a.stop()
    stopped = time.monotonic()
    with psycopg.connect(world.dsn) as db:
        ((holder,),) = db.execute("SELECT claimed_by FROM messages").fetchall()
    # Free, or b's already (mta/queue_db.py node_name: host and data directory).
    assert holder is None or f":{world.b.config.data_dir.resolve()}:" in holder, holder
    waited, copy = world.one_delivery(since=stopped)
    assert waited < 3, f"delivered {waited:.1f} s after the stop"
    assert f"[{SOURCE['b']}]".encode() in copy.split(b"\n\n", 1)[0], "not from node b"
    print(
        f"node a stopped in {stopped - stopping:.1f} s;"
        f" delivered by node b {waited:.1f} s later (lease {LEASE} s)"
    )
