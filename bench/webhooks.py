"""Webhook benchmark: outbox throughput, 250-to-POST latency, SMTP with webhooks on.

Every part runs ``mailstead serve`` as its own process with the config
``mailstead init`` writes (only the listen ports changed; ``workers = 0``,
one per CPU), ``[http_client] allow_networks = ["127.0.0.0/8"]`` and one
``[[webhooks]]`` endpoint on a local receiver: a separate process, an
asyncio HTTP/1.1 server on 127.0.0.1 that reads each request whole,
verifies its signature with ``mailstead.webhooks.signing.verify`` and
answers ``200`` with keep-alive (or, for ``silent``, never answers).

    .venv/bin/python bench/webhooks.py                        # all three parts
    .venv/bin/python bench/webhooks.py --only throughput --events 2000 --rounds 1
    .venv/bin/python bench/webhooks.py --profile [--gil]         # throughput under py-spy
    .venv/bin/python bench/webhooks.py --write-docs

CPU per event with the dispatcher in one process, steadier than events/s on
a shared machine: ``bench/webhooks_cpu.py``.

Parts:

* ``throughput``: the outbox of a fresh data directory is filled with N
  ``message.received`` events (``Outbox.emit``) before ``serve`` starts;
  timed from the receiver's first request until it has answered N.
* ``latency``: messages sent one after another with smtplib to the MTA
  listener; from each ``250`` to the receiver reading that message's
  ``message.received`` (matched by Subject).
* ``smtp``: ``smtp-source`` (as ``smtp_inbound.py`` runs it) against three
  configurations, alternating: no endpoint (off), a receiver answering 200
  (on), a receiver that accepts and never answers (silent).

A server that stops taking mail (no Maildir growth, or no SMTP reply, for
:data:`STALL` seconds) is killed and the run reported as stalled.

Postfix's ``smtp-source`` is needed for ``smtp`` (``apt-get install -y postfix``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import re
import resource
import shutil
import signal
import smtplib
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from email.message import EmailMessage
from pathlib import Path

from cpu import MachineCPU, tree_cpu_seconds
from mailstead_env import init_with_user, listen_on
from netutil import free_port, wait_for_port
from profile_summary import summarise
from smtp_inbound import Load, Timing, count_new, cpu_model, loadavg, write_docs

from mailstead.webhooks.signing import WebhookVerificationError, verify

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
DOMAIN = "example.test"
RECIPIENT = f"alice@{DOMAIN}"
SENDER = "bench@client.test"
LISTENERS = ("smtp", "submission", "submissions", "imap", "imaps", "pop3", "pop3s")
# A fixed Standard Webhooks secret (the bytes 0 to 31), so receiver and server agree.
SECRET = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
PARTS = ("throughput", "latency", "smtp")
SMTP_CONFIGS = ("off", "on", "silent")
POLL = 0.05
# smtp part: a run whose Maildir has not grown for this long has stalled.
STALL = 15.0
PROFILE_RATE = 100


# --------------------------------------------------------------------------- receiver


@dataclass
class ReceiverState:
    """What the receiver process counts; read by its command thread."""

    silent: bool
    verify: bool
    record: bool
    requests: int = 0
    answered: int = 0
    bad_signatures: int = 0
    first: float = 0.0  # monotonic time of the first request's last byte
    last: float = 0.0  # of the last answer written
    ids: set[str] = field(default_factory=set)
    # (monotonic time the request was read, event type, Subject) per request
    records: list[tuple[float, str, str]] = field(default_factory=list)


_OK = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"


class _HTTPReceiver(asyncio.Protocol):
    """Reads whole HTTP/1.1 requests (Content-Length bodies) and answers 200, kept alive."""

    def __init__(self, state: ReceiverState) -> None:
        self.state = state
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.state.silent:
            return  # read and dropped, so the sender never blocks on a full socket
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            headers: dict[str, str] = {}
            for line in bytes(self.buffer[:end]).decode("latin-1").split("\r\n")[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            total = end + 4 + int(headers.get("content-length", "0"))
            if len(self.buffer) < total:
                return
            body = bytes(self.buffer[end + 4 : total])
            del self.buffer[:total]
            self._handle(headers, body)

    def _handle(self, headers: dict[str, str], body: bytes) -> None:
        state = self.state
        now = time.monotonic()
        state.requests += 1
        if state.first == 0.0:
            state.first = now
        if state.verify:
            try:
                verify(SECRET, body, headers)
            except WebhookVerificationError:
                state.bad_signatures += 1
        state.ids.add(headers.get("webhook-id", ""))
        if state.record:
            event = json.loads(body)
            message = event["data"].get("message") or {}
            subject = (message.get("headers") or {}).get("subject") or ""
            state.records.append((now, event["type"], subject))
        assert self.transport is not None
        self.transport.write(_OK)
        state.answered += 1
        state.last = time.monotonic()


def _command_loop(state: ReceiverState) -> None:
    """Answer the parent's commands on stdin, one JSON line each, until EOF."""
    for line in sys.stdin:
        command = line.strip()
        if command == "stats":
            reply: object = {
                "requests": state.requests,
                "answered": state.answered,
                "bad_signatures": state.bad_signatures,
                "distinct_ids": len(state.ids),
                "first": state.first,
                "last": state.last,
            }
        elif command == "records":
            reply = list(state.records)
        else:
            reply = {"error": command}
        print(json.dumps(reply), flush=True)
    os._exit(0)


