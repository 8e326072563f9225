"""Outbound SMTP benchmark: Mailstead and Postfix emptying a full queue, same run.

Each server starts with the same N messages of S bytes queued for one
remote domain, remote.test, whose mail host is Postfix's ``smtp-sink`` on
127.0.0.1 (it accepts and discards everything). The clock runs from the
moment the server may deliver until its queue is empty; the sink's own
counter must then show every message.

How the queues are filled, outside the timed part:

* Mailstead: ``Queue.enqueue`` into a fresh data directory before
  ``mailstead serve`` starts (what the MSA/MTA do after a ``250``). The
  clock starts when ``serve`` is started, so its start-up is counted.
* Postfix: the same bytes over SMTP into a running private instance whose
  smtpd puts every message on hold (``check_client_access static:HOLD``);
  the clock starts at ``postsuper -H ALL`` + ``postqueue -f`` (release and
  flush). Postfix's queue files were already written by cleanup(8).

Mailstead finds the sink by MX (a DNS server in this process answers
``remote.test MX 10 mx.remote.test`` / ``A 127.0.0.1``); Postfix has a
transport(5) entry ``remote.test smtp:[127.0.0.1]:PORT`` and looks nothing
up. Neither signs (the From domain is not Mailstead's) nor uses TLS
(smtp-sink offers none), unless ``--dkim``.

    .venv/bin/python bench/smtp_outbound.py                   # 10,000 x 5 KiB
    .venv/bin/python bench/smtp_outbound.py --messages 1000 --only mailstead --profile

Needs root (Postfix's master starts as root) and Debian's postfix package.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import smtplib
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from cpu import MachineCPU, tree_cpu_seconds
from netutil import free_port, wait_for_port
from profile_summary import summarise
from smtp_inbound import RESULTS, environment, loadavg, profiling

from mailstead.config import load_config
from mailstead.directory import Directory
from mailstead.mta.envelope import QueuedRecipient
from mailstead.mta.queue import Queue
from mailstead.testing.dns import DNSServer
from mailstead.testing.postfix import (
    POSTFIX_INSTALL_HINT,
    postfix_missing,
    running_postfix,
    running_smtp_sink,
)

REPO = Path(__file__).resolve().parent.parent
SERVERS = ("postfix", "mailstead")
REMOTE = "remote.test"
# Not 127.0.0.1: Mailstead listens there, and an MX that is one of our own
# addresses would be a mail loop.
SINK_HOST = "127.0.0.2"
RECIPIENT = f"user@{REMOTE}"
ZONES = {REMOTE: {"MX": [(10, f"mx.{REMOTE}")]}, f"mx.{REMOTE}": {"A": [SINK_HOST]}}
POLL_INTERVAL = 0.1
# Connections used to fill Postfix's hold queue (not timed).
FILL_CONNECTIONS = 8


@dataclass(frozen=True)
class Result:
    """One server emptying its queue."""

    server: str
    messages: int
    seconds: float
    server_cpu: tuple[float, float]  # user, system seconds of the server's process tree
    busy: float
    startup: float = 0.0  # seconds of the above before the server listened (Mailstead)

    @property
    def rate(self) -> float:
        return self.messages / self.seconds


def message(index: int, size: int, sender: str) -> bytes:
    """One test message, CRLF, ``size`` bytes of body in 78-character lines."""
    head = (
        f"From: <{sender}>\r\nTo: <{RECIPIENT}>\r\nSubject: outbound benchmark {index}\r\n"
        f"Message-ID: <bench-{index}@bench.test>\r\n"
        "Date: Thu, 01 Jan 2026 00:00:00 +0000\r\n\r\n"
    ).encode()
    line = b"x" * 76 + b"\r\n"
    body = (line * (size // len(line) + 1))[:size]
    return head + body[: size - 2] + b"\r\n"


def wait_until(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out: {what}")
        time.sleep(POLL_INTERVAL)


# --------------------------------------------------------------------------- Mailstead


def _mailstead_config(root: Path, dns: tuple[str, int], sink_port: int) -> Path:
    root.mkdir(parents=True)
    path = root / "mailstead.toml"
    path.write_text(
        'hostname = "mx.mailstead.test"\ndata_dir = "var"\ndomains = ["example.test"]\n'
        "workers = 0\n"  # one per CPU, as served by default; Postfix uses both too
        f'[listen]\nsmtp = ["127.0.0.1:{free_port()}"]\n'
        "submission = []\nsubmissions = []\nimap = []\nimaps = []\npop3 = []\npop3s = []\n"
        f'[delivery]\ndns_servers = ["{dns[0]}:{dns[1]}"]\nsmtp_port = {sink_port}\n'
        # The benchmark runs as root (Postfix's master needs it); serve
        # refuses root unless told, as on loopback here.
        "[run]\nallow_root = true\n"
    )
    config = load_config(path)
    config.data_dir.mkdir(parents=True)
    with Directory(config.db_path("directory"), config.domains):
        pass
    return path


def run_mailstead(
    n: int, size: int, sender: str, root: Path, timeout: float, profile: Path | None
) -> Result:
    sink_port = free_port(SINK_HOST)
    with (
        DNSServer(ZONES) as dns,
        running_smtp_sink(host=SINK_HOST, port=sink_port, counters=root / "sink.out") as sink,
    ):
        config_path = _mailstead_config(root / "mailstead", dns, sink_port)
        config = load_config(config_path)
        with Queue(config.data_dir) as queue:
            for i in range(n):
                queue.enqueue(
                    sender,
                    [QueuedRecipient(RECIPIENT)],
                    [message(i, size, sender)],
                    received_at=time.time(),
                )
        msg_dir = config.data_dir / "queue" / "msg"
        cli = [sys.executable, "-m", "mailstead", "--config", str(config_path), "serve"]
        log = (root / "serve.log").open("wb")
        machine = MachineCPU.now()
        start = time.perf_counter()
        process = subprocess.Popen(cli, stdout=log, stderr=subprocess.STDOUT)
        try:
            with contextlib.ExitStack() as stack:
                wait_for_port(config.listen.smtp[0][1], process)
                startup = time.perf_counter() - start
                if profile is not None:
                    stack.enter_context(profiling(process.pid, profile, False))
                wait_until(lambda: not any(os.scandir(msg_dir)), timeout, "Mailstead's queue")
                elapsed = time.perf_counter() - start
                cpu = tree_cpu_seconds(process.pid)
                busy, _ = MachineCPU.now().share_since(machine)
        finally:
            process.terminate()
            process.wait(60)
            log.close()
        got = sink.messages()
    if got < n:
        raise RuntimeError(f"smtp-sink counted {got} of {n} messages from Mailstead")
    return Result("mailstead", n, elapsed, cpu, busy, startup)


# --------------------------------------------------------------------------- Postfix


def _fill(port: int, messages: list[tuple[int, bytes]], sender: str) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as smtp:
        for _, data in messages:
            smtp.sendmail(sender, [RECIPIENT], data)


def run_postfix(n: int, size: int, sender: str, root: Path, timeout: float) -> Result:
    sink_port, port = free_port(SINK_HOST), free_port()
    with (
        running_smtp_sink(host=SINK_HOST, port=sink_port, counters=root / "sink.out") as sink,
        running_postfix(
            root / "postfix",
            port=port,
            transports={REMOTE: f"smtp:[{SINK_HOST}]:{sink_port}"},
            settings={
                # Every message waits on hold until the clock starts.
                "smtpd_client_restrictions": "check_client_access static:HOLD",
                # The sink is the only destination; Debian's defaults otherwise
                # (20 connections per destination).
                "smtp_tls_security_level": "none",
            },
        ) as postfix,
    ):
        batches = [
            [(i, message(i, size, sender)) for i in range(k, n, FILL_CONNECTIONS)]
            for k in range(FILL_CONNECTIONS)
        ]
        with ThreadPoolExecutor(FILL_CONNECTIONS) as pool:
            list(pool.map(lambda b: _fill(port, b, sender), batches))
        wait_until(lambda: _held(postfix.queue_dir) >= n, timeout, "Postfix's hold queue")
        if sink.messages():
            raise RuntimeError("Postfix delivered before the release")
        pid = postfix.master_pid()
        before = tree_cpu_seconds(pid)
        machine = MachineCPU.now()
        start = time.perf_counter()
        postfix.run("postsuper", "-H", "ALL")
        postfix.run("postqueue", "-f")
        wait_until(lambda: postfix.queued() == 0, timeout, "Postfix's queue")
        elapsed = time.perf_counter() - start
        after = tree_cpu_seconds(pid)
        busy, _ = MachineCPU.now().share_since(machine)
        # The sink counts a message at its "."; give the last reply a moment.
        wait_until(lambda: sink.messages() >= n, 10, "smtp-sink's count")
    cpu = (after[0] - before[0], after[1] - before[1])
    return Result("postfix", n, elapsed, cpu, busy)


def _held(queue_dir: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(queue_dir / "hold"))


# --------------------------------------------------------------------------- main


def table(results: list[Result]) -> str:
    lines = [
        "| server | messages | seconds | msgs/s | server CPU s / 1k msgs (user + sys) "
        "| all CPUs busy |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        user, system = (1000 * x / r.messages for x in r.server_cpu)
        seconds = f"{r.seconds:.2f}"
        if r.startup:
            seconds += f" (start-up {r.startup:.2f})"
        lines.append(
            f"| {r.server} | {r.messages:,} | {seconds} | {r.rate:,.0f} "
            f"| {user + system:.2f} ({user:.2f} + {system:.2f}) | {r.busy:.0%} |"
        )
    rates = {r.server: r.rate for r in results}
    if len(rates) == 2:
        ratio = rates["mailstead"] / rates["postfix"]
        lines += ["", f"**Mailstead / Postfix = {ratio:.2f}x** (msgs/s; target >= 1.0x)"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--messages", type=int, default=10_000, help="messages queued (10000)")
    p.add_argument("--size", type=int, default=5120, help="body bytes per message (5120)")
    p.add_argument("--only", choices=SERVERS, help="benchmark one server only")
    p.add_argument("--dkim", action="store_true", help="From in Mailstead's domain: it signs")
    p.add_argument("--profile", action="store_true", help="sample Mailstead with py-spy")
    p.add_argument("--workdir", type=Path, help="parent of the scratch directory (/tmp)")
    p.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = p.parse_args(argv)
    missing = postfix_missing()
    if missing:
        print(
            f"missing {', '.join(missing)}; install with: {POSTFIX_INSTALL_HINT}", file=sys.stderr
        )
        return 2
    sender = "bench@example.test" if args.dkim else "bench@client.test"
    timeout = 120.0 + args.messages / 10
    scratch = Path(tempfile.mkdtemp(prefix="mailstead-outbench-", dir=args.workdir))
    scratch.chmod(0o755)
    load_before = loadavg()
    results: list[Result] = []
    profile: Path | None = None
    try:
        for server in [args.only] if args.only else SERVERS:
            root = scratch / server
            root.mkdir()
            print(f"{server} ...", file=sys.stderr, flush=True)
            if server == "postfix":
                r = run_postfix(args.messages, args.size, sender, root, timeout)
            else:
                if args.profile:
                    RESULTS.mkdir(parents=True, exist_ok=True)
                    stamp = time.strftime("%Y%m%d-%H%M%S")
                    profile = RESULTS / f"mailstead-outbound-profile-{stamp}.txt"
                r = run_mailstead(args.messages, args.size, sender, root, timeout, profile)
            print(f"  {r.seconds:.2f} s, {r.rate:,.0f} msgs/s", file=sys.stderr, flush=True)
            results.append(r)
        facts = environment(scratch, load_before)
    finally:
        if args.keep:
            print(f"kept {scratch}", file=sys.stderr)
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    print("| | |\n| --- | --- |")
    print("\n".join(f"| {name} | {value} |" for name, value in facts))
    print()
    print(table(results))
    if profile is not None:
        print(f"\nProfile: {profile}\n\n{summarise(profile, REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
