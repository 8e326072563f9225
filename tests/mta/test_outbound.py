"""The outbound MTA against scripted hosts, in simulated time.

Each test builds a small world: our server for example.test (a real queue,
directory and Maildir store in ``tmp_path``), a fake DNS, a fake clock that
moves only when the test says so, and scripted mail hosts that answer each
recipient as told and record what they were handed. Most tests hand mail to
hosts in memory (:class:`~mailstead.testing.transport.MemoryTransport`);
those about what goes on the wire run the real SMTP client against scripted
servers on 127.0.0.1-5 that record every byte they receive. Time passes by
``clock.set_time``; the engine acts by ``run_once`` at each simulated
moment, so five days of retries take milliseconds.
"""

from __future__ import annotations

import asyncio
import email
import functools
import random
import re
import socket
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import ParamSpec

import pytest

from mailstead.config import Config, load_config
from mailstead.directory import Directory
from mailstead.mailauth import dkim as dkim_module
from mailstead.mailauth.dkim import DKIMKey, DKIMKeys, DKIMSigner
from mailstead.mta import outbound, schedule
from mailstead.mta.envelope import QueuedRecipient, RecipientStatus
from mailstead.mta.outbound import Outbound
from mailstead.mta.queue import Queue
from mailstead.mta.transport import HostTransport
from mailstead.net.smtp_client import SMTPTransport
from mailstead.store import MaildirStore
from mailstead.store.mailbox import arrival_order
from mailstead.testing.clock import FakeClock
from mailstead.testing.dns import FakeResolver
from mailstead.testing.transport import MemoryTransport, ScriptedHost

P = ParamSpec("P")

ALICE = "alice@example.test"  # a local user: her bounces come back through the queue
HOUR = 3600.0
DAY = 24 * HOUR

ZONES = {
    # One host.
    "solo.test": {"MX": [(10, "mx.solo.test")]},
    "mx.solo.test": {"A": ["127.0.0.1"]},
    # A primary and a backup.
    "other.test": {"MX": [(10, "mx1.other.test"), (20, "mx2.other.test")]},
    "mx1.other.test": {"A": ["127.0.0.2"]},
    "mx2.other.test": {"A": ["127.0.0.3"]},
    # A second domain on a host of its own.
    "third.test": {"MX": [(10, "mx.third.test")]},
    "mx.third.test": {"A": ["127.0.0.3"]},
    # RFC 7505: accepts no mail.
    "nullmx.test": {"MX": [(0, ".")]},
    # A host that takes the connection and never says a word.
    "silent.test": {"MX": [(10, "mx.silent.test")]},
    "mx.silent.test": {"A": ["127.0.0.4"]},
}

MESSAGE = (
    b"From: alice@example.test\r\nTo: bob@solo.test\r\nSubject: hello\r\n"
    b"Message-ID: <m1@example.test>\r\n\r\nHi Bob.\r\n"
)


# ------------------------------------------------------------------- the fake MX on the wire


@dataclass
class Transaction:
    """One MAIL FROM .. end of data as the fake MX saw it."""

    sender: str
    recipients: list[str] = field(default_factory=list)  # accepted ones
    data: bytes = b""  # as on the wire: dot-stuffed, up to and including ".\r\n"


@dataclass
class Session:
    """One connection to the fake MX."""

    opened_at: float  # on the fake clock
    raw: bytearray = field(default_factory=bytearray)
    commands: list[str] = field(default_factory=list)
    transactions: list[Transaction] = field(default_factory=list)
    peer: str = ""  # the client's address

    @property
    def verbs(self) -> list[str]:
        return [c.split(" ", 1)[0].split(":", 1)[0].upper() for c in self.commands]


