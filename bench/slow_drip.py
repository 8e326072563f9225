"""Slow-drip clients: is a normal client still greeted while thousands of slow sockets hold on?

The goal from the issue: with 3,000 slow-drip sockets from 20 addresses
held against each protocol, a normal client from a new address is greeted
within 5 s at any moment, every slow socket is closed within its deadline,
and logged-in sessions (IDLE included) are undisturbed.

The script starts ``mailstead serve`` itself with the shipped defaults
(``mailstead init`` in a fresh temporary directory; only the listen ports
are changed, to free loopback ports), adds a user, logs in one IMAP client
(STARTTLS, then IDLE) and one POP3 client (STLS), and then, one protocol at
a time (SMTP's port-25 role, IMAP, POP3; ``--together`` for all at once):

* a separate process opens 3,000 sockets from 20 source addresses
  (127.0.2.1-20, one /24; ``--spread``: 127.0.10-29.1, twenty /24s), each
  sending one byte every few seconds after the greeting and never ending a
  line, and re-opens every socket the server closes or refuses (1 s after
  a close, backing off to 8 s after refusals);
* once a second a normal client from a new address (127.0.9.N) connects
  and times the greeting, then a short session (SMTP EHLO + QUIT, IMAP
  CAPABILITY + LOGOUT, POP3 CAPA + QUIT);
* afterwards the IDLE session must answer DONE and NOOP, the POP3 session
  NOOP.

Usage::

    .venv/bin/python bench/slow_drip.py --quick               # one round, 20 s per protocol
    .venv/bin/python bench/slow_drip.py --write-docs          # 5 rounds, 65 s per protocol
    .venv/bin/python bench/slow_drip.py --spread --rounds 1   # the per-address and total caps
    .venv/bin/python bench/slow_drip.py --together --protocols smtp,imap,pop3

Exits 1 if a goal was missed, and prints what missed it. ``--write-docs``
writes the tables into docs/benchmarks.md ("Slow-drip clients", between
``<!-- slow-drip…:start/end -->`` markers, one block per variant).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import multiprocessing
import multiprocessing.connection
import os
import platform
import random
import re
import resource
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cpu import MachineCPU, tree_cpu_seconds
from mailstead_env import init_with_user, listen_on, mailstead_version
from netutil import free_port, wait_for_port
from smtp_inbound import cpu_model, loadavg, replace_section

from mailstead.config import ConnectionLimitsConfig

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs" / "benchmarks.md"
DOMAIN = "example.test"
USER = f"alice@{DOMAIN}"
PASSWORD = "slow-drip-bench"
LISTENERS = ("smtp", "submission", "submissions", "imap", "imaps", "pop3", "pop3s")
PROTOCOLS = ("smtp", "submission", "imap", "pop3")
LABEL = {"smtp": "SMTP (port 25 role)", "submission": "submission", "imap": "IMAP", "pop3": "POP3"}
GREETING = {"smtp": b"220", "submission": b"220", "imap": b"* OK", "pop3": b"+OK"}
# What the slow sockets trickle after the greeting, then "x" for ever.
DRIP_PREFIX = {
    "smtp": b"EHLO slow.drip.test",
    "submission": b"EHLO slow.drip.test",
    "imap": b"a1 NOOP ",
    "pop3": b"CAPA ",
}
GOAL_GREETING = 5.0  # seconds, from the issue
PROBE_TIMEOUT = 30.0  # a probe still waiting then counts as missed
CONNECT_TIMEOUT = 10.0
SETTLE = 2.0  # seconds between phases, for the server to see the closes
# Linux: let connect() pick the source port, so 3,000 sockets from one
# address are bounded by the 4-tuple, not by bind()'s port range.
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)

T = TypeVar("T")


def revision() -> str:
    """``git describe --always --dirty`` of the tree the server runs from."""
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip()


def raise_nofile() -> int:
    """Raise this process's soft RLIMIT_NOFILE to the hard limit; the new soft limit."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def tls_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False  # `mailstead init` made a self-signed certificate
    context.verify_mode = ssl.CERT_NONE
    return context


# --------------------------------------------------------------------------- server


@dataclass(frozen=True)
class Server:
    """A running ``mailstead serve`` with its listen ports and log."""

    process: subprocess.Popen[bytes]
    ports: dict[str, int]
    log: Path

    def log_problems(self) -> list[str]:
        """Lines of the server's log that say something went wrong."""
        pattern = re.compile(
            r"Traceback|watchdog:|exited \(status|killing it|session with \[.*\] failed|keep dying"
        )
        text = self.log.read_text(errors="replace")
        return [line for line in text.splitlines() if pattern.search(line)]


