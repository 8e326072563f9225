"""Full-text SEARCH benchmark: Mailstead's FTS5 index against Dovecot, one run.

Both servers serve a copy of the same generated Maildir (``mailbox_gen``)
over implicit TLS, as in ``mail_access.py`` (whose servers and client this
reuses); Dovecot in its shipped default configuration (no FTS plugin, so it
reads its cache and the files), Mailstead in its default one.

Per server, ``UID SEARCH TEXT w`` and ``SEARCH BODY w`` for the rare marker
word (a handful of hits) and for a common word (many):

* **cold**: the first session after start; Mailstead has no search index
  yet (its first SEARCH reads the messages and starts the background
  indexer), Dovecot no index or cache;
* **warm**: the median of five later sessions; for Mailstead, after the
  background indexer has caught up (the time it took is reported).

Then the cost of indexing on SMTP acceptance: messages delivered over one
SMTP connection to Mailstead, alone, and again while its indexer works
through a backlog of the mailbox's messages (the worst case: indexing and
acceptance at once, on the same CPUs).

Usage: ``.venv/bin/python bench/search_fts.py [--sizes 100000] [--smtp-messages 2000]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import smtplib
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mail_access import PASSWORD, USER, RawIMAP, Server, _certificate, _search_hits, dovecot
from mailbox_gen import MARKER, generate
from netutil import free_port, wait_for_port

from mailstead.store.search_index import SEARCH_INDEX_NAME

COMMON = "protocol"  # one of mailbox_gen's words: in most messages
QUERIES = (
    f"UID SEARCH TEXT {MARKER}",
    f"SEARCH BODY {MARKER}",
    f"UID SEARCH TEXT {COMMON}",
    f"SEARCH BODY {COMMON}",
)


@dataclass
class Round:
    seconds: dict[str, float]
    hits: dict[str, int]


def search_round(port: int) -> Round:
    client = RawIMAP(port)
    try:
        client.command(f'LOGIN "{USER}" "{PASSWORD}"')
        client.command("SELECT INBOX")
        seconds, hits = {}, {}
        for query in QUERIES:
            response, elapsed = client.command(query)
            seconds[query], hits[query] = elapsed, len(_search_hits(response))
        return Round(seconds, hits)
    finally:
        client.close()


@contextmanager
def mailstead_smtp(work: Path, template: Path, cert: Path, key: Path) -> Iterator[Server]:
    """``mailstead serve`` with imaps and smtp (``Server.pop3s`` holds the SMTP port)."""
    root = work / "mailstead"
    (root / "var" / "tls").mkdir(parents=True)
    shutil.copy(cert, root / "var" / "tls" / "cert.pem")
    shutil.copy(key, root / "var" / "tls" / "key.pem")
    imaps, smtp = free_port(), free_port()
    off = "".join(f"{n} = []\n" for n in ("submission", "submissions", "imap", "pop3", "pop3s"))
    config = root / "mailstead.toml"
    config.write_text(
        'hostname = "mx.bench.test"\ndata_dir = "var"\ndomains = ["bench.test"]\n'
        f"[listen]\n{off}imaps = {json.dumps([f'127.0.0.1:{imaps}'])}\n"
        f"smtp = {json.dumps([f'127.0.0.1:{smtp}'])}\n"
        "[run]\nallow_root = true\n"
    )
    cli = [sys.executable, "-m", "mailstead", "--config", str(config)]
    subprocess.run(
        [*cli, "user", "add", USER, "--password-stdin"],
        input=PASSWORD.encode() + b"\n",
        check=True,
        stdout=subprocess.DEVNULL,
    )
    maildir = root / "var" / "mail" / "bench.test" / "alice" / "Maildir"
    if template.exists():
        shutil.copytree(template, maildir)
    log = (root / "serve.log").open("wb")
    process = subprocess.Popen([*cli, "serve"], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(imaps, process)
        wait_for_port(smtp, process)
        yield Server("Mailstead", imaps, smtp, process.pid, maildir)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
        log.close()


def indexed(maildir: Path) -> int:
    path = maildir / SEARCH_INDEX_NAME
    if not path.exists():
        return 0
    with sqlite3.connect(path, timeout=30) as db:
        try:
            return int(db.execute("SELECT count(*) FROM docs").fetchone()[0])
        except sqlite3.OperationalError:
            return 0


def wait_indexed(server: Server, count: int, limit: float) -> float:
    """Seconds until the search index holds ``count`` messages (asking by SEARCH)."""
    start = time.perf_counter()
    while indexed(server.maildir) < count:
        if time.perf_counter() - start > limit:
            raise RuntimeError(f"indexed {indexed(server.maildir)} of {count} in {limit} s")
        time.sleep(0.5)
    return time.perf_counter() - start


WARM_UP = 20


def deliver(port: int, count: int) -> float:
    """Messages per second accepted over one SMTP connection."""
    body = ("lorem ipsum dolor sit amet " * 100 + "\r\n") * 3
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as smtp:
        for n in range(-WARM_UP, count):
            if n == 0:
                start = time.perf_counter()  # after the first connection's set-up costs
            smtp.sendmail(
                "bench@remote.test",
                [USER],
                f"From: bench@remote.test\r\nTo: {USER}\r\nSubject: n {n}\r\n\r\n{body}",
            )
    return count / (time.perf_counter() - start)


def _ms(seconds: float) -> str:
    ms = seconds * 1000
    return f"{ms:.2f} ms" if ms < 10 else f"{ms:.1f} ms"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="100000", help="mailbox sizes")
    p.add_argument("--warm-rounds", type=int, default=5)
    p.add_argument("--smtp-messages", type=int, default=2000)
    p.add_argument("--smtp-rounds", type=int, default=5)
    p.add_argument("--index-timeout", type=float, default=3600)
    args = p.parse_args(argv)
    out: list[str] = []
    with tempfile.TemporaryDirectory(prefix="mailstead-bench-fts-") as tmp:
        work = Path(tmp)
        os.chmod(work, 0o755)
        cert, key = _certificate(work)
        for count in [int(x) for x in args.sizes.split(",") if x]:
            template = work / f"template-{count}"
            generate(template, count)
            rows: dict[str, dict[str, float]] = {}
            hits: dict[str, dict[str, int]] = {}
            catch_up = 0.0
            for name, make in (("Dovecot", dovecot), ("Mailstead", mailstead_smtp)):
                with make(work / f"{name}-{count}", template, cert, key) as server:
                    cold = search_round(server.imaps)
                    if name == "Mailstead":
                        catch_up = wait_indexed(server, count, args.index_timeout)
                    warm = [search_round(server.imaps) for _ in range(args.warm_rounds)]
                for query in QUERIES:
                    rows.setdefault(query, {})[f"{name} cold"] = cold.seconds[query]
                    rows[query][f"{name} warm"] = statistics.median(r.seconds[query] for r in warm)
                hits[name] = cold.hits
                print(name, count, cold, warm, file=sys.stderr)
            if hits["Dovecot"] != hits["Mailstead"]:
                print(f"WARNING: answers differ: {hits}", file=sys.stderr)
            out.append(
                f"SEARCH, {count:,} messages (Mailstead indexed them in {catch_up:.1f} s):\n"
            )
            out.append(
                "| command | hits | Dovecot cold | Mailstead cold | Dovecot warm |"
                " Mailstead warm | warm: Dovecot / Mailstead |"
            )
            out.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
            for query, r in rows.items():
                out.append(
                    f"| `{query}` | {hits['Mailstead'][query]} | {_ms(r['Dovecot cold'])} |"
                    f" {_ms(r['Mailstead cold'])} | {_ms(r['Dovecot warm'])} |"
                    f" {_ms(r['Mailstead warm'])} |"
                    f" {r['Dovecot warm'] / r['Mailstead warm']:.1f}x |"
                )
            out.append("")
            shutil.rmtree(template)
        if args.smtp_messages:
            n = args.smtp_messages
            backlog = work / "template-backlog"
            generate(backlog, max(n * 25, 10_000), seed=11)
            alone, busy, still = [], [], []
            # Alternating rounds: a shared machine's drift hits both sides alike.
            for r in range(args.smtp_rounds):
                with mailstead_smtp(work / f"smtp-alone-{r}", work / "none", cert, key) as server:
                    alone.append(deliver(server.pop3s, n))
                with mailstead_smtp(work / f"smtp-indexing-{r}", backlog, cert, key) as server:
                    search_round(server.imaps)  # starts the indexer on the backlog
                    busy.append(deliver(server.pop3s, n))
                    still.append(indexed(server.maildir))
                print(
                    "SMTP alone", alone[-1], "while indexing", busy[-1], still[-1], file=sys.stderr
                )
            a, b = statistics.median(alone), statistics.median(busy)
            out.append(
                f"SMTP acceptance, {n:,} messages over one connection, median of"
                f" {args.smtp_rounds} alternating rounds: {a:,.0f} msg/s alone, {b:,.0f} msg/s"
                f" while the indexer works through a backlog of {max(n * 25, 10_000):,} messages"
                f" (it had indexed {min(still):,}–{max(still):,} by the end):"
                f" **{(1 - b / a) * 100:.1f}% slower**.\n"
            )
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