class FakeMX:
    """A scripted SMTP server on ``host``: greets with ``greeting``, answers RCPT
    per address from ``rcpt`` (``"250 2.1.5 OK"`` for the others), and records
    every session. The script may be changed between runs."""

    EHLO = (
        "250-{host} hello\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-DSN\r\n250 ENHANCEDSTATUSCODES"
    )

    def __init__(
        self,
        host: str,
        port: int,
        clock: FakeClock,
        *,
        greeting: str = "220 {host} ESMTP ready",
        rcpt: dict[str, str] | None = None,
        data_reply: str = "250 2.0.0 Queued",
    ) -> None:
        self.host, self.port, self.clock = host, port, clock
        self.greeting = greeting
        self.rcpt = dict(rcpt or {})
        self.data_reply = data_reply
        self.sessions: list[Session] = []
        self._server: asyncio.Server | None = None

    async def start(self) -> FakeMX:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    # What the test asks about.

    @property
    def transactions(self) -> list[Transaction]:
        return [t for s in self.sessions for t in s.transactions]

    def offered(self, address: str) -> int:
        """How many times ``address`` was offered in RCPT TO."""
        return sum(
            1
            for s in self.sessions
            for c in s.commands
            if c.upper().startswith("RCPT") and _path(c) == address
        )

    def delivered_to(self, address: str) -> int:
        return sum(t.recipients.count(address) for t in self.transactions)

    # The server.

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = Session(self.clock.time())
        session.peer = writer.get_extra_info("peername")[0]
        self.sessions.append(session)

        async def say(text: str) -> None:
            writer.write(text.format(host=self.host).encode() + b"\r\n")
            await writer.drain()

        txn: Transaction | None = None
        try:
            await say(self.greeting)
            while line := await reader.readline():
                session.raw += line
                command = line.decode().rstrip("\r\n")
                session.commands.append(command)
                verb = session.verbs[-1]
                if not self.greeting.startswith("2") and verb != "QUIT":
                    await say("503 5.5.1 Go away")
                elif verb == "EHLO":
                    await say(self.EHLO)
                elif verb == "MAIL":
                    txn = Transaction(_path(command))
                    await say("250 2.1.0 OK")
                elif verb == "RCPT":
                    address = _path(command)
                    reply = self.rcpt.get(address, "250 2.1.5 OK")
                    if txn is not None and reply.startswith("2"):
                        txn.recipients.append(address)
                    await say(reply)
                elif verb == "DATA":
                    if txn is None or not txn.recipients:
                        await say("554 5.5.1 No valid recipients")
                        continue
                    await say("354 End data with <CR><LF>.<CR><LF>")
                    data = bytearray()
                    while chunk := await reader.readline():
                        data += chunk
                        if chunk == b".\r\n":
                            break
                    session.raw += data
                    txn.data = bytes(data)
                    session.transactions.append(txn)
                    txn = None
                    await say(self.data_reply)
                elif verb == "RSET":
                    txn = None
                    await say("250 2.0.0 OK")
                elif verb == "QUIT":
                    await say("221 2.0.0 Bye")
                    break
                else:
                    await say("502 5.5.2 Not implemented")
        except ConnectionError:
            pass
        finally:
            writer.close()


def _path(command: str) -> str:
    match = re.search(r"<([^>]*)>", command)
    assert match, command
    return match.group(1)


# --------------------------------------------------------------------------- the world