@contextlib.contextmanager
def mailstead_server(root: Path) -> Iterator[Server]:
    """``mailstead init`` under ``root``, free loopback ports, one user, ``serve``; stop on exit."""
    ports = {name: free_port() for name in LISTENERS}
    cli = init_with_user(
        root / "mailstead.toml", USER, PASSWORD, lambda text: listen_on(text, ports)
    )
    log = root / "serve.log"
    with log.open("wb") as out:
        # Thousands of sockets: the server gets the hard limit as its soft one.
        process = subprocess.Popen(
            [*cli, "serve"], stdout=out, stderr=subprocess.STDOUT, preexec_fn=raise_nofile
        )
    try:
        for port in ports.values():
            wait_for_port(port, process)
        yield Server(process, ports, log)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)  # serve's clean shutdown
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# --------------------------------------------------------------------------- slow sockets


@dataclass(frozen=True)
class AttackPlan:
    """What one attacking process does against one listener."""

    protocol: str
    port: int
    sources: tuple[str, ...]
    sockets: int
    duration: float
    drip: float  # seconds between two bytes of one socket
    ramp: float  # seconds over which the sockets are first opened
    retry_max: float  # longest wait before reconnecting after refusals


@dataclass
class AttackResult:
    """What the slow sockets saw."""

    protocol: str
    # Sockets the server greeted and later closed: (seconds from connect to the close,
    # the server's last line, seconds from the start of the attack to the connect).
    lifetimes: list[tuple[float, str, float]] = field(default_factory=list)
    # Sockets still open when the attack ended: seconds since their connect.
    open_ages: list[float] = field(default_factory=list)
    held: list[int] = field(default_factory=list)  # greeted and open, once a second
    greet_waits: list[float] = field(default_factory=list)  # connect to greeting, seconds
    attempts: int = 0
    refused: dict[str, int] = field(default_factory=dict)  # the server's first line: count
    errors: dict[str, int] = field(default_factory=dict)  # connect errors: count
    cpu: float = 0.0  # CPU seconds of the attacking process


def _count(counts: dict[str, int], key: str) -> None:
    counts[key] = counts.get(key, 0) + 1


class _Drip(asyncio.Protocol):
    """One slow socket: remembers its first line, its last bytes and when it was closed."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.tail = b""
        loop = asyncio.get_running_loop()
        self.first_line: asyncio.Future[bytes | None] = loop.create_future()
        self.closed: asyncio.Future[float] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.tail = (self.tail + data)[-2048:]
        if not self.first_line.done() and b"\n" in self.tail:
            self.first_line.set_result(self.tail.split(b"\n", 1)[0].rstrip(b"\r"))

    def eof_received(self) -> bool:
        self._end()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._end()

    def _end(self) -> None:
        if not self.closed.done():
            self.closed.set_result(time.monotonic())
        if not self.first_line.done():
            self.first_line.set_result(None)

    def last_line(self) -> str:
        line = self.tail.rstrip(b"\r\n").rsplit(b"\n", 1)[-1].rstrip(b"\r")
        return line.decode(errors="replace") or "(closed without a word)"


async def _connect(source: str, port: int) -> _Drip:
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        sock.bind((source, 0))
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", port))
        _, protocol = await loop.create_connection(_Drip, sock=sock)
    except BaseException:
        sock.close()
        raise
    return protocol


async def _wait(future: asyncio.Future[T], timeout: float) -> bool:
    """Whether ``future`` is done within ``timeout`` seconds (it is not cancelled)."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(future), max(0.0, timeout))
    return future.done()


