"""QRESYNC re-select after flag changes against a full flag download: Mailstead and Dovecot.

A client that cached a mailbox comes back after another session changed the
flags of ``--changes`` messages (default 100). It either resynchronises in
one command, ``SELECT INBOX (QRESYNC (uidvalidity modseq))`` (RFC 7162
§3.2.5), or does what a client without QRESYNC must: ``SELECT INBOX`` and
``FETCH 1:* (FLAGS)``. Reported per server and mailbox size: the octets of
the server's answers (IMAP bytes, before TLS) and the time to the tagged
reply, the median of ``--rounds`` rounds (each round makes new changes).

Both servers serve a copy of the same generated Maildir (``mailbox_gen``)
over implicit TLS, set up as in ``mail_access.py`` (Dovecot is Debian's
package with a private config; Mailstead its default configuration).

Usage: ``.venv/bin/python bench/qresync.py [--sizes 10000,100000]
[--changes 100] [--rounds 5] [--only Mailstead] [--write-docs]``; results go to
docs/benchmarks.md between the markers ``<!-- qresync:start/end -->``.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mail_access import PASSWORD, USER, RawIMAP, _certificate, dovecot, mailstead
from mailbox_gen import generate
from smtp_inbound import cpu_model, write_docs

SERVERS = {"Dovecot": dovecot, "Mailstead": mailstead}


@dataclass(frozen=True)
class Resync:
    """One comparison: QRESYNC SELECT vs SELECT + FETCH 1:* (FLAGS)."""

    qresync_bytes: int
    qresync_seconds: float
    qresync_fetches: int  # FETCH responses the QRESYNC answer carried
    full_bytes: int
    full_seconds: float


def _login(port: int) -> RawIMAP:
    client = RawIMAP(port)
    client.command(f'LOGIN "{USER}" "{PASSWORD}"')
    return client


def _code(response: bytes, name: bytes) -> int:
    match = re.search(rb"\[" + name + rb" (\d+)\]", response)
    if match is None:
        raise RuntimeError(f"no {name.decode()} in {response[-300:]!r}")
    return int(match[1])


def cache_state(port: int) -> tuple[int, int]:
    """(UIDVALIDITY, HIGHESTMODSEQ) as a QRESYNC client leaves the mailbox."""
    client = _login(port)
    try:
        client.command("ENABLE QRESYNC")
        selected, _ = client.command("SELECT INBOX")
        return _code(selected, b"UIDVALIDITY"), _code(selected, b"HIGHESTMODSEQ")
    finally:
        client.close()


def change_flags(port: int, count: int, changes: int, rng: random.Random) -> None:
    """Another session toggles \\Flagged on ``changes`` distinct messages."""
    client = _login(port)
    try:
        client.command("SELECT INBOX")
        for n in rng.sample(range(1, count + 1), changes):
            client.command(f"STORE {n} FLAGS.SILENT (\\Flagged)")
    finally:
        client.close()


def resync_round(port: int, count: int, changes: int, rng: random.Random) -> Resync:
    uidvalidity, modseq = cache_state(port)
    change_flags(port, count, changes, rng)
    client = _login(port)
    try:
        client.command("ENABLE QRESYNC")
        answer, t_qresync = client.command(f"SELECT INBOX (QRESYNC ({uidvalidity} {modseq}))")
    finally:
        client.close()
    client = _login(port)
    try:
        selected, t_select = client.command("SELECT INBOX")
        flags, t_fetch = client.command("FETCH 1:* (FLAGS)")
    finally:
        client.close()
    if flags.count(b" FETCH (") != count:
        raise RuntimeError(f"FETCH 1:* listed {flags.count(b' FETCH (')} of {count} messages")
    return Resync(
        len(answer),
        t_qresync,
        answer.count(b" FETCH ("),
        len(selected) + len(flags),
        t_select + t_fetch,
    )


def _median(rounds: list[Resync]) -> Resync:
    return Resync(
        int(statistics.median(r.qresync_bytes for r in rounds)),
        statistics.median(r.qresync_seconds for r in rounds),
        int(statistics.median(r.qresync_fetches for r in rounds)),
        int(statistics.median(r.full_bytes for r in rounds)),
        statistics.median(r.full_seconds for r in rounds),
    )


def report(results: dict[tuple[int, str], Resync], changes: int, facts: list[str]) -> str:
    lines = [
        f"QRESYNC re-select after {changes} flag changes by another session, against"
        " `SELECT` + `FETCH 1:* (FLAGS)` (medians; IMAP octets before TLS):",
        "",
        "| messages | server | QRESYNC octets | QRESYNC time | FETCHes in it"
        " | full octets | full time | octets saved |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for (count, name), r in sorted(results.items()):
        lines.append(
            f"| {count:,} | {name} | {r.qresync_bytes:,} | {r.qresync_seconds * 1000:.1f} ms"
            f" | {r.qresync_fetches} | {r.full_bytes:,} | {r.full_seconds * 1000:.1f} ms"
            f" | {r.full_bytes / max(r.qresync_bytes, 1):.0f}× |"
        )
    return "\n".join([*lines, "", *facts])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="10000,100000", help="mailbox sizes")
    p.add_argument("--changes", type=int, default=100, help="flag changes between visits")
    p.add_argument("--rounds", type=int, default=5, help="rounds per server (median reported)")
    p.add_argument("--only", choices=sorted(SERVERS), help="benchmark one server only")
    p.add_argument("--write-docs", action="store_true")
    args = p.parse_args(argv)
    names = [args.only] if args.only else list(SERVERS)
    results: dict[tuple[int, str], Resync] = {}
    with tempfile.TemporaryDirectory(prefix="mailstead-bench-") as tmp:
        work = Path(tmp)
        os.chmod(work, 0o755)  # Dovecot's processes run as other users
        cert, key = _certificate(work)
        for count in [int(x) for x in args.sizes.split(",") if x]:
            template = work / f"template-{count}"
            generate(template, count)
            for name in names:
                with SERVERS[name](work / f"{name}-{count}", template, cert, key) as server:
                    rng = random.Random(count)
                    cache_state(server.imaps)  # the first open (indexing) is not measured
                    rounds = [
                        resync_round(server.imaps, count, args.changes, rng)
                        for _ in range(args.rounds)
                    ]
                    for r in rounds:
                        print(name, count, r, file=sys.stderr)
                    results[(count, name)] = _median(rounds)
                shutil.rmtree(work / f"{name}-{count}", ignore_errors=True)
            shutil.rmtree(template)
    facts = [f"Machine: {os.cpu_count()} CPUs, {cpu_model()}; Python {sys.version.split()[0]}."]
    if "Dovecot" in names:
        version = subprocess.run(["dovecot", "--version"], capture_output=True, text=True)
        facts.append(f"Dovecot {version.stdout.strip()}, shipped defaults.")
    text = report(results, args.changes, facts)
    print(text)
    if args.write_docs:
        write_docs("qresync", text)
    return 0


if __name__ == "__main__":
    started = time.perf_counter()
    code = main()
    print(f"done in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    sys.exit(code)