def _free_port_on(*hosts: str) -> int:
    """A port free on every one of ``hosts`` (the MX port is the same everywhere)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind((hosts[0], 0))
            port = int(s.getsockname()[1])
        try:
            for host in hosts[1:]:
                with socket.socket() as s:
                    s.bind((host, port))
        except OSError:
            continue
        return port
    raise RuntimeError("no common free port")


def _config(root: Path, mx_port: int, delivery: str = "") -> Config:
    path = root / "mailstead.toml"
    path.write_text(
        'hostname = "mx.example.test"\ndata_dir = "var"\ndomains = ["example.test"]\n'
        "[listen]\nsmtp = []\nsubmission = []\nsubmissions = []\n"
        "imap = []\nimaps = []\npop3 = []\npop3s = []\n"
        f"[delivery]\nsmtp_port = {mx_port}\n"
        'retry_schedule = ["1m", "5m", "15m", "30m", "1h", "2h", "4h", "8h"]\n'
        'max_lifetime = "5d"\n' + delivery
    )
    config = load_config(path)
    config.data_dir.mkdir(parents=True, exist_ok=True)
    return config


class World:
    """Our server's outbound side, with fake DNS and fake time, and its peers:
    scripted hosts in memory, or (``wire``) the real SMTP client and scripted
    servers on loopback."""

    def __init__(self, root: Path, *, wire: bool = False) -> None:
        # On the wire every MX listens on one port free on each address.
        self.port = (
            _free_port_on("127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4") if wire else 25
        )
        self.config = _config(root, self.port)
        self.clock = FakeClock()
        self.resolver = FakeResolver(ZONES)
        self.memory = MemoryTransport(self.clock)
        self.transport: HostTransport = SMTPTransport() if wire else self.memory
        self.queue = Queue(self.config.data_dir)
        self.directory = Directory(self.config.db_path("directory"), self.config.domains)
        self.directory.add_user(ALICE, "alice-pw")
        self.store = MaildirStore(self.config.mail_root)
        self.executor = ThreadPoolExecutor(2)
        self.servers: list[FakeMX] = []
        self.outbound = self._outbound()

    def _outbound(self) -> Outbound:
        return Outbound(
            self.config,
            self.queue,
            directory=self.directory,
            store=self.store,
            resolver=self.resolver,
            clock=self.clock,
            executor=self.executor,
            transport=self.transport,
            signer=None,
            rng=random.Random(1),
        )

    def dns(self, **kwargs: object) -> None:
        """Replace the DNS, e.g. ``dns(fail={"other.test"})``."""
        self.resolver = FakeResolver(ZONES, **kwargs)  # type: ignore[arg-type]
        self.outbound = self._outbound()

    def mx(self, address: str, **script: object) -> ScriptedHost:
        """Script the host at ``address`` in memory (see :class:`ScriptedHost`)."""
        assert self.transport is self.memory, "a world in memory"
        return self.memory.host(address, **script)  # type: ignore[arg-type]

    async def listen(self, host: str, **script: object) -> FakeMX:
        """Start a scripted MX on ``host`` on the wire (see :class:`FakeMX` for the script)."""
        assert isinstance(self.transport, SMTPTransport), "a wire world"
        server = await FakeMX(host, self.port, self.clock, **script).start()  # type: ignore[arg-type]
        self.servers.append(server)
        return server

    def send(
        self,
        *recipients: str | QueuedRecipient,
        sender: str = ALICE,
        content: bytes = MESSAGE,
    ) -> str:
        """Queue a message now; returns its queue id."""
        rcpts = [r if isinstance(r, QueuedRecipient) else QueuedRecipient(r) for r in recipients]
        return self.queue.enqueue(sender, rcpts, [content], received_at=self.clock.time())

    async def run_once(self) -> int:
        return await self.outbound.run_once()

    async def run_until_idle(self) -> None:
        """Passes at the current moment until nothing more is due (DSNs go out too)."""
        while await self.outbound.run_once():
            pass

    def recipient(self, queue_id: str, address: str) -> RecipientStatus:
        message = self.queue.get(queue_id)
        assert message is not None, f"{queue_id} is not queued"
        (status,) = [r for r in message.recipients if r.address == address]
        return status

    def inbox(self, address: str = ALICE) -> list[EmailMessage]:
        local, domain = address.split("@")
        new = self.config.mail_root / domain / local / "Maildir" / "new"
        if not new.exists():
            return []
        out = []
        for p in sorted(new.iterdir(), key=_delivery_order):
            msg = email.message_from_bytes(p.read_bytes(), policy=policy.default)
            assert isinstance(msg, EmailMessage)
            out.append(msg)
        return out

    async def aclose(self) -> None:
        for server in self.servers:
            await server.close()

    def close(self) -> None:
        self.executor.shutdown(wait=True)
        self.queue.close()
        self.directory.close()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    w.close()


@pytest.fixture
def wire(tmp_path: Path) -> Iterator[World]:
    """A world whose hosts are real SMTP servers, reached by the real client."""
    w = World(tmp_path, wire=True)
    yield w
    w.close()


def in_loop(test: Callable[P, Awaitable[None]]) -> Callable[P, None]:
    """Run an async test in a fresh event loop; close the world's fake servers after."""

    @functools.wraps(test)
    def run(*args: P.args, **kwargs: P.kwargs) -> None:
        async def main() -> None:
            try:
                await test(*args, **kwargs)
            finally:
                for value in kwargs.values():
                    if isinstance(value, World):
                        await value.aclose()

        asyncio.run(main())

    return run


@dataclass(frozen=True)
class Report:
    """A DSN as it reached the sender's mailbox."""

    message: EmailMessage
    status: str  # the message/delivery-status part as text

    @property
    def action(self) -> str:
        match = re.search(r"^Action: (\S+)", self.status, re.M)
        assert match, self.status
        return match.group(1)


def _delivery_order(path: Path) -> tuple[int, int, int, str]:
    # Name order is not delivery order: the microseconds are not zero-padded.
    return arrival_order((path.name, "", ""))


def reports(world: World, address: str = ALICE) -> list[Report]:
    out = []
    for msg in world.inbox(address):
        assert msg.get_content_type() == "multipart/report"
        assert msg.get_param("report-type") == "delivery-status"
        assert msg["Return-Path"] == "<>"  # RFC 3461 §6.1: sent from the null sender
        _human, status, _original = msg.iter_parts()
        assert status.get_content_type() == "message/delivery-status"
        out.append(Report(msg, status.as_string()))
    return out


def retry_at(queue_id: str, attempts: int, now: float, interval: float) -> float:
    """When the schedule tries again: ``interval`` after ``now``, lengthened by
    the message's reproducible jitter (at most 10%)."""
    jitter = schedule.jitter_fraction(queue_id, attempts)
    return now + interval * (1 + jitter * schedule.DEFAULT_JITTER_SPREAD)


# --------------------------------------------------------------------------- 1. per-recipient