class _Attack:
    """Keeps up to ``plan.sockets`` slow sockets open until ``plan.duration`` is over."""

    def __init__(self, plan: AttackPlan) -> None:
        self.plan = plan
        self.result = AttackResult(plan.protocol)
        self.live: dict[_Drip, float] = {}  # greeted sockets: when each connected
        self.end = time.monotonic() + plan.duration
        self.stopping = False  # the attack is over: closes from now on are ours

    async def run(self) -> AttackResult:
        slots = [asyncio.create_task(self._slot(i)) for i in range(self.plan.sockets)]
        while (now := time.monotonic()) < self.end:
            await asyncio.sleep(min(1.0, self.end - now))
            self.result.held.append(len(self.live))
        self.stopping = True
        now = time.monotonic()
        for drip, connected in list(self.live.items()):
            if drip.closed.done():  # closed by the server, its slot has not run since
                self._closed(drip, connected)
            else:
                self.result.open_ages.append(now - connected)
            if drip.transport is not None:
                drip.transport.abort()
        for task in slots:
            task.cancel()
        await asyncio.gather(*slots, return_exceptions=True)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self.result.cpu = usage.ru_utime + usage.ru_stime
        return self.result

    def _closed(self, drip: _Drip, connected: float) -> None:
        since = connected - (self.end - self.plan.duration)
        self.result.lifetimes.append((drip.closed.result() - connected, drip.last_line(), since))

    async def _slot(self, index: int) -> None:
        plan, result = self.plan, self.result
        source = plan.sources[index % len(plan.sources)]
        prefix = DRIP_PREFIX[plan.protocol]
        await asyncio.sleep(plan.ramp * index / plan.sockets)
        backoff = 1.0
        while time.monotonic() < self.end:
            result.attempts += 1
            try:
                drip = await asyncio.wait_for(_connect(source, plan.port), CONNECT_TIMEOUT)
            except (OSError, TimeoutError) as exc:
                _count(result.errors, type(exc).__name__)
                await asyncio.sleep(backoff * random.uniform(0.5, 1.0))
                backoff = min(backoff * 2, plan.retry_max)
                continue
            connected = time.monotonic()
            if not await _wait(drip.first_line, self.end - connected):
                if drip.transport is not None:
                    drip.transport.abort()
                break  # the attack ended before the server said anything
            line = drip.first_line.result()
            if line is None or not line.startswith(GREETING[plan.protocol]):
                _count(result.refused, line.decode(errors="replace")[:80] if line else "no word")
                if drip.transport is not None:
                    drip.transport.abort()
                await asyncio.sleep(backoff * random.uniform(0.5, 1.0))
                backoff = min(backoff * 2, plan.retry_max)
                continue
            backoff = 1.0
            result.greet_waits.append(time.monotonic() - connected)
            self.live[drip] = connected
            sent = 0
            while not drip.closed.done() and time.monotonic() < self.end:
                assert drip.transport is not None
                byte = prefix[sent : sent + 1] or b"x"
                if not drip.transport.is_closing():
                    drip.transport.write(byte)
                sent += 1
                pause = plan.drip * random.uniform(0.9, 1.1)
                await _wait(drip.closed, min(pause, self.end - time.monotonic()))
            if drip.closed.done() and not self.stopping:
                del self.live[drip]
                self._closed(drip, connected)
                await asyncio.sleep(random.uniform(0.5, 1.5))


def attack_process(plan: AttackPlan, conn: multiprocessing.connection.Connection) -> None:
    """Child process: run the attack; send "go" when it starts, then the result."""
    raise_nofile()

    async def main() -> AttackResult:
        attack = _Attack(plan)
        conn.send("go")
        return await attack.run()

    conn.send(asyncio.run(main()))
    conn.close()


# --------------------------------------------------------------------------- normal clients


@dataclass(frozen=True)
class Probe:
    """One normal client: seconds to the greeting and to the end of a short session."""

    greeting: float | None  # None: not greeted (refused, timed out, failed)
    session: float | None
    error: str = ""


async def _read_until(
    reader: asyncio.StreamReader, done: Callable[[bytes], bool], timeout: float
) -> bytes:
    """Read lines until ``done(line)``; that line (ConnectionError at EOF)."""
    async with asyncio.timeout(timeout):
        while True:
            line = await reader.readline()
            if not line:
                raise ConnectionError("closed by the server")
            if done(line):
                return line


def _smtp_reply_end(line: bytes) -> bool:
    return len(line) >= 4 and line[3:4] == b" "


async def probe(protocol: str, port: int, source: str) -> Probe:
    """Connect from ``source``, time the greeting and a short session, disconnect."""
    start = time.perf_counter()
    writer: asyncio.StreamWriter | None = None
    greeted: float | None = None
    try:
        async with asyncio.timeout(PROBE_TIMEOUT):
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, local_addr=(source, 0)
            )
            if protocol in ("smtp", "submission"):
                first = await _read_until(reader, _smtp_reply_end, PROBE_TIMEOUT)
            else:
                first = await reader.readline()
            if not first.startswith(GREETING[protocol]):
                text = first.decode(errors="replace").strip() or "closed without a greeting"
                return Probe(None, None, text)
            greeted = time.perf_counter() - start
            if protocol in ("smtp", "submission"):
                writer.write(b"EHLO probe.test\r\n")
                await _read_until(reader, _smtp_reply_end, PROBE_TIMEOUT)
                writer.write(b"QUIT\r\n")
                await _read_until(reader, _smtp_reply_end, PROBE_TIMEOUT)
            elif protocol == "imap":
                writer.write(b"p1 CAPABILITY\r\n")
                await _read_until(reader, lambda x: x.startswith(b"p1 "), PROBE_TIMEOUT)
                writer.write(b"p2 LOGOUT\r\n")
                await _read_until(reader, lambda x: x.startswith(b"p2 "), PROBE_TIMEOUT)
            else:
                writer.write(b"CAPA\r\n")
                await _read_until(reader, lambda x: x == b".\r\n", PROBE_TIMEOUT)
                writer.write(b"QUIT\r\n")
                await _read_until(reader, lambda x: True, PROBE_TIMEOUT)
            return Probe(greeted, time.perf_counter() - start)
    except (OSError, TimeoutError) as exc:
        return Probe(greeted, None, f"{type(exc).__name__}: {exc}".strip(": "))
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


class ProbeAddresses:
    """127.0.9.1, 127.0.9.2, …: a new address (outside the attackers' /24s) for each client."""

    def __init__(self) -> None:
        self.n = 0

    def next(self) -> str:
        self.n = self.n % 250 + 1
        return f"127.0.9.{self.n}"


