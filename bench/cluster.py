"""Mailstead on PostgreSQL, one node and two, against the SQLite default and Dovecot, one run.

SMTP: Postfix's ``smtp-source`` (the load of ``bench/smtp_inbound.py``: 20
sessions, 5 KiB messages, one message per connection, all to one
recipient) against

* ``sqlite``: ``mailstead serve`` in its default configuration (SQLite +
  Maildir under ``data_dir``);
* ``pg-1``: one node with ``[storage] backend = "postgresql"``;
* ``pg-2``: two ``serve`` processes on the same database, each given half
  the sessions and half the messages (two smtp-source processes at once).

The clock stops when every smtp-source has exited (each ``250`` means the
copy is stored: fsynced in the Maildir, committed in PostgreSQL); the
messages are then counted in the Maildir or the database.

IMAP, 10,000 messages (``bench/mailbox_gen.py``), over implicit TLS:
``FETCH 1:* (FLAGS UID)`` and ``UID SEARCH TEXT word`` against Dovecot,
Mailstead on SQLite + Maildir and Mailstead on PostgreSQL (the mailbox put
into the database through the store's own ``add_messages``). Per server
and round: a fresh start, one session that is not timed (Dovecot and the
Maildir store build their indexes in it), then two timed sessions.

The database is a private ``TemporaryPostgres(durable=True)`` (fsync on)
with ``pg_stat_statements``; ``bench/pg_monitor.py`` counts statements
(= round trips), bytes on the wire and the database's CPU. The
configurations alternate from round to round; tables show the median with
min and max over the rounds.

    .venv/bin/python bench/cluster.py                    # 3 rounds, 3,000 messages per SMTP run
    .venv/bin/python bench/cluster.py --rounds 5 --write-docs
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cpu import tree_cpu_seconds
from mail_access import PASSWORD, USER, RawIMAP, _certificate, _search_hits, dovecot, mailstead
from mailbox_gen import _BASE_TIME, MARKER, generate, message
from mailstead_env import loopback_dns, mailstead_version
from netutil import free_port, wait_for_port
from pg_monitor import BenchPostgres, Usage, usage_between
from smtp_inbound import RECIPIENT, SENDER, cpu_model, loadavg, write_docs

SMTP_CONFIGS = ("sqlite", "pg-1", "pg-2")
IMAP_SERVERS = ("Dovecot", "SQLite", "PostgreSQL")
# Seconds the PostgreSQL store may take to index the mailbox for SEARCH.
INDEX_WAIT = 180.0
IMAP_COMMANDS = ("FETCH 1:* (FLAGS UID)", f"UID SEARCH TEXT {MARKER}")
DOCS_SECTION = "cluster"
_STOP_TIMEOUT = 60.0


# --------------------------------------------------------------------------- nodes


def _node_config(smtp: int, imaps: int, dsn: str | None) -> str:
    listeners = {"smtp": smtp, "imaps": imaps}
    lines = [
        'hostname = "mx.mailstead.test"',
        'data_dir = "var"',
        'domains = ["example.test", "bench.test"]',
        "[listen]",
    ]
    for name in ("smtp", "submission", "submissions", "imap", "imaps", "pop3", "pop3s"):
        port = listeners.get(name, 0)
        lines.append(f"{name} = {json.dumps([f'127.0.0.1:{port}'] if port else [])}")
    lines += ["[storage]", 'format = "maildir"']
    if dsn:
        lines += ['backend = "postgresql"', f"dsn = {json.dumps(dsn)}"]
    lines += [
        "[limits]",
        "connections_per_ip = 5000",
        "connections_per_network = 5000",
        "connections_total = 5000",
        "[delivery]",
        f"dns_servers = [{json.dumps(loopback_dns())}]",
        # The benchmarks run as root on these machines; the server stays on loopback.
        "[run]",
        "allow_root = true",
    ]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Node:
    """One running ``mailstead serve``."""

    process: subprocess.Popen[bytes]
    smtp: int
    imaps: int
    root: Path


@contextlib.contextmanager
def running_nodes(
    root: Path,
    count: int,
    dsn: str | None,
    users: Sequence[str],
    *,
    imaps: bool = False,
    tls: tuple[Path, Path] | None = None,
) -> Iterator[list[Node]]:
    """``count`` serve processes (the same database when ``dsn``), ``users`` added once."""
    nodes: list[Node] = []
    with contextlib.ExitStack() as stack:
        for i in range(count):
            home = root / f"node{i}"
            (home / "var" / "tls").mkdir(parents=True)
            if tls is not None:
                shutil.copy(tls[0], home / "var" / "tls" / "cert.pem")
                shutil.copy(tls[1], home / "var" / "tls" / "key.pem")
            smtp, imap_port = free_port(), (free_port() if imaps else 0)
            config = home / "mailstead.toml"
            config.write_text(_node_config(smtp, imap_port, dsn))
            cli = [sys.executable, "-m", "mailstead", "--config", str(config)]
            # One directory for every node on PostgreSQL; the first adds the users.
            for user in users if i == 0 or dsn is None else ():
                subprocess.run(
                    [*cli, "user", "add", user, "--password-stdin"],
                    input=f"{PASSWORD}\n".encode(),
                    check=True,
                    stdout=subprocess.DEVNULL,
                )
            log = stack.enter_context((home / "serve.log").open("wb"))
            process = subprocess.Popen([*cli, "serve"], stdout=log, stderr=subprocess.STDOUT)
            stack.callback(_stop, process)
            nodes.append(Node(process, smtp, imap_port, home))
        for node in nodes:
            wait_for_port(node.smtp, node.process)
            if node.imaps:
                wait_for_port(node.imaps, node.process)
        yield nodes


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)  # serve's clean shutdown
        try:
            process.wait(_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _cpu(pid: int) -> float:
    user, system = tree_cpu_seconds(pid)
    return user + system


# --------------------------------------------------------------------------- SMTP


@dataclass(frozen=True)
class SmtpRun:
    """One timed smtp-source run against one configuration."""

    config: str
    messages: int
    seconds: float
    node_cpu: tuple[float, ...]  # CPU seconds of each node's process tree
    db: Usage | None  # None for SQLite

    @property
    def rate(self) -> float:
        return self.messages / self.seconds


def _smtp_source(sessions: int, messages: int, size: int, port: int) -> list[str]:
    tool = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
    sizes = ["-s", str(sessions), "-m", str(messages), "-l", str(size)]
    return [tool, *sizes, "-f", SENDER, "-t", RECIPIENT, f"127.0.0.1:{port}"]


def smtp_run(
    config: str, work: Path, pg: BenchPostgres, messages: int, sessions: int, size: int, tag: str
) -> SmtpRun:
    count = 2 if config == "pg-2" else 1
    database = f"smtp_{tag}"
    dsn = pg.create_database(database) if config != "sqlite" else None
    with running_nodes(work / tag, count, dsn, [RECIPIENT]) as nodes:
        # smtp-source's sessions and messages split evenly over the nodes.
        shares = [messages // count + (i < messages % count) for i in range(count)]
        per_node = [sessions // count + (i < sessions % count) for i in range(count)]
        cpu_before = [_cpu(n.process.pid) for n in nodes]
        db_before = pg.snapshot(database) if dsn else None
        start = time.perf_counter()
        sources = [
            subprocess.Popen(
                _smtp_source(s, m, size, n.smtp), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
            for n, s, m in zip(nodes, per_node, shares, strict=True)
        ]
        for source in sources:
            _, err = source.communicate(timeout=120 + messages / 10)
            if source.returncode != 0:
                raise RuntimeError(f"smtp-source failed: {err.decode(errors='replace').strip()}")
        seconds = time.perf_counter() - start
        cpu_after = [_cpu(n.process.pid) for n in nodes]
        db = usage_between(db_before, pg.snapshot(database)) if db_before else None
        if dsn:
            stored = pg.count_messages(database)
        else:
            maildir = nodes[0].root / "var" / "mail" / "example.test" / "alice" / "Maildir"
            stored = sum(1 for _ in (maildir / "new").iterdir())
        if stored != messages:
            raise RuntimeError(f"{config}: {stored} messages stored, {messages} acknowledged")
    node_cpu = tuple(b - a for a, b in zip(cpu_before, cpu_after, strict=True))
    return SmtpRun(config, messages, seconds, node_cpu, db)


# --------------------------------------------------------------------------- IMAP


def fill_database(dsn: str, count: int, seed: int = 42) -> None:
    """The mailbox of ``mailbox_gen.generate`` (same bytes, flags, dates) in USER's INBOX."""
    import random

    from mailstead.pgsql.connect import open_pool
    from mailstead.store.account import INBOX
    from mailstead.store.maildir import crlf_size
    from mailstead.store.pg_account import ensure_account, ensure_mailbox
    from mailstead.store.pg_rows import NewMessage, add_messages, autocommit, body_hash
    from mailstead.store.pg_schema import ensure_schema

    pool = open_pool(dsn)
    try:
        ensure_schema(pool)
        rng = random.Random(seed)
        with autocommit(pool) as conn:
            mailbox, _ = ensure_mailbox(conn, ensure_account(conn, USER), INBOX)
            batch: list[NewMessage] = []
            for i in range(1, count + 1):
                data = message(i, rng).replace(b"\n", b"\r\n")
                flags = "" if i % 10 == 0 else "\\Seen"
                when = float(_BASE_TIME + i * 60)
                batch.append(NewMessage(flags, crlf_size([data]), when, b"", body_hash(data), data))
                if len(batch) == 500 or i == count:
                    add_messages(conn, mailbox, batch)
                    batch = []
    finally:
        pool.close()


