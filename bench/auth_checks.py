"""The cost of checking: SMTP acceptance rate with SPF/DKIM/DMARC verification on versus off.

A real ``mailstead serve`` (the default config plus the MTA listener on
127.0.0.1) takes DKIM-signed mail from ``sender.test`` over N concurrent
smtplib sessions; its ``delivery.dns_servers`` points at a DNS server of
the benchmark's own on 127.0.0.1 (mailstead.testing.dns) that serves the
SPF, DKIM and DMARC records, so every message is fully verified (and
passes). Rounds alternate the two modes (off, on, then on, off …) so a
machine getting busier affects both alike; the table shows medians.

    .venv/bin/python bench/auth_checks.py --messages 400 --sessions 8 --rounds 2

The goal (issue 19): verification costs under 25% of the acceptance rate.

``--in-process`` measures what the rate depends on without the server: the
CPU time (``time.process_time``) of the body-stage checks per message, in
this process, over the same DNS server — the measure to trust on a machine
shared with other work, where rates move with the neighbours' load. It
runs the checks of the ``smtp`` listener (``Checks`` with ``AuthChecks``)
on messages signed with ``relaxed/simple`` (the 4 KB message of the rate
benchmark) and with ``relaxed/relaxed`` (a 4 KB text body with tabs and
double spaces, as Gmail signs), and prints the median of the repeats:

    .venv/bin/python bench/auth_checks.py --in-process --messages 300 --rounds 7
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import smtplib
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dkim

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cpu import tree_cpu_seconds
from netutil import free_port, wait_for_port
from tests.mailauth import authzones

from mailstead.config import AuthChecksConfig
from mailstead.mailauth.hook import Checks, Client
from mailstead.mailauth.lookups import AuthDNS
from mailstead.mailauth.verify import AuthChecks
from mailstead.testing.dns import DNSServer

RECIPIENT = "bob@example.test"
_POLL = 0.05


def config_text(port: int, dns: tuple[str, int], enabled: bool) -> str:
    off = "".join(
        f"{name} = []\n" for name in ("submission", "submissions", "imap", "imaps", "pop3", "pop3s")
    )
    return (
        'hostname = "mx.mailstead.test"\n'
        'data_dir = "var"\n'
        'domains = ["example.test"]\n'
        f"[listen]\nsmtp = [{json.dumps(f'127.0.0.1:{port}')}]\n{off}"
        f"[delivery]\ndns_servers = [{json.dumps(f'{dns[0]}:{dns[1]}')}]\n"
        f"[auth_checks]\nenabled = {'true' if enabled else 'false'}\n"
        "[run]\nallow_root = true\n"
    )


@contextmanager
def serving(root: Path, dns: tuple[str, int], enabled: bool) -> Iterator[tuple[int, Path, int]]:
    port = free_port()
    root.mkdir(parents=True)
    (root / "var").mkdir()
    config = root / "mailstead.toml"
    config.write_text(config_text(port, dns, enabled))
    cli = [sys.executable, "-m", "mailstead", "--config", str(config)]
    subprocess.run(
        [*cli, "user", "add", RECIPIENT, "--password-stdin"],
        input=b"bench-only-password\n",
        check=True,
        stdout=subprocess.DEVNULL,
    )
    with (root / "serve.log").open("wb") as log:
        process = subprocess.Popen([*cli, "serve"], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, process)
        new = root / "var" / "mail" / "example.test" / "bob" / "Maildir" / "new"
        yield port, new, process.pid
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def send(port: int, messages: int, sessions: int, content: bytes) -> None:
    per_session = [messages // sessions + (i < messages % sessions) for i in range(sessions)]
    errors: list[BaseException] = []

    def one_session(count: int) -> None:
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
                client.ehlo("mail.sender.test")
                for _ in range(count):
                    client.sendmail("alice@sender.test", [RECIPIENT], content)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one_session, args=(n,)) for n in per_session if n]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(f"sending failed: {errors[0]!r}")


def count(new: Path) -> int:
    try:
        return len(os.listdir(new))
    except FileNotFoundError:
        return 0


def one_round(
    workdir: Path, dns: tuple[str, int], enabled: bool, args: argparse.Namespace, content: bytes
) -> tuple[float, float]:
    """Messages per second, and the server's CPU milliseconds (all its processes) per message."""
    root = Path(tempfile.mkdtemp(prefix=f"auth-{'on' if enabled else 'off'}-", dir=workdir))
    with serving(root / "srv", dns, enabled) as (port, new, pid):
        send(port, 20, min(args.sessions, 4), content)  # warm-up: imports, DNS cache
        while count(new) < 20:
            time.sleep(_POLL)
        cpu_before = sum(tree_cpu_seconds(pid))
        started = time.perf_counter()
        send(port, args.messages, args.sessions, content)
        deadline = time.monotonic() + 300
        while count(new) < args.messages + 20:
            if time.monotonic() > deadline:
                raise RuntimeError("messages did not all arrive")
            time.sleep(_POLL)
        elapsed = time.perf_counter() - started
        cpu = sum(tree_cpu_seconds(pid)) - cpu_before
        return args.messages / elapsed, 1000 * cpu / args.messages