async def probe_every_second(
    protocol: str, port: int, duration: float, addresses: ProbeAddresses
) -> list[Probe]:
    """One probe per second for ``duration`` seconds, each on its own schedule."""
    start = time.monotonic()
    tasks = []
    for i in range(int(duration)):
        await asyncio.sleep(max(0.0, start + i - time.monotonic()))
        tasks.append(asyncio.create_task(probe(protocol, port, addresses.next())))
    return list(await asyncio.gather(*tasks))


# --------------------------------------------------------------------------- logged-in clients


class LoggedIn:
    """The IMAP session in IDLE and the POP3 session, logged in before the attack."""

    def __init__(self) -> None:
        self.imap: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self.pop3: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self.tag = 0
        self.idle_tag = ""
        self.state = {"IMAP IDLE": "not opened", "POP3": "not opened"}

    async def open(self, ports: dict[str, int]) -> None:
        context = tls_context()
        reader, writer = await asyncio.open_connection("127.0.0.1", ports["imap"])
        await _read_until(reader, lambda x: x.startswith(b"* OK"), 10)
        await self._imap(reader, writer, "STARTTLS")
        await writer.start_tls(context)
        await self._imap(reader, writer, f'LOGIN "{USER}" "{PASSWORD}"')
        await self._imap(reader, writer, "SELECT INBOX")
        self.imap = (reader, writer)
        await self._idle()
        reader, writer = await asyncio.open_connection("127.0.0.1", ports["pop3"])
        await _read_until(reader, lambda x: x.startswith(b"+OK"), 10)
        for command in ("STLS", f"USER {USER}", f"PASS {PASSWORD}"):
            writer.write(f"{command}\r\n".encode())
            reply = await _read_until(reader, lambda x: True, 10)
            if not reply.startswith(b"+OK"):
                raise RuntimeError(f"POP3 {command.split()[0]}: {reply!r}")
            if command == "STLS":
                await writer.start_tls(context)
        self.pop3 = (reader, writer)
        self.state = {"IMAP IDLE": "ok", "POP3": "ok"}

    async def _imap(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, cmd: str
    ) -> None:
        self.tag += 1
        tag = f"t{self.tag}".encode()
        writer.write(tag + b" " + cmd.encode() + b"\r\n")
        reply = await _read_until(reader, lambda x: x.startswith(tag + b" "), 10)
        if not reply.startswith(tag + b" OK"):
            raise RuntimeError(f"IMAP {cmd.split()[0]}: {reply!r}")

    async def _idle(self) -> None:
        assert self.imap is not None
        reader, writer = self.imap
        self.tag += 1
        self.idle_tag = f"t{self.tag}"
        writer.write(f"{self.idle_tag} IDLE\r\n".encode())
        await _read_until(reader, lambda x: x.startswith(b"+ "), 10)

    async def check(self) -> dict[str, str]:
        """End IDLE, NOOP, IDLE again; POP3 NOOP. "ok" or what went wrong, per session."""
        if self.imap is not None and self.state["IMAP IDLE"] == "ok":
            self.state["IMAP IDLE"] = await self._check(self._check_imap)
        if self.pop3 is not None and self.state["POP3"] == "ok":
            self.state["POP3"] = await self._check(self._check_pop3)
        return dict(self.state)

    @staticmethod
    async def _check(check: Callable[[], Awaitable[None]]) -> str:
        try:
            await check()
        except (OSError, TimeoutError, RuntimeError) as exc:
            return f"broken: {type(exc).__name__} {exc}".strip()
        return "ok"

    async def _check_imap(self) -> None:
        assert self.imap is not None
        reader, writer = self.imap
        writer.write(b"DONE\r\n")
        tag = self.idle_tag.encode()
        reply = await _read_until(reader, lambda x: x.startswith((tag + b" ", b"* BYE")), 10)
        if not reply.startswith(tag + b" OK"):
            raise RuntimeError(f"DONE: {reply!r}")
        await self._imap(reader, writer, "NOOP")
        await self._idle()

    async def _check_pop3(self) -> None:
        assert self.pop3 is not None
        reader, writer = self.pop3
        writer.write(b"NOOP\r\n")
        reply = await _read_until(reader, lambda x: True, 10)
        if not reply.startswith(b"+OK"):
            raise RuntimeError(f"NOOP: {reply!r}")

    async def close(self) -> None:
        for pair, bye in ((self.imap, b"DONE\r\nz LOGOUT\r\n"), (self.pop3, b"QUIT\r\n")):
            if pair is not None:
                with contextlib.suppress(OSError):
                    pair[1].write(bye)
                pair[1].close()


# --------------------------------------------------------------------------- one phase