@dataclass(frozen=True)
class ImapRun:
    """One server's timed sessions in one round: seconds per command (median of the sessions)."""

    server: str
    seconds: dict[str, float]
    listed: int
    found: int


def _session(port: int) -> tuple[dict[str, float], int, int]:
    client = RawIMAP(port)
    try:
        client.command(f'LOGIN "{USER}" "{PASSWORD}"')
        client.command("SELECT INBOX")
        listing, t_fetch = client.command(IMAP_COMMANDS[0])
        found, t_search = client.command(IMAP_COMMANDS[1])
    finally:
        client.close()
    times = {IMAP_COMMANDS[0]: t_fetch, IMAP_COMMANDS[1]: t_search}
    return times, listing.count(b" FETCH ("), len(_search_hits(found))


def imap_sessions(
    server: str, port: int, timed: int, warm: Callable[[], bool] | None = None
) -> ImapRun:
    _session(port)  # not timed: indexes are built, caches filled
    if warm is not None:
        _wait(warm, INDEX_WAIT, f"{server}'s search index")
    runs = [_session(port) for _ in range(timed)]
    seconds = {c: statistics.median(r[0][c] for r in runs) for c in IMAP_COMMANDS}
    return ImapRun(server, seconds, runs[0][1], runs[0][2])