@in_loop
async def test_each_recipient_gets_its_own_outcome(world: World) -> None:
    mx = world.mx(
        "127.0.0.1",
        rcpt={
            "busy@solo.test": "450 4.2.1 Mailbox busy",
            "gone@solo.test": "550 5.1.1 No such user",
        },
    )
    qid = world.send("bob@solo.test", "busy@solo.test", "gone@solo.test")
    start = world.clock.time()

    assert await world.run_once() == 3
    assert len(mx.sessions) == 1
    assert mx.transactions[0].accepted == ("bob@solo.test",)

    bob = world.recipient(qid, "bob@solo.test")
    assert (bob.state, bob.attempts) == ("delivered", 1)

    busy = world.recipient(qid, "busy@solo.test")
    assert (busy.state, busy.attempts) == ("deferred", 1)
    assert busy.next_attempt == retry_at(qid, 1, start, 60)
    assert busy.last_error is not None
    assert busy.last_error.startswith("mx.solo.test [127.0.0.1] said: 450 4.2.1 Mailbox busy")

    gone = world.recipient(qid, "gone@solo.test")
    assert (gone.state, gone.attempts) == ("failed", 1)
    assert gone.last_error is not None and "550 5.1.1" in gone.last_error

    # The bounce for gone@ was queued to Alice and goes through the queue to her Maildir.
    assert reports(world) == []
    await world.run_until_idle()
    (bounce,) = reports(world)
    assert bounce.message["To"] == ALICE
    assert bounce.action == "failed"
    assert "Final-Recipient: rfc822; gone@solo.test" in bounce.status
    assert "Status: 5.1.1" in bounce.status
    assert "Remote-MTA: dns; mx.solo.test" in bounce.status
    assert "Diagnostic-Code: smtp; 550 5.1.1 No such user" in bounce.status
    assert "busy@solo.test" not in bounce.status and "bob@solo.test" not in bounce.status
    assert len(mx.sessions) == 1  # the bounce is local: nothing went out

    # Not due yet: nothing is tried a moment before the retry time.
    world.clock.set_time(busy.next_attempt - 1)
    assert await world.run_once() == 0
    assert len(mx.sessions) == 1

    # At the retry time only busy@ is offered again, and now it is accepted.
    mx.rcpt["busy@solo.test"] = "250 2.1.5 OK"
    world.clock.set_time(busy.next_attempt)
    assert await world.run_once() == 1
    assert len(mx.sessions) == 2
    assert [t.accepted for t in mx.transactions] == [("bob@solo.test",), ("busy@solo.test",)]
    assert world.queue.get(qid) is None  # every recipient final: the message is gone

    # Each recipient was offered exactly as often as its outcome called for.
    assert mx.offered("bob@solo.test") == 1
    assert mx.offered("busy@solo.test") == 2
    assert mx.offered("gone@solo.test") == 1
    world.clock.advance(DAY)
    await world.run_until_idle()
    assert len(mx.sessions) == 2
    assert len(reports(world)) == 1


# --------------------------------------------------------------------------- 2. five days


def scheduled_attempts(world: World, queue_id: str, received_at: float) -> list[float]:
    """Every moment the schedule tries a recipient that always fails temporarily."""
    delivery = world.config.delivery
    times = [received_at]
    while True:
        attempts = len(times)
        when = schedule.next_attempt(
            received_at,
            attempts,
            times[-1],
            delivery.retry_schedule,
            delivery.max_lifetime,
            jitter=schedule.jitter_fraction(queue_id, attempts),
        )
        if when is None:
            return times
        times.append(when)


@in_loop
async def test_five_days_of_451_follow_the_schedule_warn_once_then_expire(world: World) -> None:
    mx = world.mx("127.0.0.1", rcpt={"bob@solo.test": "451 4.3.0 Try again later"})
    received = world.clock.time()
    qid = world.send("bob@solo.test")
    expected = scheduled_attempts(world, qid, received)
    # 1m, 5m, 15m, 30m, 1h, 2h, 4h, then every 8h (+ up to 10%) and a last
    # try exactly at the deadline, five days after arrival.
    assert expected[-1] == received + 5 * DAY
    assert 18 <= len(expected) <= 23

    warned_at: list[float] = []
    while (due := world.queue.next_due()) is not None:
        world.clock.set_time(due)
        before = len(world.inbox())
        await world.run_once()
        if len(world.inbox()) > before:
            warned_at.append(world.clock.time())
        assert world.clock.time() <= received + 5 * DAY

    assert [s.opened_at for s in mx.sessions] == expected
    assert mx.offered("bob@solo.test") == len(expected)
    assert mx.transactions == []
    assert world.queue.get(qid) is None
    assert world.queue.list() == []

    delayed, failed = reports(world)
    assert delayed.action == "delayed"
    assert delayed.message["Subject"] == "Delayed Mail (still being retried)"
    assert re.search(r"^Status: 4\.\d+\.\d+$", delayed.status, re.M)
    assert "Will-Retry-Until:" in delayed.status
    # The warning went with the first attempt at least 4 hours after arrival.
    first_after_4h = next(t for t in expected if t >= received + 4 * HOUR)
    assert warned_at[0] == first_after_4h

    assert failed.action == "failed"
    assert "Status: 4.4.7" in failed.status  # RFC 3463: delivery time expired
    assert "Remote-MTA: dns; mx.solo.test" in failed.status
    assert "Final-Recipient: rfc822; bob@solo.test" in failed.status
    assert warned_at[1] == received + 5 * DAY


