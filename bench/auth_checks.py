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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from netutil import free_port, wait_for_port
from tests.mailauth import authzones

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
def serving(root: Path, dns: tuple[str, int], enabled: bool) -> Iterator[tuple[int, Path]]:
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
        yield port, root / "var" / "mail" / "example.test" / "bob" / "Maildir" / "new"
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
) -> float:
    root = Path(tempfile.mkdtemp(prefix=f"auth-{'on' if enabled else 'off'}-", dir=workdir))
    with serving(root / "srv", dns, enabled) as (port, new):
        send(port, 20, min(args.sessions, 4), content)  # warm-up: imports, DNS cache
        started = time.perf_counter()
        send(port, args.messages, args.sessions, content)
        deadline = time.monotonic() + 300
        while count(new) < args.messages + 20:
            if time.monotonic() > deadline:
                raise RuntimeError("messages did not all arrive")
            time.sleep(_POLL)
        return args.messages / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--messages", type=int, default=2000, help="messages per round (2000)")
    p.add_argument("--sessions", type=int, default=10, help="concurrent SMTP sessions (10)")
    p.add_argument("--rounds", type=int, default=3, help="rounds of each mode (3)")
    p.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()))
    args = p.parse_args(argv)
    content = authzones.sign(authzones.message(body=b"x" * 4000 + b"\r\n"))
    rates: dict[bool, list[float]] = {False: [], True: []}
    with DNSServer(authzones.zones()) as dns:
        for i in range(args.rounds):
            for enabled in (False, True) if i % 2 == 0 else (True, False):
                rate = one_round(args.workdir, dns, enabled, args, content)
                rates[enabled].append(rate)
                print(
                    f"round {i + 1}: checks {'on ' if enabled else 'off'} {rate:8.1f} msg/s",
                    flush=True,
                )
    off, on = statistics.median(rates[False]), statistics.median(rates[True])
    # Each round's cost from its own pair: the machine's state moves between rounds.
    costs = [100 * (1 - b / a) for a, b in zip(rates[False], rates[True], strict=True)]
    print(f"\n| verification | messages/s, median of {args.rounds} (min–max) |\n|---|---|")
    for name, values in (("off", rates[False]), ("on", rates[True])):
        print(f"| {name} | {statistics.median(values):.1f} ({min(values):.1f}–{max(values):.1f}) |")
    print(
        f"\ncost of checking: {100 * (1 - on / off):.1f}% of the acceptance rate (medians);"
        f" per round {statistics.median(costs):.1f}% ({min(costs):.1f}–{max(costs):.1f}%)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