@dataclass
class Phase:
    """One protocol under attack in one round."""

    protocol: str
    probes: list[Probe]
    attack: AttackResult
    logged_in: dict[str, str]
    busy: float  # share of all CPUs busy during the phase
    server_cpu: float  # CPU seconds of the server's process tree
    seconds: float

    @property
    def greetings(self) -> list[float]:
        return [p.greeting for p in self.probes if p.greeting is not None]

    @property
    def missed(self) -> int:
        """Probes not greeted within the goal (never greeted counts too)."""
        return sum(1 for p in self.probes if p.greeting is None or p.greeting > GOAL_GREETING)


def sources(spread: bool) -> tuple[str, ...]:
    if spread:  # twenty /24s: the per-address and total caps bite
        return tuple(f"127.0.{n}.1" for n in range(10, 30))
    return tuple(f"127.0.2.{n}" for n in range(1, 21))  # one /24


async def run_phase(
    protocols: Sequence[str],
    server: Server,
    logged_in: LoggedIn,
    args: argparse.Namespace,
    addresses: ProbeAddresses,
) -> list[Phase]:
    """Attack ``protocols`` together for ``args.duration`` while probing each once a second."""
    spawn = multiprocessing.get_context("spawn")
    children = []
    for protocol in protocols:
        plan = AttackPlan(
            protocol,
            server.ports[protocol],
            sources(args.spread),
            args.sockets,
            args.duration,
            args.drip,
            args.ramp,
            args.retry_max,
        )
        ours, theirs = spawn.Pipe()
        child = spawn.Process(target=attack_process, args=(plan, theirs), daemon=True)
        child.start()
        children.append((child, ours))
    loop = asyncio.get_running_loop()
    for _, conn in children:
        if await loop.run_in_executor(None, conn.recv) != "go":
            raise RuntimeError("the attacking process did not start")
    machine = MachineCPU.now()
    cpu_before = tree_cpu_seconds(server.process.pid)
    started = time.monotonic()
    probes = await asyncio.gather(
        *(probe_every_second(p, server.ports[p], args.duration, addresses) for p in protocols)
    )
    results: list[AttackResult] = []
    for child, conn in children:
        results.append(await loop.run_in_executor(None, conn.recv))
        child.join(30)
    seconds = time.monotonic() - started
    busy, _ = MachineCPU.now().share_since(machine)
    cpu_after = tree_cpu_seconds(server.process.pid)
    server_cpu = sum(cpu_after) - sum(cpu_before)
    await asyncio.sleep(SETTLE)
    state = await logged_in.check()
    return [
        Phase(p, probes[i], results[i], state, busy, server_cpu, seconds)
        for i, p in enumerate(protocols)
    ]


async def run_round(
    args: argparse.Namespace, number: int, work: Path
) -> tuple[list[Phase], list[str]]:
    """A fresh server, the logged-in sessions, then each protocol (or all together)."""
    root = work / f"round-{number}"
    root.mkdir()
    addresses = ProbeAddresses()
    phases: list[Phase] = []
    with mailstead_server(root) as server:
        logged_in = LoggedIn()
        await logged_in.open(server.ports)
        try:
            groups = [args.protocols] if args.together else [[p] for p in args.protocols]
            for group in groups:
                note(f"round {number}: {'+'.join(group)} for {args.duration:.0f} s ...")
                done = await run_phase(group, server, logged_in, args, addresses)
                for phase in done:
                    note("  " + phase_line(phase))
                phases += done
        finally:
            await logged_in.close()
        alive = server.process.poll() is None
    problems = server.log_problems()
    if not alive:
        problems.insert(0, f"server exited with status {server.process.returncode} during the run")
    if problems:
        note(f"round {number}: {len(problems)} problem line(s) in {server.log}")
    return phases, problems


# --------------------------------------------------------------------------- report


def note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def p99(values: Sequence[float]) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[98]


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def phase_line(phase: Phase) -> str:
    g = phase.greetings
    life = [s for s, *_ in phase.attack.lifetimes]
    return (
        f"{phase.protocol}: greeting median {_median(g) * 1000:.1f} ms, max "
        f"{max(g, default=float('nan')) * 1000:.1f} ms, {phase.missed}/{len(phase.probes)} "
        f"over {GOAL_GREETING:.0f} s; held median {_median(phase.attack.held):.0f} max "
        f"{max(phase.attack.held, default=0)}; {len(life)} closed by the server, lifetime "
        f"median {_median(life):.1f} s max {max(life, default=float('nan')):.1f} s; "
        f"client CPU {phase.attack.cpu:.0f} s, server CPU {phase.server_cpu:.0f} s, "
        f"all CPUs {phase.busy:.0%} busy; logged in: {phase.logged_in}"
    )


def deadline(protocol: str) -> float:
    """The longest a slow socket may live with the shipped [limits] (no stress)."""
    limits = ConnectionLimitsConfig()
    if protocol == "smtp":  # no login on the MTA port: the line deadline ends it
        return float(limits.line_timeout)
    return float(max(limits.line_timeout, limits.login_timeout))