@pytest.mark.parametrize(("setting", "warn_after"), [('"1h"', HOUR), ('"0"', None)])
@in_loop
async def test_the_delay_warning_comes_when_configured(
    world: World, setting: str, warn_after: float | None
) -> None:
    world.config = _config(world.config.path.parent, world.port, f"delay_warning = {setting}\n")
    world.outbound = world._outbound()
    world.mx("127.0.0.1", rcpt={"bob@solo.test": "451 4.3.0 Try again later"})
    received = world.clock.time()
    qid = world.send("bob@solo.test")
    warned_at = None
    while (due := world.queue.next_due()) is not None and due < received + 1 * DAY:
        world.clock.set_time(due)
        await world.run_once()
        if warned_at is None and world.recipient(qid, "bob@solo.test").delay_warned:
            warned_at = world.clock.time() - received
    assert world.recipient(qid, "bob@solo.test").state == "deferred"
    assert [r.action for r in reports(world)] == ([] if warn_after is None else ["delayed"])
    if warn_after is not None:
        # Deferrals 1m, 5m, 15m, 30m and 1h apart, each up to DEFAULT_JITTER_SPREAD
        # longer (jitter from the queue id): the fifth, 111 min and at most that
        # much more after arrival, is the first one an hour or more after it.
        latest = (1 + 5 + 15 + 30 + 60) * 60 * (1 + schedule.DEFAULT_JITTER_SPREAD)
        assert warned_at is not None and warn_after <= warned_at <= latest


# --------------------------------------------------------------------------- 3. whom to tell


@in_loop
async def test_a_bounce_that_fails_is_dropped_without_a_bounce(world: World) -> None:
    mx = world.mx("127.0.0.1", rcpt={"gone@solo.test": "550 5.1.1 No such user"})
    qid = world.send("gone@solo.test", sender="")

    await world.run_until_idle()

    assert mx.handed[0].message.sender == ""  # MAIL FROM:<>
    assert world.queue.get(qid) is None
    assert world.queue.list() == []  # RFC 3461 §6.1: never a bounce for a bounce
    assert reports(world) == []


@in_loop
async def test_a_bounce_that_expires_is_dropped_without_a_bounce(world: World) -> None:
    world.mx("127.0.0.1", rcpt={"bob@solo.test": "451 4.3.0 Try again later"})
    world.send("bob@solo.test", sender="")
    while (due := world.queue.next_due()) is not None:
        world.clock.set_time(due)
        await world.run_once()
    assert world.queue.list() == []
    assert reports(world) == []


@pytest.mark.parametrize(
    ("notify", "bounced"),
    [
        (None, True),  # the default: failures and delays
        (("FAILURE",), True),
        (("SUCCESS", "FAILURE"), True),
        (("NEVER",), False),
        (("SUCCESS",), False),
        (("DELAY",), False),
    ],
)
@in_loop
async def test_a_failure_is_reported_as_notify_asks(
    world: World, notify: tuple[str, ...] | None, bounced: bool
) -> None:
    mx = world.mx("127.0.0.1", rcpt={"gone@solo.test": "550 5.1.1 No such user"})
    world.send(QueuedRecipient("gone@solo.test", notify=notify))

    await world.run_until_idle()

    assert len(reports(world)) == (1 if bounced else 0)
    assert world.queue.list() == []
    # The host offers DSN (RFC 3461 §4.1): the NOTIFY choice travels with the RCPT.
    ((rcpt,),) = [h.message.recipients for h in mx.handed]
    assert (rcpt.address, rcpt.params.notify) == ("gone@solo.test", notify)


@pytest.mark.parametrize(
    ("notify", "warned"), [(None, True), (("DELAY",), True), (("FAILURE",), False)]
)
@in_loop
async def test_a_delay_is_reported_as_notify_asks(
    world: World, notify: tuple[str, ...] | None, warned: bool
) -> None:
    world.mx("127.0.0.1", rcpt={"bob@solo.test": "451 4.3.0 Try again later"})
    qid = world.send(QueuedRecipient("bob@solo.test", notify=notify))
    received = world.clock.time()
    while (due := world.queue.next_due()) is not None and due < received + 1 * DAY:
        world.clock.set_time(due)
        await world.run_once()

    assert [r.action for r in reports(world)] == (["delayed"] if warned else [])
    assert world.recipient(qid, "bob@solo.test").state == "deferred"


@in_loop
async def test_success_is_reported_only_when_the_next_hop_cannot(world: World) -> None:
    # RFC 3461 §5.2.1: a host that takes NOTIFY reports success itself; for
    # one without DSN, we say "relayed".
    mx = world.mx("127.0.0.1")
    wants = QueuedRecipient("bob@solo.test", notify=("SUCCESS",))
    world.send(wants)
    await world.run_until_idle()
    assert reports(world) == []

    mx.dsn = False  # no DSN this time
    world.send(wants)
    await world.run_until_idle()
    (report,) = reports(world)
    assert report.action == "relayed"
    assert re.search(r"^Status: 2\.\d+\.\d+$", report.status, re.M)


