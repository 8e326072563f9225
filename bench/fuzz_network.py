"""Network fuzzing: mutated real SMTP, IMAP and POP3 sessions against ``mailstead serve``.

The script runs its own server through the external contract (DESIGN.md §3):
``mailstead init`` in a temporary directory, every listener moved to a free
127.0.0.1 port, users added with ``mailstead user add``, the shipped
``workers`` default, ``serve`` with its log in a file. Outbound lookups (fuzz
mail relayed or bounced) go to a closed loopback port, so nothing leaves
127.0.0.1.

It then plays thousands of realistic sessions per protocol, each mutated
deterministically from ``--seed``: byte flips, inserted CR/LF/NUL, quotes,
braces and huge literal sizes, truncation, split and joined lines, lines
repeated, random write chunking, abrupt close (FIN, RST or half-close) at a
random point, pipelining, never reading replies, plain text on a TLS port
and broken TLS hellos. SMTP goes to smtp (sometimes STARTTLS), submission
(STARTTLS, AUTH) and submissions (implicit TLS); IMAP to imap (STARTTLS) and
imaps; POP3 to pop3 (STLS) and pop3s. Each session connects from its own
loopback address in its own /24 (127.20.0.1 and up), so a log line's
``[ip]`` names it and no per-address limit carries over between sessions.

Afterwards it checks (exit status 1 if one fails):

* (a) ordinary clients still work on every listener (smtplib, imaplib, poplib);
* (b) no worker was restarted (log: "restarting") or killed by the watchdog
  (log: "watchdog"), none is stuck (busy while idle, or holding connections
  whose client left long ago) and none stalled during the run;
* (c) no "Traceback" in the server log.

Sessions involved in an anomaly are saved as JSON under ``--out``; sessions a
stuck worker held are replayed one by one against a one-worker server to
find the one that reproduces it. ``--replay FILE...`` sends saved sessions
alone to a fresh server and runs the same checks::

    .venv/bin/python bench/fuzz_network.py                  # 3,000 sessions per protocol
    .venv/bin/python bench/fuzz_network.py --quick          # smoke run, about 30 s
    .venv/bin/python bench/fuzz_network.py --seed 7 --sessions 10000 --concurrency 80
    .venv/bin/python bench/fuzz_network.py --avoid-known    # skip inputs of known defects
    .venv/bin/python bench/fuzz_network.py --replay bench/results/fuzz-network-*/sessions/X.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import imaplib
import json
import logging
import os
import poplib
import random
import re
import shutil
import signal
import smtplib
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

from fuzz_sessions import (
    DOMAIN,
    HOSTNAME,
    PASSWORD,
    PLAN_NAME,
    PROTOCOLS,
    SINK,
    USERS,
    Outcome,
    Plan,
    known_defect,
    make_plan,
    message,
    play,
    session_number,
    tls_context,
)
from netutil import free_port, wait_for_port

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
ROLES = ("smtp", "submission", "submissions", "imap", "imaps", "pop3", "pop3s")
CHECK_USER = f"check@{DOMAIN}"  # only the ordinary-client checks log in as this user

# A worker whose set of fuzz connections has not changed for this long while
# the load runs has stalled (a healthy one accepts new sessions every second).
STALL_SECONDS = 8.0
# After the load: seconds the workers get to close every fuzz connection.
SETTLE_SECONDS = 15.0
# Share of one CPU above which an idle worker counts as busy.
BUSY_SHARE = 0.3
# Consecutive sessions without a greeting before the run gives up on the server.
WEDGED_AFTER = 40
# Saved session files at most (the first ones of each anomaly kind).
SAVE_LIMIT = 300

# Client-side outcomes; the ones in ALARMING are anomalies of the server.
KINDS = (
    "ok",
    "closed",
    "reset",
    "timeout",
    "tls-failed",
    "no-greeting",
    "connect-failed",
    "client-bug",
)
ALARMING = frozenset({"no-greeting", "connect-failed"})
# Anomalies of one session each; reported as one line per kind.
PER_SESSION = ("no-greeting", "connect-failed", "clean-session", "client-bug")
# Sessions saved per kind of those (the first ones).
SAVE_PER_KIND = 20

try:  # rich is optional: plain prints without it
    from rich.console import Console
    from rich.table import Table

    _CONSOLE: Console | None = Console()
except ImportError:
    _CONSOLE = None


def say(text: str) -> None:
    print(text, flush=True)


def show_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    if _CONSOLE is not None:
        table = Table(title=title)
        for name in header:
            table.add_column(name, justify="left" if name == header[0] else "right")
        for row in rows:
            table.add_row(*row)
        _CONSOLE.print(table)
        return
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    say(f"\n{title}")
    for row in [header, ["-" * w for w in widths], *rows]:
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        say("  ".join(cells))


# --------------------------------------------------------------------------- the server


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        kids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError, IndexError, ValueError):
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                    if int(fields[1]) == pid:
                        kids.append(int(entry.name))
        return kids


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


_TCP_STATES = {"01": "ESTABLISHED", "08": "CLOSE_WAIT", "07": "CLOSE", "09": "LAST_ACK"}


def _tcp_peers() -> dict[int, tuple[str, str]]:
    """Socket inode -> (remote address, state) of TCP sockets whose peer is a fuzz session."""
    peers = {}
    with contextlib.suppress(OSError), open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            remote = socket.inet_ntoa(struct.pack("<I", int(fields[2].split(":")[0], 16)))
            if session_number(remote) is not None:
                state = _TCP_STATES.get(fields[3], fields[3])
                peers[int(fields[9])] = (remote, state)
    return peers


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(int(target[8:-1]))
    return inodes


@dataclass
class WorkerView:
    """What /proc says about one worker process at one instant."""

    pid: int
    cpu: float
    conns: dict[int, tuple[str, str]]  # socket inode -> (fuzz client address, TCP state)


def inspect_workers(pids: list[int]) -> dict[int, WorkerView]:
    peers = _tcp_peers()
    views = {}
    for pid in pids:
        conns = {i: peers[i] for i in _socket_inodes(pid) if i in peers}
        views[pid] = WorkerView(pid, _cpu_seconds(pid), conns)
    return views


def _set_key(text: str, key: str, value: str) -> str:
    pattern = re.compile(rf"(?m)^({re.escape(key)}\s*=\s*)([^#\n]*?)(\s+#.*)?$")
    new, count = pattern.subn(lambda m: m[1] + value + (m[3] or ""), text, count=1)
    if count != 1:
        raise RuntimeError(f"`mailstead init` wrote no {key!r} key; the config template changed?")
    return new


class Server:
    """Owns one ``mailstead serve`` child: its directory, config, ports and log."""

    def __init__(self, root: Path, *, workers: int | None = None) -> None:
        self.root = root
        self.config = root / "mailstead.toml"
        self.log_path = root / "serve.log"
        self.ports = {role: free_port() for role in ROLES}
        self.workers = workers
        self.proc: subprocess.Popen[bytes] | None = None

    def _cli(self, *args: str, stdin: bytes | None = None) -> None:
        command = [sys.executable, "-m", "mailstead", "--config", str(self.config), *args]
        done = subprocess.run(command, input=stdin, capture_output=True, timeout=120)
        if done.returncode != 0:
            reason = done.stderr.decode(errors="replace").strip()
            raise RuntimeError(f"mailstead {' '.join(args)} failed: {reason}")

    def create(self) -> None:
        """``mailstead init``, free ports, ``user add`` for every fuzz and check user."""
        self.root.mkdir(parents=True, exist_ok=True)
        self._cli("init", "--domain", DOMAIN, "--hostname", HOSTNAME)
        text = self.config.read_text()
        for role, port in self.ports.items():
            text = _set_key(text, role, f'["127.0.0.1:{port}"]')
        # Fuzz mail to remote.test (relayed or bounced) makes the MTA look up
        # MX records: ask a closed loopback port, so nothing leaves 127.0.0.1.
        text = _set_key(text, "dns_servers", f'["127.0.0.1:{free_port()}"]')
        if self.workers is not None:
            text = _set_key(text, "workers", str(self.workers))
        self.config.write_text(text)
        for address in (*USERS, SINK, CHECK_USER):
            self._cli("user", "add", address, "--password-stdin", stdin=PASSWORD.encode() + b"\n")

    def start(self) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        command = [sys.executable, "-m", "mailstead", "--config", str(self.config), "serve"]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.root,
                env=env,
            )
        for port in self.ports.values():
            wait_for_port(port, self.proc, timeout=60)

    def seed_mail(self) -> None:
        """Three messages in the INBOX of every user, over plain SMTP."""
        with smtplib.SMTP("127.0.0.1", self.ports["smtp"], timeout=30) as smtp:
            for user in (*USERS, CHECK_USER):
                for k in range(3):
                    rng = random.Random(f"seed-mail/{user}/{k}")
                    smtp.sendmail(
                        "seed@remote.test", [user], message(rng, "seed@remote.test", user)
                    )

    def worker_pids(self) -> list[int]:
        assert self.proc is not None
        if self.proc.poll() is not None:
            return []
        return _children(self.proc.pid) or [self.proc.pid]

    def stop(self, *, kill: bool = False) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:  # a stuck worker never finishes its graceful shutdown
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if kill:  # the workers die with the supervisor, a moment after it
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and any(_accepts(p) for p in self.ports.values()):
                time.sleep(0.05)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def running_server(root: Path, *, workers: int | None = None) -> Iterator[Server]:
    server = Server(root, workers=workers)
    server.create()
    server.start()
    try:
        server.seed_mail()
        yield server
    finally:
        server.stop()


# --------------------------------------------------------------------------- the run


@dataclass
class Record:
    """One played session."""

    name: str
    proto: str
    role: str
    ip: str
    outcome: Outcome
    clean: bool
    known: str | None


@dataclass
class Anomaly:
    """Something wrong on the server side, with the sessions that may have caused it."""

    kind: str
    text: str
    sessions: list[str] = field(default_factory=list)  # session names
    evidence: str = ""
    pid: int | None = None  # the worker concerned
    signature: str = ""  # tracebacks: the exception line, to group the same failure


@dataclass
class RunState:
    records: list[Record] = field(default_factory=list)
    anomalies: list[Anomaly] = field(default_factory=list)
    aborted: str = ""
    truncated: bool = False
    pid_history: list[list[int]] = field(default_factory=list)
    names_by_ip: dict[str, str] = field(default_factory=dict)


class Fuzzer:
    """The fuzz phase: plans, concurrency, progress and the watch on the workers."""

    def __init__(self, args: argparse.Namespace, server: Server) -> None:
        self.args = args
        self.server = server
        self.state = RunState()
        self.stop = asyncio.Event()
        self.in_flight = 0
        self.silent_streak = 0

    def plan_for(self, proto: str, index: int) -> Plan:
        number = PROTOCOLS.index(proto) * self.args.sessions + index
        return make_plan(self.args.seed, proto, index, number, self.args.avoid_known)

    def plan_by_name(self, name: str) -> Plan:
        proto, index = name.rsplit("-", 1)
        return self.plan_for(proto, int(index))

    async def run(self) -> RunState:
        order = [(p, i) for p in PROTOCOLS for i in range(self.args.sessions)]
        random.Random(f"{self.args.seed}/order").shuffle(order)
        todo = iter(order)
        started = time.monotonic()
        deadline = started + self.args.max_seconds
        monitor = asyncio.create_task(self._monitor())
        progress = asyncio.create_task(self._progress(started, len(order)))

        async def worker() -> None:
            for proto, index in todo:
                if self.stop.is_set():
                    return
                if time.monotonic() > deadline:
                    self.state.truncated = True
                    return
                plan = self.plan_for(proto, index)
                self.state.names_by_ip[plan.ip] = plan.name
                self.in_flight += 1
                try:
                    outcome = await play(plan, self.server.ports[plan.role], self.args.timeout)
                finally:
                    self.in_flight -= 1
                record = Record(
                    plan.name, proto, plan.role, plan.ip, outcome, plan.clean, known_defect(plan)
                )
                self.state.records.append(record)
                self._note(record)

        await asyncio.gather(*(worker() for _ in range(self.args.concurrency)))
        monitor.cancel()
        progress.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await monitor
        with contextlib.suppress(asyncio.CancelledError):
            await progress
        return self.state

    def _note(self, record: Record) -> None:
        if record.outcome.kind in ALARMING:
            self.silent_streak += 1
            if self.silent_streak >= WEDGED_AFTER and not self.stop.is_set():
                self.state.aborted = (
                    f"{WEDGED_AFTER} sessions in a row got no greeting: the server is wedged"
                )
                self.stop.set()
        elif record.outcome.kind in ("ok", "closed"):
            self.silent_streak = 0

    async def _progress(self, started: float, total: int) -> None:
        while True:
            await asyncio.sleep(5)
            done = Counter(r.proto for r in self.state.records)
            kinds = Counter(r.outcome.kind for r in self.state.records)
            by_proto = " ".join(f"{p} {done[p]}" for p in PROTOCOLS)
            shown = " ".join(f"{k} {kinds[k]}" for k in KINDS if kinds[k])
            say(
                f"[{time.monotonic() - started:5.0f}s] {len(self.state.records)}/{total}"
                f"  ({by_proto})  {shown}"
            )

    async def _monitor(self) -> None:
        """Every second: worker pids (restarts), and workers that stopped taking sessions."""
        loop = asyncio.get_running_loop()
        last: dict[int, tuple[frozenset[int], float]] = {}
        seen: dict[int, WorkerView] = {}
        stalled: set[int] = set()
        pids: list[int] = []
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            new_pids = await loop.run_in_executor(None, self.server.worker_pids)
            if sorted(new_pids) != sorted(pids):
                self.state.pid_history.append(sorted(new_pids))
                for pid in set(pids) - set(new_pids):
                    gone = seen.get(pid)
                    names = sorted(
                        {self.name_of(ip) for ip, _ in (gone.conns.values() if gone else ())}
                    )
                    self.state.anomalies.append(
                        Anomaly(
                            "worker-exit",
                            f"worker pid {pid} went away during the run",
                            names,
                            "sessions it held at its last sighting",
                            pid,
                        )
                    )
                pids = new_pids
            if not pids:
                continue
            views = await loop.run_in_executor(None, inspect_workers, pids)
            seen.update(views)
            busy = self.in_flight >= max(2, self.args.concurrency // 2)
            for pid, view in views.items():
                key = frozenset(view.conns)
                if pid not in last or last[pid][0] != key:
                    last[pid] = (key, now)
                    continue
                quiet = now - last[pid][1]
                if busy and view.conns and quiet >= STALL_SECONDS and pid not in stalled:
                    stalled.add(pid)
                    names = sorted({self.name_of(ip) for ip, _ in view.conns.values()})
                    self.state.anomalies.append(
                        Anomaly(
                            "stall",
                            f"worker pid {pid} took no new session for {quiet:.0f} s "
                            f"under load, holding {len(view.conns)} connection(s)",
                            names,
                            pid=pid,
                        )
                    )
            if pids and all(p in stalled for p in pids) and not self.stop.is_set():
                self.state.aborted = "every worker stalled"
                self.stop.set()

    def name_of(self, ip: str) -> str:
        return self.state.names_by_ip.get(ip, ip)


async def settle(server: Server, names: Callable[[str], str]) -> list[Anomaly]:
    """After the load: connections the workers still hold, and workers busy while idle."""
    loop = asyncio.get_running_loop()
    found: list[Anomaly] = []
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        views = await loop.run_in_executor(None, inspect_workers, server.worker_pids())
        if not any(v.conns for v in views.values()) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    for view in views.values():
        if view.conns:
            states = Counter(state for _, state in view.conns.values())
            found.append(
                Anomaly(
                    "held",
                    f"worker pid {view.pid} still holds {len(view.conns)} fuzz connection(s) "
                    f"{SETTLE_SECONDS:.0f} s after the last client left "
                    f"({', '.join(f'{n} {s}' for s, n in states.items())})",
                    sorted({names(ip) for ip, _ in view.conns.values()}),
                    pid=view.pid,
                )
            )
    before = {pid: _cpu_seconds(pid) for pid in server.worker_pids()}
    await asyncio.sleep(2.0)
    for pid, cpu in before.items():
        share = (_cpu_seconds(pid) - cpu) / 2.0
        if share > BUSY_SHARE:
            held = next((a.sessions for a in found if a.pid == pid), [])
            found.append(
                Anomaly(
                    "busy",
                    f"worker pid {pid} uses {share:.0%} of a CPU with no client connected",
                    held,
                    pid=pid,
                )
            )
    return found


# --------------------------------------------------------------------------- the checks


def _smtp_check(port: int, token: str) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        smtp.sendmail("check@remote.test", [CHECK_USER], _check_message(token, "smtp"))


def _submission_check(port: int, token: str, implicit: bool) -> None:
    if implicit:
        smtp: smtplib.SMTP = smtplib.SMTP_SSL("127.0.0.1", port, timeout=10, context=tls_context())
    else:
        smtp = smtplib.SMTP("127.0.0.1", port, timeout=10)
    with smtp:
        if not implicit:
            smtp.starttls(context=tls_context())
        smtp.login(CHECK_USER, PASSWORD)
        role = "submissions" if implicit else "submission"
        smtp.sendmail(CHECK_USER, [CHECK_USER], _check_message(token, role))


def _check_message(token: str, role: str) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"] = CHECK_USER, CHECK_USER
    msg["Subject"] = f"{token} {role}"
    msg.set_content(f"sent over {role} after the fuzz run\n")
    return msg.as_bytes()


def _imaps_check(port: int, token: str) -> None:
    with imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=tls_context(), timeout=10) as imap:
        imap.login(CHECK_USER, PASSWORD)
        imap.select("INBOX")
        deadline = time.monotonic() + 10
        while True:
            _, data = imap.search(None, "SUBJECT", token)
            hits = data[0].split()
            if len(hits) >= 3 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
            imap.noop()
        if len(hits) < 3:
            raise AssertionError(f"{len(hits)} of the 3 check messages in INBOX")
        _, fetched = imap.fetch(hits[-1], "(BODY.PEEK[])")
        if token.encode() not in fetched[0][1]:  # type: ignore[index]
            raise AssertionError("FETCH did not return the check message")
        imap.logout()


def _imap_starttls_check(port: int) -> None:
    with imaplib.IMAP4("127.0.0.1", port, timeout=10) as imap:
        imap.starttls(ssl_context=tls_context())
        imap.login(CHECK_USER, PASSWORD)
        typ, _ = imap.select("INBOX", readonly=True)
        if typ != "OK":
            raise AssertionError(f"SELECT: {typ}")
        imap.logout()


def _pop3_check(port: int, implicit: bool, token: str) -> None:
    if implicit:
        pop: poplib.POP3 = poplib.POP3_SSL("127.0.0.1", port, context=tls_context(), timeout=10)
    else:
        pop = poplib.POP3("127.0.0.1", port, timeout=10)
        pop.stls(context=tls_context())
    try:
        pop.user(CHECK_USER)
        pop.pass_(PASSWORD)
        count, _ = pop.stat()
        if implicit:
            _, lines, _ = pop.retr(count)
            if not any(token.encode() in line for line in lines):
                raise AssertionError("RETR of the last message did not return a check message")
        pop.quit()
    finally:
        with contextlib.suppress(OSError):
            pop.close()


def ordinary_clients(server: Server) -> list[tuple[str, str | None]]:
    """(a): ordinary clients on every listener; (check, error or None)."""
    token = f"fuzzcheck{time.time_ns()}"
    p = server.ports
    checks: list[tuple[str, Callable[[], None]]] = [
        ("smtp: smtplib sendmail", lambda: _smtp_check(p["smtp"], token)),
        (
            "submission: STARTTLS AUTH sendmail",
            lambda: _submission_check(p["submission"], token, False),
        ),
        (
            "submissions: TLS AUTH sendmail",
            lambda: _submission_check(p["submissions"], token, True),
        ),
        ("imaps: LOGIN SELECT SEARCH FETCH", lambda: _imaps_check(p["imaps"], token)),
        ("imap: STARTTLS LOGIN SELECT", lambda: _imap_starttls_check(p["imap"])),
        ("pop3s: USER PASS STAT RETR", lambda: _pop3_check(p["pop3s"], True, token)),
        ("pop3: STLS USER PASS STAT", lambda: _pop3_check(p["pop3"], False, token)),
    ]
    results = []
    for name, check in checks:
        try:
            check()
            results.append((name, None))
        except Exception as exc:
            results.append((name, f"{type(exc).__name__}: {exc}"))
    return results


_RECORD_START = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")
_EXCEPTION = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt|Warning)\b")
_IP = re.compile(r"\[(127\.\d{1,3}\.\d{1,3}\.\d{1,3})\]")


def scan_log(text: str, names: Callable[[str], str], skip_lines: int = 0) -> list[Anomaly]:
    """(b) and (c): restarts, watchdog kills and tracebacks in the server log."""
    records: list[list[str]] = []
    for line in text.splitlines()[skip_lines:]:
        if _RECORD_START.match(line) or not records:
            records.append([line])
        else:
            records[-1].append(line)
    found = []
    for record in records:
        whole = "\n".join(record)
        ips = sorted(set(_IP.findall(whole)) - {"127.0.0.1"})
        sessions = [names(ip) for ip in ips]
        if "Traceback" in whole:
            errors = [line for line in record if _EXCEPTION.match(line)]
            signature = re.sub(r"0x[0-9a-f]+", "0x…", errors[-1] if errors else record[-1])
            found.append(
                Anomaly("traceback", record[0][:200], sessions, whole[-4000:], None, signature)
            )
        elif "watchdog" in whole.lower():
            found.append(Anomaly("watchdog", record[0][:300], sessions, whole[-2000:]))
        elif "restarting" in whole:
            found.append(Anomaly("restart", record[0][:300], sessions, whole[-2000:]))
    return found


# --------------------------------------------------------------------------- triage and saving


def save_session(out: Path, plan: Plan, note: dict[str, object]) -> Path:
    sessions = out / "sessions"
    sessions.mkdir(parents=True, exist_ok=True)
    path = sessions / f"{plan.name}.json"
    entry = {"plan": plan.to_json(), **note}
    if path.exists():  # several anomalies may name the same session
        old = json.loads(path.read_text())
        entry["reasons"] = sorted(set(old.get("reasons", [])) | set(note.get("reasons", [])))  # type: ignore[arg-type]
    path.write_text(json.dumps(entry, indent=1, ensure_ascii=True) + "\n")
    (sessions / f"{plan.name}.txt").write_text(plan.transcript())
    return path


@dataclass
class Reproduction:
    """A candidate session replayed alone against a fresh one-worker server."""

    name: str
    verdict: str | None  # what went wrong, None if the server stayed healthy
    known: str | None


def _probe(server: Server, plan: Plan, log_lines: int) -> str | None:
    """Is the triage server unwell after ``plan`` was played and closed?"""
    pids = server.worker_pids()
    if not pids:
        return "server process died"
    deadline = time.monotonic() + 4.0
    while True:
        views = inspect_workers(pids)
        held = [ip for v in views.values() for ip, _ in v.conns.values() if ip == plan.ip]
        if not held or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    before = {pid: _cpu_seconds(pid) for pid in pids}
    time.sleep(1.0)
    busy = [pid for pid, cpu in before.items() if _cpu_seconds(pid) - cpu > 0.5]
    text = server.log_text()
    new = scan_log(text, lambda ip: ip, skip_lines=log_lines)
    verdicts = []
    if busy:
        verdicts.append("worker busy at 100% CPU after the client left")
    if held:
        verdicts.append("connection still held 4 s after the client left")
    verdicts += [f"log: {a.kind}: {a.text}" for a in new]
    if server.worker_pids() != pids:
        verdicts.append("worker restarted")
    return "; ".join(verdicts) or None


def triage(
    groups: list[tuple[str, list[Plan]]], args: argparse.Namespace, work: Path, out: Path
) -> list[Reproduction]:
    """Replay each group's sessions alone against a one-worker server, until one reproduces.

    A group is one anomaly (a stuck worker, a traceback): the sessions that
    may have caused it, those with a known defect's trigger first. After a
    hit the server is restarted and the next group is tried.
    """
    results: list[Reproduction] = []
    if not groups:
        return results
    deadline = time.monotonic() + args.triage_seconds
    say(f"triage: {len(groups)} anomal(y/ies) to explain; one worker, one session at a time")
    server = Server(work / "triage", workers=1)
    server.create()
    server.start()
    tried: set[str] = set()
    try:
        server.seed_mail()
        for label, plans in groups:
            say(f" {label}")
            for plan in plans:
                if plan.name in tried:
                    continue
                if time.monotonic() > deadline or len(tried) >= args.triage_limit:
                    say("triage: budget spent (--triage-limit, --triage-seconds)")
                    return results
                tried.add(plan.name)
                lines = len(server.log_text().splitlines())
                outcome = asyncio.run(play(plan, server.ports[plan.role], args.timeout))
                verdict = _probe(server, plan, lines)
                results.append(Reproduction(plan.name, verdict, known_defect(plan)))
                say(f"  {plan.name}: {outcome.kind}; " + (verdict or "server healthy"))
                if verdict:
                    note = {"reasons": [f"reproduced alone: {verdict}"]}
                    save_session(out, plan, note | {"known_defect": known_defect(plan)})
                    server.stop(kill=True)
                    server.start()
                    break
    finally:
        server.stop(kill=True)
        shutil.copy(server.log_path, out / "triage-serve.log")
    return results


# --------------------------------------------------------------------------- report


def client_table(records: list[Record]) -> list[list[str]]:
    rows = []
    for proto in PROTOCOLS:
        mine = [r for r in records if r.proto == proto]
        kinds = Counter(r.outcome.kind for r in mine)
        roles = Counter(r.role for r in mine)
        rows.append(
            [
                proto,
                " ".join(f"{role} {n}" for role, n in sorted(roles.items())),
                str(len(mine)),
                *(str(kinds[k]) for k in KINDS),
            ]
        )
    return rows


def fuzz_main(args: argparse.Namespace) -> int:
    out = args.out or RESULTS / f"fuzz-network-{time.strftime('%Y%m%d-%H%M%S')}-s{args.seed}"
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="mailstead-fuzz-"))
    started = time.monotonic()
    failures: list[str] = []
    say(
        f"mailstead fuzz: seed {args.seed}, {args.sessions} sessions per protocol, "
        f"concurrency {args.concurrency}, session timeout {args.timeout:g} s; output {out}"
    )
    try:
        server = Server(work / "server", workers=args.workers)
        server.create()
        server.start()
        try:
            server.seed_mail()
            say(
                f"server: pid {server.proc.pid if server.proc else '?'}, "
                f"workers {server.worker_pids()}, ports {server.ports}"
            )
            fuzzer = Fuzzer(args, server)
            fuzz_started = time.monotonic()
            state, settled = asyncio.run(_fuzz_and_settle(fuzzer, server))
            fuzz_seconds = time.monotonic() - fuzz_started
            checks = ordinary_clients(server)
        finally:
            server.stop()
            shutil.copy(server.log_path, out / "serve.log")
        anomalies = [*state.anomalies, *settled, *scan_log(server.log_text(), fuzzer.name_of)]
        for record in state.records:
            if record.outcome.kind in ALARMING or record.outcome.kind == "client-bug":
                anomalies.append(Anomaly(record.outcome.kind, record.outcome.detail, [record.name]))
            elif record.clean and record.outcome.kind not in ("ok", "timeout"):
                anomalies.append(
                    Anomaly(
                        "clean-session",
                        f"an unmutated session ended {record.outcome.kind}: "
                        f"{record.outcome.detail}",
                        [record.name],
                    )
                )
        saved = _save_anomalies(anomalies, fuzzer, out)
        candidates = _candidates(anomalies, fuzzer)
        repros = [] if args.no_triage else triage(candidates, args, work, out)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            say(f"kept {work}")

    show_table(
        "Sessions (client side)",
        ["protocol", "listeners", "sessions", *KINDS],
        client_table(state.records),
    )
    kinds = Counter(a.kind for a in anomalies)
    known = Counter(
        r.known for r in state.records if r.known is not None and r.outcome.kind != "ok"
    )
    rows = [
        ["ordinary clients ok", f"{sum(e is None for _, e in checks)}/{len(checks)}"],
        ["tracebacks in log", str(kinds["traceback"])],
        ["worker restarts in log", str(kinds["restart"])],
        ["watchdog kills in log", str(kinds["watchdog"])],
        ["workers gone during run", str(kinds["worker-exit"])],
        ["workers stalled during run", str(kinds["stall"])],
        ["workers holding connections after", str(kinds["held"])],
        ["workers busy after", str(kinds["busy"])],
        ["sessions without greeting", str(kinds["no-greeting"] + kinds["connect-failed"])],
        ["clean sessions failed", str(kinds["clean-session"])],
        ["client bugs", str(kinds["client-bug"])],
        ["sessions with a known-defect trigger", str(sum(known.values()))],
        ["sessions saved", str(saved)],
        ["fuzz phase + settling", f"{fuzz_seconds:.0f} s"],
        ["total", f"{time.monotonic() - started:.0f} s"],
    ]
    show_table("Server", ["check", "result"], rows)

    for name, error in checks:
        if error:
            failures.append(f"(a) {name}: {error}")
    for a in anomalies:
        if a.kind in ("restart", "watchdog", "worker-exit", "stall", "held", "busy"):
            failures.append(f"(b) {a.kind}: {a.text} — sessions {_short(a.sessions)}")
    tracebacks = [a for a in anomalies if a.kind == "traceback"]
    for signature, count in Counter(a.signature for a in tracebacks).most_common():
        same = [a for a in tracebacks if a.signature == signature]
        names = [n for a in same for n in a.sessions]
        failures.append(
            f"(c) {count} traceback(s) ending in {signature[:160]!r}; first: "
            f"{same[0].text[:120]} — sessions {_short(names)}"
        )
    per_session = Counter(a.kind for a in anomalies if a.kind in PER_SESSION)
    for kind, count in per_session.items():
        names = [n for a in anomalies if a.kind == kind for n in a.sessions]
        text = next(a.text for a in anomalies if a.kind == kind)
        failures.append(f"{kind} in {count} session(s), e.g. {text} — {_short(names)}")
    if state.aborted:
        failures.append(f"run aborted: {state.aborted}")
    if state.truncated:
        say(f"note: --max-seconds {args.max_seconds:g} reached; not every session was played")
    for repro in repros:
        if repro.verdict:
            label = repro.known or "no known defect's trigger"
            say(f"reproducer [{label}]: {repro.name}: {repro.verdict}")
            say(f"  replay: bench/fuzz_network.py --replay {out}/sessions/{repro.name}.json")
    summary = {
        "seed": args.seed,
        "sessions_per_protocol": args.sessions,
        "concurrency": args.concurrency,
        "clients": {
            row[0]: dict(zip(["listeners", "sessions", *KINDS], row[1:], strict=True))
            for row in client_table(state.records)
        },
        "checks": dict(checks),
        "client_details": _details(state.records),
        "anomalies": [a.__dict__ for a in anomalies],
        "reproductions": [r.__dict__ for r in repros],
        "failures": failures,
        "aborted": state.aborted,
        "worker_pids": state.pid_history,
        "seconds": time.monotonic() - started,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
    _print_failures(failures, out)
    return 1 if failures else 0


def _details(records: list[Record]) -> dict[str, list[tuple[str, int]]]:
    """The commonest client-side details of each outcome kind but ok."""
    out = {}
    for kind in KINDS[1:]:
        details = Counter(
            f"{r.role}: {r.outcome.detail[:120]}" for r in records if r.outcome.kind == kind
        )
        if details:
            out[kind] = details.most_common(8)
    return out


def _short(names: list[str], limit: int = 6) -> str:
    if not names:
        return "(none identified)"
    more = f" +{len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _print_failures(failures: list[str], out: Path | None) -> None:
    where = f"; results in {out}" if out is not None else ""
    if not failures:
        say(f"PASS: no anomaly{where}")
        return
    say(f"FAIL: {len(failures)} problem(s){where}")
    for line in failures[:40]:
        say(f"  - {line}")
    if len(failures) > 40:
        say(f"  … {len(failures) - 40} more in summary.json")


async def _fuzz_and_settle(fuzzer: Fuzzer, server: Server) -> tuple[RunState, list[Anomaly]]:
    state = await fuzzer.run()
    say(f"fuzz phase done: {len(state.records)} sessions; letting the server settle")
    return state, await settle(server, fuzzer.name_of)


def _save_anomalies(anomalies: list[Anomaly], fuzzer: Fuzzer, out: Path) -> int:
    saved: set[str] = set()
    per_kind: Counter[str] = Counter()
    for a in anomalies:
        if a.kind in PER_SESSION or a.kind == "traceback":
            per_kind[a.kind + a.signature] += 1
            if per_kind[a.kind + a.signature] > SAVE_PER_KIND:
                continue
        for name in a.sessions:
            if not re.fullmatch(PLAN_NAME, name) or len(saved) >= SAVE_LIMIT:
                continue
            plan = fuzzer.plan_by_name(name)
            record = next((r for r in fuzzer.state.records if r.name == name), None)
            note: dict[str, object] = {
                "reasons": [f"{a.kind}: {a.text}"],
                "known_defect": known_defect(plan),
                "seed": fuzzer.args.seed,
            }
            if record is not None:
                note["outcome"] = record.outcome.__dict__
            if a.evidence:
                note["evidence"] = a.evidence
            save_session(out, plan, note)
            saved.add(name)
    return len(saved)


def _candidates(anomalies: list[Anomaly], fuzzer: Fuzzer) -> list[tuple[str, list[Plan]]]:
    """Groups of sessions worth replaying alone: one group per worker or traceback."""
    groups: dict[str, tuple[str, list[str]]] = {}
    order = ("traceback", "watchdog", "busy", "held", "worker-exit", "stall", "restart")
    for kind in order:
        for a in anomalies:
            if a.kind != kind or not a.sessions:
                continue
            key = f"pid {a.pid}" if a.pid is not None else a.signature or f"{kind} {len(groups)}"
            label, names = groups.setdefault(key, (f"{kind}: {a.signature or a.text}", []))
            if kind == "traceback" and len(names) >= 3:  # the same failure: a few suffice
                continue
            names += [n for n in a.sessions if n not in names]
    result = []
    for label, names in groups.values():
        plans = [fuzzer.plan_by_name(n) for n in names if re.fullmatch(PLAN_NAME, n)]
        # Sessions with a known defect's trigger first: the likeliest cause.
        plans.sort(key=lambda p: known_defect(p) is None)
        result.append((label, plans))
    return result


# --------------------------------------------------------------------------- replay


def replay_main(args: argparse.Namespace) -> int:
    plans = [Plan.from_json(json.loads(Path(f).read_text())["plan"]) for f in args.replay]
    work = Path(tempfile.mkdtemp(prefix="mailstead-replay-"))
    failures = []
    try:
        with running_server(work / "server", workers=args.workers) as server:
            names = {p.ip: p.name for p in plans}
            for plan in plans:
                say(plan.transcript().rstrip())
                outcome = asyncio.run(play(plan, server.ports[plan.role], args.timeout))
                say(
                    f"=> {outcome.kind} {outcome.detail} ({outcome.received} B back, "
                    f"{outcome.seconds:.2f} s); known defect: {known_defect(plan) or 'none'}"
                )
            settled = asyncio.run(settle(server, lambda ip: names.get(ip, ip)))
            checks = ordinary_clients(server)
            log = server.log_text()
        anomalies = [*settled, *scan_log(log, lambda ip: names.get(ip, ip))]
        failures += [f"{a.kind}: {a.text} {_short(a.sessions)}" for a in anomalies]
        failures += [f"(a) {n}: {e}" for n, e in checks if e]
        for a in anomalies:
            if a.evidence:
                say(a.evidence)
    finally:
        if args.out is not None and (work / "server" / "serve.log").exists():
            args.out.mkdir(parents=True, exist_ok=True)
            shutil.copy(work / "server" / "serve.log", args.out / "serve.log")
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    _print_failures(failures, args.out)
    return 1 if failures else 0


# --------------------------------------------------------------------------- command line


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Mutated SMTP/IMAP/POP3 sessions against a real mailstead serve on 127.0.0.1."
    )
    parser.add_argument("--seed", type=int, default=1, help="mutation seed (default 1)")
    parser.add_argument("--sessions", type=int, default=3000, help="sessions per protocol")
    parser.add_argument("--concurrency", type=int, default=50, help="sessions at once")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds per session")
    parser.add_argument(
        "--max-seconds", type=float, default=240.0, help="stop starting sessions after this"
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 150 per protocol")
    parser.add_argument(
        "--workers", type=int, default=None, help="override `workers` (default: shipped default)"
    )
    parser.add_argument(
        "--avoid-known",
        action="store_true",
        help="draw again when a session contains the trigger of a known defect",
    )
    parser.add_argument("--no-triage", action="store_true", help="do not replay candidates")
    parser.add_argument("--triage-limit", type=int, default=15, help="candidates to replay")
    parser.add_argument("--triage-seconds", type=float, default=90.0, help="triage time budget")
    parser.add_argument("--out", type=Path, default=None, help="results directory")
    parser.add_argument("--keep", action="store_true", help="keep the server's temporary dir")
    parser.add_argument("--replay", nargs="+", metavar="FILE", help="replay saved sessions")
    args = parser.parse_args(argv)
    if args.quick:
        args.sessions = min(args.sessions, 150)
        args.concurrency = min(args.concurrency, 20)
        args.max_seconds = min(args.max_seconds, 60.0)
        args.triage_limit = min(args.triage_limit, 5)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # asyncio warns about every write to a connection the server has dropped:
    # the fuzz client does that on purpose, thousands of times.
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    if args.replay:
        return replay_main(args)
    return fuzz_main(args)


if __name__ == "__main__":
    sys.exit(main())