def _wait(ready: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.5)


def search_indexed(dsn: str, messages: int) -> Callable[[], bool]:
    """Whether the PostgreSQL store's SEARCH index (store/pg_search.py) holds
    every message: the first SEARCH starts filling it in the background, and
    the timed sessions measure the indexed search, as Dovecot's and SQLite's
    are measured warm."""

    def ready() -> bool:
        with psycopg.connect(dsn) as conn:
            row = conn.execute("SELECT count(*) FROM mail_search").fetchone()
        return row is not None and int(row[0]) >= messages

    return ready


def imap_db_usage(port: int, pg: BenchPostgres, database: str) -> dict[str, Usage]:
    """Round trips, bytes and database CPU of each IMAP command, in a session of its own."""
    client = RawIMAP(port)
    usage: dict[str, Usage] = {}
    try:
        client.command(f'LOGIN "{USER}" "{PASSWORD}"')
        for command in ("SELECT INBOX", *IMAP_COMMANDS):
            before = pg.snapshot(database)
            client.command(command)
            usage[command] = usage_between(before, pg.snapshot(database))
    finally:
        client.close()
    return usage


@contextlib.contextmanager
def imap_server(
    name: str, work: Path, template: Path, tls: tuple[Path, Path], dsn: str
) -> Iterator[int]:
    """The IMAPS port of ``name`` serving the 10,000-message mailbox."""
    if name == "Dovecot":
        with dovecot(work, template, *tls) as server:
            yield server.imaps
    elif name == "SQLite":
        with mailstead(work, template, *tls) as server:
            yield server.imaps
    else:
        # The users are in the database already (added at the first round).
        with running_nodes(work, 1, dsn, [], imaps=True, tls=tls) as nodes:
            yield nodes[0].imaps


# --------------------------------------------------------------------------- report


def _spread(values: Sequence[float], fmt: Callable[[float], str]) -> str:
    """``median (min–max)``."""
    if len(values) == 1:
        return fmt(values[0])
    return f"{fmt(statistics.median(values))} ({fmt(min(values))}–{fmt(max(values))})"