# --------------------------------------------------------------------------- 4. MX hosts


@in_loop
async def test_backup_mx_takes_the_mail_when_the_primary_refuses_connections(
    world: World,
) -> None:
    backup = world.mx("127.0.0.3")  # nothing listens on the primary, 127.0.0.2
    qid = world.send("bob@other.test")

    await world.run_once()

    assert world.queue.get(qid) is None
    assert backup.delivered_to("bob@other.test") == 1


@in_loop
async def test_every_host_down_defers_with_4_4_1(world: World) -> None:
    qid = world.send("bob@other.test")  # nothing listens on 127.0.0.2 nor 127.0.0.3
    start = world.clock.time()

    await world.run_until_idle()

    bob = world.recipient(qid, "bob@other.test")
    assert (bob.state, bob.attempts) == ("deferred", 1)
    assert bob.next_attempt == retry_at(qid, 1, start, 60)
    assert bob.last_error is not None and "4.4.1" in bob.last_error
    assert reports(world) == []


@in_loop
async def test_every_host_refusing_service_with_554_bounces_at_once(world: World) -> None:
    for host in ("127.0.0.2", "127.0.0.3"):
        world.mx(host, greeting="554 5.7.1 No service here")
    qid = world.send("bob@other.test")

    await world.run_until_idle()

    assert world.queue.get(qid) is None
    (bounce,) = reports(world)
    assert bounce.action == "failed"
    assert "Status: 5.7.1" in bounce.status


# --------------------------------------------------------------------------- 5. one connection


@in_loop
async def test_more_messages_than_one_connection_carries_take_another_connection(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbound, "MESSAGES_PER_CONNECTION", 2)
    mx = world.mx("127.0.0.1")
    queued = [world.send(f"user{n}@solo.test") for n in range(5)]

    assert await world.run_once() == 5

    # Three connections side by side (at most DESTINATION_CONCURRENCY).
    assert sorted(len(s.handed) for s in mx.sessions) == [1, 2, 2]
    assert all(world.queue.get(qid) is None for qid in queued)


@in_loop
async def test_a_refusal_at_the_end_of_data_fails_every_accepted_recipient(world: World) -> None:
    world.mx("127.0.0.1", data="554 5.7.1 Message rejected as spam")
    qid = world.send("bob@solo.test", "carol@solo.test")

    await world.run_until_idle()

    assert world.queue.get(qid) is None
    (bounce,) = reports(world)
    assert "Final-Recipient: rfc822; bob@solo.test" in bounce.status
    assert "Final-Recipient: rfc822; carol@solo.test" in bounce.status
    assert bounce.status.count("Status: 5.7.1") == 2


@in_loop
async def test_a_temporary_refusal_at_the_end_of_data_defers_every_accepted_recipient(
    world: World,
) -> None:
    world.mx("127.0.0.1", data="452 4.3.1 Insufficient system storage")
    qid = world.send("bob@solo.test", "carol@solo.test")

    await world.run_until_idle()

    for address in ("bob@solo.test", "carol@solo.test"):
        status = world.recipient(qid, address)
        assert status.state == "deferred"
        assert status.last_error is not None and "452 4.3.1" in status.last_error
    assert reports(world) == []


# --------------------------------------------------------------------------- 6. DNS


@in_loop
async def test_null_mx_bounces_at_once_with_5_1_10(world: World) -> None:
    qid = world.send("someone@nullmx.test")

    assert await world.run_once() == 1
    assert world.queue.get(qid) is None
    await world.run_until_idle()

    (bounce,) = reports(world)
    assert bounce.action == "failed"
    assert "Final-Recipient: rfc822; someone@nullmx.test" in bounce.status
    assert "Status: 5.1.10" in bounce.status
    assert "Remote-MTA" not in bounce.status  # no host was asked


@in_loop
async def test_a_dns_failure_defers_with_4_4_3(world: World) -> None:
    world.dns(fail={"other.test"})
    qid = world.send("bob@other.test")
    start = world.clock.time()

    await world.run_until_idle()

    bob = world.recipient(qid, "bob@other.test")
    assert (bob.state, bob.attempts) == ("deferred", 1)
    assert bob.next_attempt == retry_at(qid, 1, start, 60)
    assert bob.last_error is not None and "4.4.3" in bob.last_error
    assert reports(world) == []


# --------------------------------------------------------------------------- 7. two domains