def signed(canonicalize: tuple[bytes, bytes]) -> bytes:
    """A message of ``sender.test`` signed with ``canonicalize`` (header, body)."""
    if canonicalize == (b"relaxed", b"simple"):
        body = b"x" * 4000 + b"\r\n"
    else:
        line = b"Line %d of a text  message, with a tab\there and words.\r\n"
        body = b"".join(line % i for i in range(70))
    content = authzones.message(body=body)
    signature = dkim.sign(
        content,
        b"sel",
        b"sender.test",
        authzones.private_key(),
        canonicalize=canonicalize,
        include_headers=[b"from", b"to", b"subject", b"message-id"],
    )
    return signature.replace(b"\n", b"\r\n").replace(b"\r\r\n", b"\r\n") + content


def in_process(args: argparse.Namespace) -> int:
    """CPU milliseconds of the body-stage checks per message (median of the rounds)."""
    hostname = "mx.mailstead.test"
    client = Client(authzones.AUTHORISED_IP, "mail.sender.test")
    print(f"| message | CPU ms per message, median of {args.rounds} (min–max) |\n|---|---|")
    with DNSServer(authzones.zones()) as dns:
        checks = Checks(
            hostname, [AuthChecks(AuthChecksConfig(), AuthDNS([dns]), hostname=hostname)]
        )
        for canonicalize in ((b"relaxed", b"simple"), (b"relaxed", b"relaxed")):
            content = signed(canonicalize)
            for _ in range(50):  # warm-up: the DNS cache, the parsed records
                outcome = checks.body(client, "alice@sender.test", [RECIPIENT], content)
            assert b"dkim=pass" in outcome.content and b"dmarc=pass" in outcome.content
            per_message = []
            for _ in range(args.rounds):
                started = time.process_time()
                for _ in range(args.messages):
                    checks.body(client, "alice@sender.test", [RECIPIENT], content)
                per_message.append(1000 * (time.process_time() - started) / args.messages)
            name = b"/".join(canonicalize).decode()
            print(
                f"| {name}, {len(content)} bytes | {statistics.median(per_message):.3f}"
                f" ({min(per_message):.3f}–{max(per_message):.3f}) |"
            )
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--messages", type=int, default=2000, help="messages per round (2000)")
    p.add_argument("--sessions", type=int, default=10, help="concurrent SMTP sessions (10)")
    p.add_argument("--rounds", type=int, default=3, help="rounds of each mode (3)")
    p.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()))
    p.add_argument(
        "--in-process",
        action="store_true",
        help="CPU time of the checks per message, in this process (no server)",
    )
    args = p.parse_args(argv)
    if args.in_process:
        return in_process(args)
    content = authzones.sign(authzones.message(body=b"x" * 4000 + b"\r\n"))
    rates: dict[bool, list[float]] = {False: [], True: []}
    cpu: dict[bool, list[float]] = {False: [], True: []}
    with DNSServer(authzones.zones()) as dns:
        for i in range(args.rounds):
            for enabled in (False, True) if i % 2 == 0 else (True, False):
                rate, cpu_ms = one_round(args.workdir, dns, enabled, args, content)
                rates[enabled].append(rate)
                cpu[enabled].append(cpu_ms)
                print(
                    f"round {i + 1}: checks {'on ' if enabled else 'off'} {rate:8.1f} msg/s"
                    f" {cpu_ms:6.3f} server CPU ms/msg",
                    flush=True,
                )
    off, on = statistics.median(rates[False]), statistics.median(rates[True])
    # Each round's cost from its own pair: the machine's state moves between rounds.
    costs = [100 * (1 - b / a) for a, b in zip(rates[False], rates[True], strict=True)]
    print(
        f"\n| verification | messages/s, median of {args.rounds} (min–max)"
        " | server CPU ms per message, median (min–max) |\n|---|---|---|"
    )
    for enabled, name in ((False, "off"), (True, "on")):
        r, c = rates[enabled], cpu[enabled]
        print(
            f"| {name} | {statistics.median(r):.1f} ({min(r):.1f}–{max(r):.1f})"
            f" | {statistics.median(c):.3f} ({min(c):.3f}–{max(c):.3f}) |"
        )
    print(
        f"\ncost of checking: {100 * (1 - on / off):.1f}% of the acceptance rate (medians);"
        f" per round {statistics.median(costs):.1f}% ({min(costs):.1f}–{max(costs):.1f}%)"
    )
    # What the rate would lose if the server's CPU alone bounded it: the
    # measure the neighbours' load on a shared machine moves least.
    cpu_off, cpu_on = statistics.median(cpu[False]), statistics.median(cpu[True])
    print(
        f"server CPU per message: {cpu_off:.3f} ms off, {cpu_on:.3f} ms on;"
        f" the same CPU would accept {100 * (1 - cpu_off / cpu_on):.1f}% fewer messages"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