def receiver_main(port: int, mode: str, verify: bool, record: bool) -> None:
    state = ReceiverState(silent=mode == "silent", verify=verify, record=record)

    async def run() -> None:
        loop = asyncio.get_running_loop()
        await loop.create_server(lambda: _HTTPReceiver(state), "127.0.0.1", port, backlog=512)
        print(json.dumps({"ready": port}), flush=True)
        await asyncio.Event().wait()

    threading.Thread(target=_command_loop, args=(state,), daemon=True).start()
    asyncio.run(run())


class Receiver:
    """The receiver process, driven over its stdin/stdout."""

    def __init__(self, mode: str, *, verify: bool = True, record: bool = False) -> None:
        self.port = free_port()
        command = [sys.executable, __file__, "--receiver", mode, "--port", str(self.port)]
        command += [*(["--no-verify"] if not verify else []), *(["--record"] if record else [])]
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        ready = self.process.stdout.readline()
        if not ready:
            raise RuntimeError("the receiver did not start")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def ask(self, command: str) -> object:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def stats(self) -> dict[str, float]:
        reply = self.ask("stats")
        assert isinstance(reply, dict)
        return reply

    def cpu(self) -> float:
        return sum(tree_cpu_seconds(self.process.pid))

    def close(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()  # EOF: the receiver exits
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


@contextlib.contextmanager
def receiver(mode: str, *, record: bool = False) -> Iterator[Receiver]:
    r = Receiver(mode, record=record)
    try:
        yield r
    finally:
        r.close()


# --------------------------------------------------------------------------- server


def _configure(text: str, ports: dict[str, int], webhook_url: str | None) -> str:
    """The `mailstead init` config with our ports, the loopback allow-list and the endpoint."""
    text = listen_on(text, ports)
    text, count = re.subn(
        r"^allow_networks\s*=\s*\[\]", 'allow_networks = ["127.0.0.0/8"]', text, flags=re.M
    )
    if count != 1:
        raise RuntimeError("no [http_client] allow_networks line in the config")
    if webhook_url is not None:
        text += f'\n[[webhooks]]\nurl = "{webhook_url}"\nevents = ["*"]\nsecret = "{SECRET}"\n'
    return text


@dataclass(frozen=True)
class Prepared:
    """A configured data directory, not yet served."""

    root: Path
    config: Path
    ports: dict[str, int]

    @property
    def cli(self) -> list[str]:
        return [sys.executable, "-m", "mailstead", "--config", str(self.config)]

    @property
    def maildir(self) -> Path:
        local, domain = RECIPIENT.split("@")
        return self.root / "var" / "mail" / domain / local / "Maildir"

    @property
    def queue_db(self) -> Path:
        return self.root / "var" / "queue.sqlite3"


def prepare(root: Path, webhook_url: str | None) -> Prepared:
    root.mkdir(parents=True)
    config = root / "mailstead.toml"
    ports = {name: free_port() for name in LISTENERS}
    init_with_user(
        config, RECIPIENT, "bench-only-password", lambda t: _configure(t, ports, webhook_url)
    )
    return Prepared(root, config, ports)


@contextlib.contextmanager
def serving(prepared: Prepared) -> Iterator[subprocess.Popen[bytes]]:
    with (prepared.root / "serve.log").open("wb") as log:
        process = subprocess.Popen([*prepared.cli, "serve"], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(prepared.ports["smtp"], process)
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)  # serve's clean shutdown
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextlib.contextmanager
def profiling(pid: int, output: Path, gil_only: bool) -> Iterator[None]:
    """py-spy on ``pid`` and its workers, raw collapsed stacks, as smtp_inbound.py does it.

    ``gil_only``: only the thread holding each worker's GIL (where the CPU goes).
    """
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    command = [py_spy, "record", "--pid", str(pid), "--rate", str(PROFILE_RATE)]
    command += ["--format", "raw", "--threads", "--idle", "--nonblocking", "--subprocesses"]
    command += ["--output", str(output), *(["--gil"] if gil_only else [])]
    spy = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(1.0)
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        _, err = spy.communicate(timeout=120)
        if not output.exists():
            raise RuntimeError(f"py-spy wrote no profile: {err.decode(errors='replace')}")


def sample_message(index: int, body_bytes: int, tag: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = f"Bench Sender <{SENDER}>"
    message["To"] = f"Alice <{RECIPIENT}>"
    message["Subject"] = f"{tag} {index}"
    message["Date"] = "Mon, 07 Dec 2026 12:00:00 +0000"
    message["Message-ID"] = f"<{tag}-{index}@client.test>"
    line = "The quick brown fox jumps over the lazy dog, again and again.\n"
    message.set_content((line * (body_bytes // len(line) + 1))[:body_bytes])
    return message


def fill_outbox(prepared: Prepared, events: int, body_bytes: int) -> int:
    """``events`` message.received events into the outbox; the payload size in bytes."""
    from mailstead.app import open_outbox
    from mailstead.config import load_config
    from mailstead.events import Event, new_event_id
    from mailstead.mta import mail_events
    from mailstead.webhooks.outbox_records import completed

    config = load_config(prepared.config)
    content = bytes(sample_message(0, body_bytes, "throughput"))
    [template] = mail_events.received(
        [(RECIPIENT, RECIPIENT)],
        queue_id="0" * 24,
        mail_from=SENDER,
        content=content,
        client={"ip": "127.0.0.1", "helo": "client.test", "tls": False, "user": None},
        max_body_bytes=256 * 1024,
        received_at=time.time(),
    )
    outbox = open_outbox(config)
    try:
        batch: list[Event] = []
        for i in range(events):
            # As the mail path stores it: the raw message beside the payload,
            # summarised by the dispatcher when it sends the event.
            data = dict(template.data, queue_id=f"{i:024X}")
            batch.append(replace(template, id=new_event_id(), data=data))
            if len(batch) == 1000 or i == events - 1:
                outbox.emit(batch)
                batch = []
    finally:
        outbox.close()
    stored = json.dumps(template.payload(), ensure_ascii=False, separators=(",", ":")).encode()
    return len(completed(stored, template.raw_message, template.body_limit))


def delivery_states(prepared: Prepared) -> dict[str, int]:
    with contextlib.closing(sqlite3.connect(prepared.queue_db)) as db:
        rows = db.execute("SELECT state, COUNT(*) FROM webhook_deliveries GROUP BY state")
        return {str(state): int(n) for state, n in rows}


# --------------------------------------------------------------------------- part 1


@dataclass(frozen=True)
class Throughput:
    events: int
    payload: int
    seconds: float  # first request to the last answer
    startup: float  # serve started to the first request
    server_cpu: float  # CPU seconds over `seconds`
    receiver_cpu: float
    busy: float

    @property
    def rate(self) -> float:
        return self.events / self.seconds


def run_throughput(
    workdir: Path,
    events: int,
    body_bytes: int,
    timeout: float,
    profile: Path | None,
    gil_only: bool = False,
) -> Throughput:
    with receiver("ok") as rx:
        prepared = prepare(workdir, rx.url)
        payload = fill_outbox(prepared, events, body_bytes)
        started = time.monotonic()
        with contextlib.ExitStack() as stack:
            server = stack.enter_context(serving(prepared))
            if profile is not None:
                stack.enter_context(profiling(server.pid, profile, gil_only))
            deadline = started + timeout
            while rx.stats()["requests"] == 0:
                if time.monotonic() > deadline:
                    raise RuntimeError("no webhook request arrived")
                time.sleep(0.01)
            server_before, rx_before = sum(tree_cpu_seconds(server.pid)), rx.cpu()
            machine = MachineCPU.now()
            while (stats := rx.stats())["answered"] < events:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"only {stats['answered']} of {events} answered")
                time.sleep(POLL)
            server_cpu = sum(tree_cpu_seconds(server.pid)) - server_before
            receiver_cpu = rx.cpu() - rx_before
            busy, _ = MachineCPU.now().share_since(machine)
            time.sleep(0.5)  # let the last outcomes commit before the count below
        final = rx.stats()
    if final["bad_signatures"] or final["distinct_ids"] != events:
        raise RuntimeError(f"receiver saw {final}")
    states = delivery_states(prepared)
    if states.get("succeeded") != events:
        raise RuntimeError(f"outbox states after the run: {states}")
    return Throughput(
        events,
        payload,
        final["last"] - final["first"],
        final["first"] - started,
        server_cpu,
        receiver_cpu,
        busy,
    )


# --------------------------------------------------------------------------- part 2


@dataclass(frozen=True)
class Latency:
    samples: list[float]  # seconds, 250 to POST read, per message
    stalled_at: int | None = None  # messages accepted before the server stopped answering

    def quantile(self, q: float) -> float:
        ordered = sorted(self.samples)
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def run_latency(workdir: Path, messages: int, body_bytes: int, timeout: float) -> Latency:
    with receiver("ok", record=True) as rx:
        prepared = prepare(workdir, rx.url)
        with serving(prepared) as server:
            accepted: dict[str, float] = {}
            try:
                with smtplib.SMTP("127.0.0.1", prepared.ports["smtp"], timeout=STALL) as smtp:
                    smtp.ehlo("client.test")
                    for i in range(messages):
                        message = sample_message(i, body_bytes, "latency")
                        smtp.send_message(message, SENDER, [RECIPIENT])
                        accepted[str(message["Subject"])] = time.monotonic()
            except (smtplib.SMTPServerDisconnected, TimeoutError):
                # No reply within STALL seconds: the server has stalled.
                kill_server(server)
                return Latency([], stalled_at=len(accepted))
            deadline = time.monotonic() + timeout
            while rx.stats()["answered"] < messages:
                if time.monotonic() > deadline:
                    raise RuntimeError("not every message.received arrived")
                time.sleep(POLL)
            records = rx.ask("records")
    assert isinstance(records, list)
    arrived = {subject: at for at, kind, subject in records if kind == "message.received"}
    if set(arrived) != set(accepted):
        raise RuntimeError(f"{len(arrived)} events for {len(accepted)} messages")
    return Latency([arrived[s] - accepted[s] for s in accepted])


# --------------------------------------------------------------------------- part 3


@dataclass(frozen=True)
class Acceptance:
    config: str
    messages: int
    seconds: float
    server_cpu: float  # user + system CPU seconds over the run
    receiver_cpu: float
    client_cpu: float
    busy: float
    posts: int  # requests the receiver had read when the last message was in
    stalled_at: int | None = None  # messages in the Maildir when no more came

    @property
    def rate(self) -> float:
        return self.messages / self.seconds


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
                    found.append(int(entry))
    return found


def kill_server(server: subprocess.Popen[bytes]) -> None:
    """SIGKILL ``serve`` and its workers (a stalled worker would hold up a clean stop)."""
    workers = _children(server.pid)
    server.kill()
    server.wait()
    for pid in workers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def drive_watched(
    load: Load, port: int, maildir: Path, server_pid: int, stall: float
) -> tuple[Timing, int | None]:
    """smtp_inbound.drive, but giving up when the Maildir has not grown for ``stall`` s.

    The Maildir is counted every 5 s while smtp-source runs (cheap at these
    sizes), every 50 ms once it has exited. Returns the timing and, if the
    server stalled, how many messages had arrived.
    """
    command = load.smtp_source(port, shutil.which("smtp-source") or "/usr/sbin/smtp-source")
    server_before = tree_cpu_seconds(server_pid)
    machine = MachineCPU.now()
    start = time.perf_counter()
    source = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seen, seen_at = -1, time.monotonic()
    stalled: int | None = None
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    while True:
        try:
            source.wait(timeout=5.0 if source.poll() is None else 0)
            count = count_new(maildir)
            if count >= load.messages:
                break
            time.sleep(POLL)
        except subprocess.TimeoutExpired:
            count = count_new(maildir)
        if count > seen:
            seen, seen_at = count, time.monotonic()
        elif time.monotonic() - seen_at > stall:
            stalled = count
            source.kill()
            break
    source.wait()
    if source.stderr is not None:
        source.stderr.close()
    elapsed = time.perf_counter() - start
    busy, iowait = MachineCPU.now().share_since(machine)
    server_after = tree_cpu_seconds(server_pid)
    user = server_after[0] - server_before[0]
    system = server_after[1] - server_before[1]
    # smtp-source is the only child reaped in the meantime.
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    client = usage.ru_utime + usage.ru_stime - children.ru_utime - children.ru_stime
    return Timing(elapsed, user, system, client, busy, iowait), stalled


def run_acceptance(config: str, load: Load, workdir: Path, stall: float) -> Acceptance:
    with contextlib.ExitStack() as stack:
        rx = None if config == "off" else stack.enter_context(receiver(config_mode(config)))
        prepared = prepare(workdir, None if rx is None else rx.url)
        server = stack.enter_context(serving(prepared))
        rx_before = rx.cpu() if rx is not None else 0.0
        timing, stalled = drive_watched(
            load, prepared.ports["smtp"], prepared.maildir, server.pid, stall
        )
        receiver_cpu = rx.cpu() - rx_before if rx is not None else 0.0
        posts = int(rx.stats()["requests"]) if rx is not None else 0
        if stalled is not None:
            log = (prepared.root / "serve.log").read_text(errors="replace")
            locked = log.count("database is locked")
            print(f"  stalled at {stalled}; 'database is locked' x{locked}", file=sys.stderr)
            RESULTS.mkdir(parents=True, exist_ok=True)
            (RESULTS / f"webhooks-stalled-{config}-serve.log").write_text(log)
            kill_server(server)
    return Acceptance(
        config,
        load.messages,
        timing.seconds,
        timing.server_user + timing.server_system,
        receiver_cpu,
        timing.client_cpu,
        timing.busy,
        posts,
        stalled,
    )


def config_mode(config: str) -> str:
    return "ok" if config == "on" else "silent"


# --------------------------------------------------------------------------- report


def _mmm(values: list[float], fmt: str = ",.0f") -> str:
    """``median (min–max)``; ``(min to max)`` when a dash would read as a minus sign."""
    if len(values) == 1:
        return f"{values[0]:{fmt}}"
    dash = " to " if min(values) < 0 else "–"
    return f"{statistics.median(values):{fmt}} ({min(values):{fmt}}{dash}{max(values):{fmt}})"


def machine_line() -> str:
    from mailstead import __version__

    commit = subprocess.run(
        ["git", "-C", str(REPO), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return (
        f"{cpu_model()}, {os.cpu_count()} logical CPUs; Mailstead {__version__} (git {commit}); "
        f"Python {sys.version.split()[0]}"
    )


def throughput_report(runs: list[Throughput], command: str, load_before: str) -> str:
    first = runs[0]
    lines = [
        f"Command: `{command}`",
        "",
        f"Machine: {machine_line()}; load average before {load_before}.",
        "",
        f"{first.events:,} `message.received` events of {first.payload:,} bytes each"
        f" (JSON body), {len(runs)} rounds; median (min–max) over the rounds:",
        "",
        "| events/s | runs (events/s) | serve to first POST | server CPU"
        " | receiver CPU | all CPUs busy |",
        "| ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    every = ", ".join(f"{r.rate:,.0f}" for r in runs)
    server = [100 * r.server_cpu / r.seconds for r in runs]
    rx = [100 * r.receiver_cpu / r.seconds for r in runs]
    lines.append(
        f"| {_mmm([r.rate for r in runs])} | {every} | {_mmm([r.startup for r in runs], '.2f')} s"
        f" | {_mmm(server)} % | {_mmm(rx)} % | {_mmm([100 * r.busy for r in runs])} % |"
    )
    median = statistics.median(r.rate for r in runs)
    per_event = statistics.median(1e6 * r.server_cpu / r.events for r in runs)
    lines += [
        "",
        "Events/s from the receiver's first request to its last answer; CPU as % of"
        " one CPU over the same window (server: `serve` and its workers).",
        f"Server CPU per event: {per_event:,.0f} µs (median).",
        "",
        f"**Goal >= 2,000 events/s: {'met' if median >= 2000 else 'missed'}"
        f" ({median:,.0f} events/s).**",
    ]
    return "\n".join(lines)


def latency_report(
    runs: list[Latency], command: str, messages: int, body_bytes: int, load_before: str
) -> str:
    stalled = [r for r in runs if r.stalled_at is not None]
    runs = [r for r in runs if r.stalled_at is None]
    if not runs:
        at = ", ".join(str(r.stalled_at) for r in stalled)
        return f"Command: `{command}`\n\n**Every round stalled** (after {at} messages)."
    pooled = Latency([s for r in runs for s in r.samples])
    ms = 1000.0
    lines = [
        f"Command: `{command}`",
        "",
        f"Machine: {machine_line()}; load average before {load_before}.",
        "",
        f"{messages} messages ({body_bytes:,}-byte text body) one after another over one"
        f" smtplib connection, {len(runs)} rounds (a fresh server each); milliseconds from"
        " the `250` reaching the client to the receiver having read the POST:",
        "",
        "| | p50 | p99 | max | min |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for label, pick in (
        ("per round: median (min–max) over the rounds", None),
        (f"all {len(pooled.samples):,} messages", pooled),
    ):
        if pick is None:
            cells = [_mmm([ms * r.quantile(q) for r in runs], ".1f") for q in (0.5, 0.99, 1.0)] + [
                _mmm([ms * min(r.samples) for r in runs], ".1f")
            ]
        else:
            cells = [f"{ms * pick.quantile(q):.1f}" for q in (0.5, 0.99, 1.0)]
            cells.append(f"{ms * min(pick.samples):.1f}")
        lines.append(f"| {label} | {' | '.join(cells)} |")
    lines += [
        "",
        "The event commits before the `250` is sent and wakes the dispatcher at once, so"
        " a POST can be read before the client has the `250` in hand (a negative figure).",
    ]
    if stalled:
        at = ", ".join(str(r.stalled_at) for r in stalled)
        lines += [
            "",
            f"**{len(stalled)} more round(s) stalled**: no reply to the DATA of a message"
            f" within {STALL:.0f} s, after {at} messages had been accepted; those rounds are"
            " not in the table.",
        ]
    return "\n".join(lines)


def acceptance_report(
    runs: list[Acceptance], load: Load, command: str, load_before: str, rounds: int
) -> str:
    by: dict[str, list[Acceptance]] = {c: [r for r in runs if r.config == c] for c in SMTP_CONFIGS}
    off = statistics.median(r.rate for r in by["off"] if r.stalled_at is None)
    labels = {
        "off": "off (no endpoint)",
        "on": "on (receiver answers 200)",
        "silent": "on, receiver never answers",
    }
    lines = [
        f"Command: `{command}`",
        "",
        f"Machine: {machine_line()}; load average before {load_before}.",
        "",
        f"Load: {load.describe()}:",
        "",
        f"    {' '.join(load.smtp_source(0))}",
        "",
        f"{rounds} rounds, the three configurations alternating (order rotated each round),"
        " a fresh data directory each run; median (min–max):",
        "",
        "| webhooks | msgs/s | runs (msgs/s) | / off | server CPU s per 1k msgs"
        " | receiver CPU s | POSTs read by the end | all CPUs busy |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    verdicts = []
    for config in SMTP_CONFIGS:
        done = [r for r in by[config] if r.stalled_at is None]
        stalled = [r for r in by[config] if r.stalled_at is not None]
        note = ""
        if stalled:
            at = [float(r.stalled_at or 0) for r in stalled]
            note = (
                f" **stalled in {len(stalled)} of {len(by[config])} runs**: smtp-source hung"
                f" after {_mmm(at)} of {load.messages:,} messages were in"
            )
        if not done:
            lines.append(f"| {labels[config]} | –{note} | | | | | | |")
            verdicts.append(f"{config} missed (stalled)")
            continue
        median = statistics.median(r.rate for r in done)
        ratio = median / off
        every = ", ".join(f"{r.rate:,.0f}" for r in done)
        per_k = [1000 * r.server_cpu / r.messages for r in done]
        rx = "–" if config == "off" else _mmm([r.receiver_cpu for r in done], ".2f")
        posts = "–" if config == "off" else _mmm([float(r.posts) for r in done])
        lines.append(
            f"| {labels[config]} | {_mmm([r.rate for r in done])}{note} | {every} | {ratio:.2f}"
            f" | {_mmm(per_k, '.2f')} | {rx} | {posts} | {_mmm([100 * r.busy for r in done])} % |"
        )
        if config != "off":
            ok = ratio >= 0.9 and not stalled
            verdicts.append(f"{config} {ratio:.2f}x ({'met' if ok else 'missed'})")
    lines += [
        "",
        "msgs/s from the start of smtp-source to the last message in the Maildir (which"
        ' Mailstead writes before its `250`). "POSTs read": requests the receiver had'
        " read when the last message was in. A run is stalled when the Maildir has not"
        f" grown for {STALL:.0f} s; its server is then killed.",
        "",
        f"**Goal: on and never-answering within 10 % of off: {'; '.join(verdicts)}.**",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", choices=PARTS, action="append", help="run this part (repeatable)")
    p.add_argument("--rounds", type=int, default=5, help="rounds per part/configuration (5)")
    p.add_argument("--events", type=int, default=20_000, help="throughput: events (20000)")
    p.add_argument("--latency-messages", type=int, default=300, help="latency: messages (300)")
    p.add_argument("--messages", type=int, default=5_000, help="smtp: messages (5000)")
    p.add_argument("--sessions", type=int, default=20, help="smtp: concurrent sessions (20)")
    p.add_argument("--size", type=int, default=5120, help="message body bytes, all parts (5120)")
    p.add_argument(
        "--profile", action="store_true", help="throughput, one round, under py-spy (all threads)"
    )
    p.add_argument("--gil", action="store_true", help="with --profile: the GIL holder only")
    p.add_argument("--workdir", type=Path, help="parent of the scratch directories (/tmp)")
    p.add_argument("--write-docs", action="store_true", help="update docs/benchmarks.md")
    # The receiver process: internal.
    p.add_argument("--receiver", choices=("ok", "silent"), help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--no-verify", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--record", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if min(args.rounds, args.events, args.latency_messages, args.messages, args.sessions) < 1:
        p.error("counts must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.receiver:
        receiver_main(args.port, args.receiver, not args.no_verify, args.record)
        return 0
    parts = args.only or (["throughput"] if args.profile else list(PARTS))
    if "smtp" in parts and shutil.which("smtp-source") is None:
        print("smtp-source missing; install with: apt-get install -y postfix", file=sys.stderr)
        return 2
    command = " ".join([".venv/bin/python", "bench/webhooks.py", *(argv or sys.argv[1:])])
    scratch = Path(tempfile.mkdtemp(prefix="mailstead-webhooks-", dir=args.workdir))
    outputs: list[tuple[str, str]] = []
    try:
        if "throughput" in parts:
            load_before = loadavg()
            rounds = 1 if args.profile else args.rounds
            timeout = 120.0 + args.events / 50
            runs: list[Throughput] = []
            profile = None
            if args.profile:
                RESULTS.mkdir(parents=True, exist_ok=True)
                stamp = time.strftime("%Y%m%d-%H%M%S")
                kind = "gil" if args.gil else "all"
                profile = RESULTS / f"webhooks-profile-{kind}-{stamp}.txt"
            for n in range(1, rounds + 1):
                print(f"throughput round {n} ...", file=sys.stderr, flush=True)
                t = run_throughput(
                    scratch / f"tp-{n}", args.events, args.size, timeout, profile, args.gil
                )
                print(f"  {t.rate:,.0f} events/s", file=sys.stderr, flush=True)
                runs.append(t)
            text = throughput_report(runs, command, load_before)
            if profile is not None:
                text += "\n\nThe server ran under py-spy, which slows it down a little.\n\n"
                text += summarise(profile, REPO) or ""
            section = "webhooks-throughput"
            if args.profile:
                section = "webhooks-profile-gil" if args.gil else "webhooks-profile"
            outputs.append((section, text))
        if "latency" in parts:
            load_before = loadavg()
            lat: list[Latency] = []
            while sum(r.stalled_at is None for r in lat) < args.rounds:
                n = len(lat) + 1
                if n > 2 * args.rounds:
                    break  # stalls in most rounds: report what there is
                print(f"latency round {n} ...", file=sys.stderr, flush=True)
                r = run_latency(scratch / f"lat-{n}", args.latency_messages, args.size, 120.0)
                if r.stalled_at is None:
                    print(f"  p50 {1000 * r.quantile(0.5):.1f} ms", file=sys.stderr, flush=True)
                else:
                    print(f"  stalled after {r.stalled_at}", file=sys.stderr, flush=True)
                lat.append(r)
            text = latency_report(lat, command, args.latency_messages, args.size, load_before)
            outputs.append(("webhooks-latency", text))
        if "smtp" in parts:
            load_before = loadavg()
            load = Load(args.messages, args.sessions, args.size, reuse=False)
            acc: list[Acceptance] = []
            for n in range(args.rounds):
                order = SMTP_CONFIGS[n % 3 :] + SMTP_CONFIGS[: n % 3]
                for config in order:
                    print(f"smtp round {n + 1}: {config} ...", file=sys.stderr, flush=True)
                    workdir = scratch / f"smtp-{config}-{n}"
                    a = run_acceptance(config, load, workdir, STALL)
                    if a.stalled_at is None:
                        print(f"  {a.rate:,.0f} msgs/s", file=sys.stderr, flush=True)
                    acc.append(a)
                    shutil.rmtree(workdir, ignore_errors=True)
            outputs.append(
                ("webhooks-smtp", acceptance_report(acc, load, command, load_before, args.rounds))
            )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    for section, text in outputs:
        print(f"\n{text}\n")
        if args.write_docs:
            write_docs(section, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