@in_loop
async def test_a_message_to_two_domains_leaves_the_queue_when_both_are_final(
    world: World,
) -> None:
    solo = world.mx("127.0.0.1")
    third = world.mx("127.0.0.3", rcpt={"carol@third.test": "450 4.2.1 Mailbox busy"})
    qid = world.send("bob@solo.test", "carol@third.test")

    assert await world.run_once() == 2
    assert world.recipient(qid, "bob@solo.test").state == "delivered"
    carol = world.recipient(qid, "carol@third.test")
    assert carol.state == "deferred"
    assert solo.delivered_to("bob@solo.test") == 1

    third.rcpt.clear()
    world.clock.set_time(carol.next_attempt)
    assert await world.run_once() == 1
    assert world.queue.get(qid) is None
    assert third.delivered_to("carol@third.test") == 1
    assert solo.offered("bob@solo.test") == 1  # never handed over twice
    assert len(solo.sessions) == 1


@in_loop
async def test_a_message_to_two_domains_final_in_one_run_leaves_the_queue(world: World) -> None:
    world.mx("127.0.0.1")
    world.mx("127.0.0.3", rcpt={"carol@third.test": "550 5.1.1 No such user"})
    qid = world.send("bob@solo.test", "carol@third.test")

    await world.run_until_idle()

    assert world.queue.get(qid) is None
    (bounce,) = reports(world)
    assert "carol@third.test" in bounce.status and "bob@solo.test" not in bounce.status