def goals(phases: Sequence[Phase], slack: float) -> list[str]:
    """Every missed goal, in words."""
    missed = []
    for i, phase in enumerate(phases):
        where = f"{LABEL[phase.protocol]} (phase {i + 1})"
        if phase.missed:
            errors = collections.Counter(p.error or "slow" for p in phase.probes if p.error)
            slow = [p.greeting for p in phase.probes if p.greeting and p.greeting > GOAL_GREETING]
            missed.append(
                f"{where}: {phase.missed} of {len(phase.probes)} normal clients not greeted"
                f" within {GOAL_GREETING:.0f} s (slowest greeted {max(slow, default=0):.1f} s;"
                f" failures {dict(errors)})"
            )
        limit = deadline(phase.protocol) + slack
        late = [s for s, *_ in phase.attack.lifetimes if s > limit]
        old = [s for s in phase.attack.open_ages if s > limit]
        if late or old:
            missed.append(
                f"{where}: {len(late)} slow sockets closed after {limit:.0f} s (longest"
                f" {max(late, default=0):.1f} s), {len(old)} still open past it at the end"
                f" (oldest {max(old, default=0):.1f} s)"
            )
        broken = {k: v for k, v in phase.logged_in.items() if v != "ok"}
        if broken:
            missed.append(f"{where}: logged-in sessions disturbed: {broken}")
    return missed


def _spread(values: Sequence[float], fmt: str, unit: str = "") -> str:
    """``median (min–max)`` over rounds with ``unit``, or the one value; "–" for none."""
    clean = [v for v in values if v == v]  # drop NaN
    if not clean:
        return "–"
    text = format(statistics.median(clean), fmt)
    if len(clean) > 1:
        text += f" ({format(min(clean), fmt)}–{format(max(clean), fmt)})"
    return text + unit


def _reasons(phases: Sequence[Phase]) -> str:
    """How the server closed the slow sockets: the last lines, most frequent first."""
    counts: collections.Counter[str] = collections.Counter()
    for phase in phases:
        counts.update(_shorten(line) for _, line, _ in phase.attack.lifetimes)
    total = sum(counts.values())
    if not total:
        return "–"
    return "; ".join(f"{n / total:.0%} {reason}" for reason, n in counts.most_common(3))


def _shorten(line: str) -> str:
    for word in ("Command line not completed", "Login not completed", "Server busy", "Idle"):
        if word in line:
            return f"`{word}…`"
    return f"`{line[:40]}`"