def _median(values: Sequence[float]) -> float:
    return statistics.median(values)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def smtp_table(runs: list[SmtpRun]) -> tuple[str, dict[str, float]]:
    by: dict[str, list[SmtpRun]] = {c: [r for r in runs if r.config == c] for c in SMTP_CONFIGS}
    rates = {c: _median([r.rate for r in rs]) for c, rs in by.items() if rs}
    lines = [
        "| configuration | msgs/s | / SQLite | node CPU ms per msg (each node) "
        "| DB CPU ms per msg | DB round trips per msg | DB bytes per msg |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for config, rs in by.items():
        if not rs:
            continue
        nodes = len(rs[0].node_cpu)
        # A node's CPU per message it took (each node got 1/nodes of them).
        per_node = [
            _spread([1000 * r.node_cpu[i] / (r.messages / nodes) for r in rs], lambda v: f"{v:.2f}")
            for i in range(nodes)
        ]
        with_db = [r for r in rs if r.db is not None]

        def db(
            value: Callable[[SmtpRun], float], fmt: str, with_db: list[SmtpRun] = with_db
        ) -> str:
            if not with_db:
                return "–"
            return _spread([value(r) for r in with_db], lambda v: format(v, fmt))

        lines.append(
            f"| {config} | {_spread([r.rate for r in rs], lambda v: f'{v:,.0f}')} "
            f"| {rates[config] / rates['sqlite']:.2f}x | {' / '.join(per_node)} "
            f"| {db(lambda r: 1000 * r.db.cpu / r.messages if r.db else 0, '.2f')} "
            f"| {db(lambda r: r.db.round_trips / r.messages if r.db else 0, '.2f')} "
            f"| {db(lambda r: r.db.wire_bytes / r.messages if r.db else 0, ',.0f')} |"
        )
    return "\n".join(lines), rates


def statements_table(runs: list[SmtpRun], config: str = "pg-1") -> str:
    """What the database is asked per received message, statement by statement."""
    with_db = [r for r in runs if r.config == config and r.db is not None]
    if not with_db:
        return ""
    total: Counter[str] = Counter()
    messages = 0
    for r in with_db:
        assert r.db is not None
        total.update(r.db.calls)
        messages += r.messages
    lines = ["| statement (normalised by pg_stat_statements) | per received message |"]
    lines.append("| --- | ---: |")
    for query, calls in total.most_common():
        if calls / messages < 0.01:
            break
        text = " ".join(query.split())
        text = ((text[:90] + " …") if len(text) > 90 else text).replace("|", "\\|")
        lines.append(f"| `{text}` | {calls / messages:.2f} |")
    return "\n".join(lines)


def imap_table(runs: list[ImapRun]) -> str:
    lines = ["| command | " + " | ".join(IMAP_SERVERS) + " | worst Mailstead / Dovecot |"]
    lines.append("| --- |" + " ---: |" * (len(IMAP_SERVERS) + 1))
    for command in IMAP_COMMANDS:
        cells, medians = [], {}
        for server in IMAP_SERVERS:
            values = [r.seconds[command] for r in runs if r.server == server]
            medians[server] = _median(values)
            cells.append(_spread(values, _ms) + " ms")
        worst = max(medians["SQLite"], medians["PostgreSQL"]) / medians["Dovecot"]
        lines.append(f"| `{command}` | {' | '.join(cells)} | {worst:.2f}x |")
    return "\n".join(lines)


def imap_usage_table(samples: list[dict[str, Usage]]) -> str:
    lines = [
        "| command (PostgreSQL, one node) | DB round trips | DB bytes | DB CPU ms |",
        "| --- | ---: | ---: | ---: |",
    ]
    for command in ("SELECT INBOX", *IMAP_COMMANDS):
        us = [s[command] for s in samples]
        lines.append(
            f"| `{command}` | {_spread([u.round_trips for u in us], lambda v: f'{v:.0f}')} "
            f"| {_spread([u.wire_bytes for u in us], lambda v: f'{v:,.0f}')} "
            f"| {_spread([u.cpu for u in us], _ms)} |"
        )
    return "\n".join(lines)


def report(
    args: argparse.Namespace,
    smtp: list[SmtpRun],
    imap: list[ImapRun],
    imap_usage: list[dict[str, Usage]],
    facts: list[tuple[str, str]],
) -> str:
    table, rates = smtp_table(smtp)
    out = ["| | |", "| --- | --- |", *(f"| {k} | {v} |" for k, v in facts), ""]
    out.append(
        f"SMTP: {args.messages:,} messages x {args.size:,} bytes per run, {args.sessions} "
        "concurrent smtp-source sessions (split evenly over the nodes), one message per "
        f"connection; {args.rounds} rounds, configurations alternating; median (min–max):\n"
    )
    out += [table, ""]
    one = rates["pg-1"] / rates["sqlite"]
    trips = [r.db.round_trips / r.messages for r in smtp if r.config == "pg-1" and r.db]
    out.append(
        f"Goals: one node on PostgreSQL at **{one:.2f}x** the SQLite default's rate "
        f"(goal ≥ 0.7x); **{_median(trips):.2f}** database round trips per received "
        "message (goal ≤ 3).\n"
    )
    out += ["Round trips per received message, statement by statement (pg-1):\n"]
    out += [statements_table(smtp), ""]
    out.append(
        f"IMAP, {args.imap_messages:,} messages in INBOX, implicit TLS, ms: per server and "
        "round one untimed session, then the median of two; median (min–max) over the "
        "rounds:\n"
    )
    out += [imap_table(imap), ""]
    out += ["What one IMAP command asks of the database (a session of its own, per round):\n"]
    out += [imap_usage_table(imap_usage), ""]
    return "\n".join(out)


def facts(pg: BenchPostgres, uptime: str) -> list[tuple[str, str]]:
    dovecot_version = subprocess.run(
        ["dovecot", "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    commit = subprocess.run(
        ["git", "-C", str(Path(__file__).parent), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return [
        ("CPU", f"{cpu_model()}, {os.cpu_count()} logical CPUs"),
        ("`uptime` before the run", uptime),
        ("PostgreSQL", f"{pg.version()} (private, fsync on, synchronous_commit on)"),
        ("Dovecot", dovecot_version),
        ("Mailstead", f"{mailstead_version()} (git {commit}), workers = one per CPU"),
    ]


# --------------------------------------------------------------------------- main


def _rotate(items: Sequence[str], by: int) -> list[str]:
    return [items[(i + by) % len(items)] for i in range(len(items))]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--messages", type=int, default=3000, help="messages per SMTP run (3000)")
    p.add_argument("--sessions", type=int, default=20, help="concurrent SMTP sessions (20)")
    p.add_argument("--size", type=int, default=5120, help="message body bytes (5120)")
    p.add_argument("--imap-messages", type=int, default=10_000, help="INBOX size for IMAP")
    p.add_argument("--rounds", type=int, default=3, help="rounds (3)")
    p.add_argument("--write-docs", action="store_true", help="update docs/benchmarks.md")
    args = p.parse_args(argv)
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"load before: {loadavg()}", file=sys.stderr)
    pg = BenchPostgres()
    smtp: list[SmtpRun] = []
    imap: list[ImapRun] = []
    imap_usage: list[dict[str, Usage]] = []
    with tempfile.TemporaryDirectory(prefix="mailstead-cluster-") as tmp:
        work = Path(tmp)
        os.chmod(work, 0o755)  # Dovecot's processes run as other users
        pg.start()
        try:
            tls = _certificate(work)
            template = work / "template"
            generate(template, args.imap_messages)
            imap_dsn = pg.create_database("imap")
            fill_database(imap_dsn, args.imap_messages)
            # The user's password row, in the database's directory.
            with running_nodes(work / "imap-setup", 1, imap_dsn, [USER]):
                pass
            for round_ in range(args.rounds):
                for config in _rotate(SMTP_CONFIGS, round_):
                    run = smtp_run(
                        config,
                        work,
                        pg,
                        args.messages,
                        args.sessions,
                        args.size,
                        f"{config.replace('-', '_')}_{round_}",
                    )
                    smtp.append(run)
                    print(
                        f"round {round_ + 1} {config}: {run.rate:,.0f} msgs/s "
                        f"{run.db and run.db.round_trips / run.messages}",
                        file=sys.stderr,
                    )
                for server in _rotate(IMAP_SERVERS, round_):
                    home = work / f"imap-{server}-{round_}"
                    with imap_server(server, home, template, tls, imap_dsn) as port:
                        warm = (
                            search_indexed(imap_dsn, args.imap_messages)
                            if server == "PostgreSQL"
                            else None
                        )
                        result = imap_sessions(server, port, timed=2, warm=warm)
                        if server == "PostgreSQL":
                            imap_usage.append(imap_db_usage(port, pg, "imap"))
                    shutil.rmtree(home, ignore_errors=True)
                    imap.append(result)
                    print(f"round {round_ + 1} {server}: {result}", file=sys.stderr)
            answers = {(r.listed, r.found) for r in imap}
            if len(answers) != 1:
                print(f"WARNING: the servers' answers differ: {answers}", file=sys.stderr)
            text = report(args, smtp, imap, imap_usage, facts(pg, uptime))
        finally:
            pg.stop()
    print(text)
    if args.write_docs:
        write_docs(DOCS_SECTION, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