@in_loop
async def test_a_message_to_two_domains_is_dkim_signed_once(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = DKIMKeys(world.config.data_dir)
    keys.ensure("example.test")
    world.outbound.signer = DKIMSigner(keys)
    signed: list[bytes] = []
    real = dkim_module._dkimpy_sign

    def counting(message: bytes, key: DKIMKey, include: list[bytes]) -> bytes:
        signed.append(message)
        return real(message, key, include)

    monkeypatch.setattr(dkim_module, "_dkimpy_sign", counting)
    solo = world.mx("127.0.0.1")
    third = world.mx("127.0.0.3")
    world.send("bob@solo.test", "carol@third.test")

    await world.run_until_idle()

    (to_solo,), (to_third,) = solo.transactions, third.transactions
    assert to_solo.message.content == to_third.message.content
    assert to_solo.message.content.count(b"DKIM-Signature:") == 2  # RSA and Ed25519
    assert len(signed) == 2  # one of each, not one per domain


@in_loop
async def test_a_message_delayed_at_two_domains_is_warned_about_once(world: World) -> None:
    world.mx("127.0.0.1", rcpt={"bob@solo.test": "451 4.3.0 Try again later"})
    world.mx("127.0.0.3", rcpt={"carol@third.test": "451 4.3.0 Try again later"})
    received = world.clock.time()
    world.send("bob@solo.test", "carol@third.test")
    await world.run_until_idle()  # both deferred at once

    # Both domains are tried together again, 4 hours on.
    world.clock.set_time(received + 4 * HOUR)
    assert await world.run_once() == 2
    await world.run_until_idle()

    (warning,) = reports(world)
    assert warning.action == "delayed"
    assert "bob@solo.test" in warning.status and "carol@third.test" in warning.status


# --------------------------------------------------------------------------- 8. workers


@in_loop
async def test_workers_share_the_queue_without_overlap(world: World) -> None:
    mx = world.mx("127.0.0.1")
    queued = [world.send(f"user{n}@solo.test") for n in range(20)]
    first, second = world.outbound, world._outbound()
    first.shard, second.shard = (0, 2), (1, 2)

    taken = await first.run_once()
    assert 0 < taken < 20  # only its share
    assert await second.run_once() == 20 - taken
    assert all(world.queue.get(qid) is None for qid in queued)
    assert len(mx.transactions) == 20  # each message once


# --------------------------------------------------------------------------- 8b. local recipients


@in_loop
async def test_a_local_alias_gets_every_copy_or_none(world: World) -> None:
    # team@ reached the queue (an alias added after the message was queued):
    # delivered locally, all of its mailboxes or none, so the retry after a
    # failure gives nobody a second copy.
    bob = "bob@example.test"
    world.directory.add_user(bob, "bob-pw")
    world.directory.add_alias("team@example.test", [ALICE, bob])
    broken = world.config.mail_root / "example.test" / "bob" / "Maildir"
    broken.mkdir(parents=True)
    (broken / "tmp").write_bytes(b"")  # bob's copy cannot be written
    qid = world.send("team@example.test", sender="carol@solo.test")

    assert await world.run_once() == 1
    assert world.recipient(qid, "team@example.test").state == "deferred"
    assert world.inbox(ALICE) == [] and world.inbox(bob) == []

    (broken / "tmp").unlink()
    world.clock.set_time(world.clock.time() + HOUR)
    assert await world.run_once() == 1
    assert world.queue.get(qid) is None
    (alice_copy,) = world.inbox(ALICE)
    assert alice_copy["Delivered-To"] == ALICE
    assert alice_copy["Return-Path"] == "<carol@solo.test>"
    assert len(world.inbox(bob)) == 1


# ----------------------------------------------------------- 9. on the wire: the real client


@in_loop
async def test_backup_mx_takes_the_mail_when_the_primary_greets_with_554(wire: World) -> None:
    primary = await wire.listen("127.0.0.2", greeting="554 5.7.1 No service here")
    backup = await wire.listen("127.0.0.3")
    qid = wire.send("bob@other.test")

    await wire.run_once()

    assert wire.queue.get(qid) is None
    assert primary.sessions[0].commands == ["QUIT"]  # RFC 5321 §3.1
    assert primary.transactions == []
    assert backup.delivered_to("bob@other.test") == 1
    assert reports(wire) == []


@in_loop
async def test_messages_to_one_domain_share_a_connection_with_rset_only_when_needed(
    wire: World,
) -> None:
    mx = await wire.listen("127.0.0.1", rcpt={"gone@solo.test": "550 5.1.1 No such user"})
    first = wire.send("bob@solo.test")
    second = wire.send("gone@solo.test")  # no recipient accepted: the host may hold MAIL
    third = wire.send("carol@solo.test", "dave@solo.test")
    fourth = wire.send("erin@solo.test")

    assert await wire.run_once() == 5

    (session,) = mx.sessions
    assert session.verbs == [
        "EHLO",
        "MAIL", "RCPT", "DATA",  # first
        "MAIL", "RCPT", "DATA",  # second: 550, then 554 to the pipelined DATA
        "RSET",  # RFC 5321 §4.1.1.5: only after the transaction that was not completed
        "MAIL", "RCPT", "RCPT", "DATA",  # third
        "MAIL", "RCPT", "DATA",  # fourth: straight on after a completed one
        "QUIT",
    ]  # fmt: skip
    assert [t.recipients for t in session.transactions] == [
        ["bob@solo.test"],
        ["carol@solo.test", "dave@solo.test"],
        ["erin@solo.test"],
    ]
    for qid in (first, second, third, fourth):
        assert wire.queue.get(qid) is None


@in_loop
async def test_the_content_is_dot_stuffed_on_the_wire(wire: World) -> None:
    mx = await wire.listen("127.0.0.1")
    content = b"Subject: dots\r\n\r\n.leading\r\n..two\r\nmiddle.dot\r\n.\r\nend"
    wire.send("bob@solo.test", content=content)

    await wire.run_once()

    (txn,) = mx.transactions
    assert txn.data == (
        b"Subject: dots\r\n\r\n..leading\r\n...two\r\nmiddle.dot\r\n..\r\nend\r\n.\r\n"
    )
    raw = bytes(mx.sessions[0].raw)
    assert b"\r\n..leading\r\n" in raw
    assert raw.endswith(b"\r\n.\r\nQUIT\r\n")


@in_loop
async def test_bare_line_feeds_go_out_as_crlf(wire: World) -> None:
    mx = await wire.listen("127.0.0.1")
    wire.send("bob@solo.test", content=b"Subject: lf\n\n.one\ntwo\n")

    await wire.run_once()

    (txn,) = mx.transactions
    assert txn.data == b"Subject: lf\r\n\r\n..one\r\ntwo\r\n.\r\n"


@in_loop
async def test_a_silent_host_does_not_hold_up_other_domains(wire: World) -> None:
    async def never_greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up or the test ends
        writer.close()

    silent = await asyncio.start_server(never_greet, "127.0.0.4", wire.port)
    solo = await wire.listen("127.0.0.1")
    stop = asyncio.Event()
    try:
        stuck = wire.send("bob@silent.test")
        quick = wire.send("bob@solo.test")
        runner = asyncio.create_task(wire.outbound.run(stop))
        for _ in range(200):  # real time: the silent host would block for 5 minutes
            if wire.queue.get(quick) is None:
                break
            await asyncio.sleep(0.01)
        assert wire.queue.get(quick) is None
        assert solo.delivered_to("bob@solo.test") == 1
        assert wire.recipient(stuck, "bob@silent.test").state == "pending"  # still in flight
    finally:
        stop.set()
        silent.close()
        for task in list(wire.outbound._tasks):
            task.cancel()
        await asyncio.wait_for(runner, 15)


@in_loop
async def test_connections_come_from_source_ip_and_say_helo_name(
    wire: World, tmp_path: Path
) -> None:
    (tmp_path / "own").mkdir()
    wire.config = _config(
        tmp_path / "own", wire.port, 'source_ip = "127.0.0.5"\nhelo_name = "out.example.test"\n'
    )
    wire.outbound = wire._outbound()
    mx = await wire.listen("127.0.0.1")
    wire.send("bob@solo.test")
    await wire.run_once()
    (session,) = mx.sessions
    assert session.peer == "127.0.0.5"
    assert session.commands[0] == "EHLO out.example.test"