def tables(phases: Sequence[Phase], rounds: int, drip: float, together: bool) -> str:
    by_protocol: dict[str, list[Phase]] = {}
    for phase in phases:
        by_protocol.setdefault(phase.protocol, []).append(phase)
    how = (
        f"each cell is the median over the {rounds} rounds of that round's figure,"
        " (min–max) over the rounds"
        if rounds > 1
        else "one round"
    )
    out = [
        f"Normal clients, one a second from a new address (127.0.9.N) during the attack; {how}:",
        "",
        "| protocol | clients | greeting median | greeting p99 | greeting max "
        f"| not greeted within {GOAL_GREETING:.0f} s (goal 0) | short session median |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for protocol, runs in by_protocol.items():
        greet = [[g * 1000 for g in r.greetings] for r in runs]
        sessions = [[p.session * 1000 for p in r.probes if p.session is not None] for r in runs]
        failed = sum(1 for r in runs for p in r.probes if p.greeting and p.session is None)
        out.append(
            f"| {LABEL[protocol]} | {sum(len(r.probes) for r in runs):,} "
            f"| {_spread([_median(g) for g in greet], '.1f', ' ms')} "
            f"| {_spread([p99(g) for g in greet], '.1f', ' ms')} "
            f"| {_spread([max(g, default=float('nan')) for g in greet], '.1f', ' ms')} "
            f"| {sum(r.missed for r in runs)} "
            f"| {_spread([_median(s) for s in sessions], '.1f', ' ms')}"
            f"{f' ({failed} failed after the greeting)' if failed else ''} |"
        )
    stressed = ConnectionLimitsConfig().stress_timeout
    out += [
        "",
        "Short session: SMTP greeting + EHLO + QUIT, IMAP greeting + CAPABILITY + LOGOUT,"
        " POP3 greeting + CAPA + QUIT, from connect to the last reply.",
        "",
        f"Slow sockets, each greeted and then sent one byte every {drip:.0f} s, never a"
        " whole line; lifetime from connect to the server's close; held: greeted and open,"
        " sampled once a second:",
        "",
        "| protocol | held, median | held, max | connects | refused | closed by the server "
        "| lifetime median | lifetime max | oldest open at the end | deadline | last words |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for protocol, runs in by_protocol.items():
        life = [[s for s, *_ in r.attack.lifetimes] for r in runs]
        out.append(
            f"| {LABEL[protocol]} | {_spread([_median(r.attack.held) for r in runs], '.0f')} "
            f"| {_spread([max(r.attack.held, default=0) for r in runs], '.0f')} "
            f"| {_spread([r.attack.attempts for r in runs], ',.0f')} "
            f"| {_spread([sum(r.attack.refused.values()) for r in runs], ',.0f')} "
            f"| {_spread([len(x) for x in life], ',.0f')} "
            f"| {_spread([_median(x) for x in life], '.1f', ' s')} "
            f"| {_spread([max(x, default=float('nan')) for x in life], '.1f', ' s')} "
            f"| {_spread([max(r.attack.open_ages, default=0) for r in runs], '.1f', ' s')} "
            f"| {deadline(protocol):.0f} s ({stressed} s under stress) "
            f"| {_reasons(runs)} |"
        )
    out += [
        "",
        "CPU as % of one CPU over the attack"
        f"{' (all protocols at once: the same figures in each row)' if together else ''};"
        " the machine's share is of all CPUs and includes anything else running:",
        "",
        "| protocol | server CPU | attacking process CPU | all CPUs busy "
        "| logged-in sessions after (rounds) |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for protocol, runs in by_protocol.items():
        states = collections.Counter(
            ", ".join(f"{k} {v}" for k, v in r.logged_in.items()) for r in runs
        )
        out.append(
            f"| {LABEL[protocol]} "
            f"| {_spread([100 * r.server_cpu / r.seconds for r in runs], '.0f', ' %')} "
            f"| {_spread([100 * r.attack.cpu / r.seconds for r in runs], '.0f', ' %')} "
            f"| {_spread([r.busy * 100 for r in runs], '.0f', ' %')} "
            f"| {'; '.join(f'{s} ({n}/{len(runs)})' for s, n in states.items())} |"
        )
    return "\n".join(out)


def report(
    phases: Sequence[Phase],
    problems: list[str],
    missed: list[str],
    args: argparse.Namespace,
    command: str,
    load_before: str,
    revisions: tuple[str, str],
) -> str:
    who = (
        "20 addresses in twenty /24s (127.0.10.1 … 127.0.29.1)"
        if args.spread
        else "20 addresses of one /24 (127.0.2.1 … 127.0.2.20)"
    )
    when = "all protocols at once" if args.together else "one protocol after another"
    limits = ConnectionLimitsConfig()
    lines = [
        f"Command: `{command}`",
        "",
        "| | |",
        "| --- | --- |",
        f"| machine | {os.cpu_count()} CPUs, {cpu_model()}; load average before {load_before} |",
        f"| Mailstead | {mailstead_version()}, git {revisions[0]}"
        f"{f' at the start, {revisions[1]} at the end' if revisions[1] != revisions[0] else ''};"
        f" Python {platform.python_version()} |",
        "| server | `mailstead serve` with the config `mailstead init` writes (only the ports"
        " changed, `workers = 0`: one per CPU), a fresh data directory each round |",
        f"| limits (defaults) | connections_per_ip {limits.connections_per_ip},"
        f" connections_per_network {limits.connections_per_network}, connections_total"
        f" {limits.connections_total}, line_timeout {limits.line_timeout} s, login_timeout"
        f" {limits.login_timeout} s, stress_threshold {limits.stress_threshold} %,"
        f" stress_timeout {limits.stress_timeout} s |",
        f"| slow sockets | {args.sockets:,} per protocol from {who}, opened over"
        f" {args.ramp:.0f} s, re-opened 0.5–1.5 s after the server closes one, 1 s → "
        f"{args.retry_max:.0f} s after refusals; {when}, {args.duration:.0f} s each |",
        "| logged in first | IMAP (STARTTLS) in IDLE, POP3 (STLS); checked after each"
        " protocol: DONE + NOOP + IDLE again, NOOP |",
        f"| rounds | {args.rounds} |",
        "",
        tables(phases, args.rounds, args.drip, args.together),
        "",
    ]
    if missed or problems:
        lines.append("**Goals missed:**")
        lines.append("")
        lines += [f"* {m}" for m in missed]
        if problems:
            lines.append(
                f"* the server's log has {len(problems)} problem line(s), the first:"
                f" `{problems[0][:160]}`"
            )
    else:
        lines.append(
            f"**Goals met:** every normal client greeted within {GOAL_GREETING:.0f} s, every"
            f" slow socket closed within its deadline (+{args.slack:.0f} s), the logged-in"
            " sessions undisturbed, no tracebacks in the server's log."
        )
    return "\n".join(lines) + "\n"


def write_docs(variant: str, body: str) -> None:
    """Put ``body`` between this variant's markers in the "Slow-drip clients" section."""
    text = DOCS.read_text() if DOCS.exists() else "# Benchmarks\n"
    start = f"<!-- {variant}:start -->"
    if start not in text:
        ends = [m.end() for m in re.finditer(r"<!-- slow-drip[a-z-]*:end -->", text)]
        block = f"{start}\n<!-- {variant}:end -->"
        if ends:
            text = f"{text[: ends[-1]]}\n\n{block}{text[ends[-1] :]}"
        else:
            text = f"{text.rstrip()}\n\n## Slow-drip clients\n\n{SECTION_INTRO}\n{block}\n"
    DOCS.write_text(replace_section(text, variant, body))
    note(f"updated {DOCS.relative_to(REPO)} ({variant})")


SECTION_INTRO = """\
`bench/slow_drip.py` (see its docstring): the issue's goal is that with
3,000 slow-drip sockets from 20 addresses held against each protocol, a
normal client from a new address is greeted within 5 s at any moment,
every slow socket is closed within its deadline, and logged-in sessions
(IDLE included) are undisturbed. The script starts `mailstead serve` with
the shipped defaults, logs in an IMAP client (IDLE) and a POP3 client,
then attacks each protocol's plain-text listener in turn from a separate
process while a normal client connects once a second from a new address.
Each protocol is attacked for 65 s rather than the 90 s first planned, so
that five rounds fit in about 18 minutes on 2 CPUs; 65 s still covers the
60 s deadlines of the first slow sockets.
"""


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--protocols", default="smtp,imap,pop3", help="listeners to attack (smtp,imap,pop3)"
    )
    p.add_argument("--together", action="store_true", help="attack every protocol at once")
    p.add_argument("--spread", action="store_true", help="20 addresses in twenty /24s")
    p.add_argument("--sockets", type=int, default=3000, help="slow sockets per protocol (3000)")
    p.add_argument("--duration", type=float, help="seconds per protocol (65; --quick 20)")
    p.add_argument("--rounds", type=int, help="rounds, each with a fresh server (5; --quick 1)")
    p.add_argument("--quick", action="store_true", help="one round of 20 s per protocol")
    p.add_argument("--drip", type=float, default=5.0, help="seconds between bytes (5)")
    p.add_argument("--ramp", type=float, default=3.0, help="seconds to open the sockets (3)")
    p.add_argument("--retry-max", type=float, default=8.0, help="longest reconnect backoff (8)")
    p.add_argument(
        "--slack", type=float, default=3.0, help="seconds a close may come after its deadline (3)"
    )
    p.add_argument("--samples", type=Path, help="write every sample to this JSON file")
    p.add_argument("--workdir", type=Path, help="parent of the scratch directory (/tmp)")
    p.add_argument("--keep", action="store_true", help="keep the data directories and logs")
    p.add_argument("--write-docs", action="store_true", help="update docs/benchmarks.md")
    args = p.parse_args(argv)
    args.protocols = [x for x in args.protocols.split(",") if x]
    if not args.protocols or set(args.protocols) - set(PROTOCOLS):
        p.error(f"--protocols: choose from {','.join(PROTOCOLS)}")
    if args.duration is None:
        args.duration = 20.0 if args.quick else 65.0
    if args.rounds is None:
        args.rounds = 1 if args.quick else 5
    if args.rounds < 1 or args.sockets < 1 or args.duration < 2:
        p.error("--rounds and --sockets must be positive, --duration at least 2")
    return args


async def run(args: argparse.Namespace, work: Path) -> tuple[list[Phase], list[str]]:
    phases: list[Phase] = []
    problems: list[str] = []
    for number in range(1, args.rounds + 1):
        done, trouble = await run_round(args, number, work)
        phases += done
        problems += trouble
    return phases, problems


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    limit = raise_nofile()
    need = args.sockets * (len(args.protocols) if args.together else 1) + 1000
    if limit < need:
        note(f"warning: RLIMIT_NOFILE hard limit {limit} < {need}; sockets may fail (EMFILE)")
    phases_per_round = 1 if args.together else len(args.protocols)
    estimate = args.rounds * phases_per_round * (args.duration + SETTLE + 2) + args.rounds * 5
    note(f"about {estimate / 60:.0f} min")
    command = " ".join([".venv/bin/python bench/slow_drip.py", *sys.argv[1:]])
    load_before = loadavg()
    started_at = revision()
    scratch = Path(tempfile.mkdtemp(prefix="mailstead-slowdrip-", dir=args.workdir))
    try:
        phases, problems = asyncio.run(run(args, scratch))
    finally:
        if args.keep:
            note(f"kept {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    missed = goals(phases, args.slack)
    revisions = (started_at, revision())
    text = report(phases, problems, missed, args, command, load_before, revisions)
    print(text)
    if args.samples:
        args.samples.write_text(json.dumps([asdict(phase) for phase in phases], indent=1))
        note(f"samples in {args.samples}")
    for line in problems[:20]:
        note(f"server log: {line}")
    if args.write_docs:
        variant = (
            "slow-drip"
            + ("-spread" if args.spread else "")
            + ("-together" if args.together else "")
        )
        write_docs(variant, text)
    return 1 if missed or problems else 0


if __name__ == "__main__":
    sys.exit(main())
