"""IMAP and POP3 benchmark: Mailstead against Dovecot, side by side, one run.

Both servers serve a copy of the same generated Maildir (``mailbox_gen``) on
loopback ports, over implicit TLS (imaps/pop3s) with the same certificate.
Dovecot is Debian's package, started by this script with a private config
(``dovecot -F -c``); Mailstead is ``mailstead serve`` in its default configuration (one worker
per CPU).

IMAP, per mailbox size (10,000 and 100,000 messages), cold (first open:
neither server has an index yet) and warm (the median of five more
connections, each logging in afresh):
``SELECT INBOX``, ``FETCH 1:* (UID FLAGS)``, ``UID SEARCH SUBJECT w``,
``UID SEARCH TEXT w`` and 200 random ``FETCH n BODY.PEEK[]``. The client is
a minimal one (a command, then read to the tagged reply) so that client-side
parsing does not hide the servers' differences.

POP3: 10,000 messages, one session doing STAT, UIDL, RETR of every message
and QUIT, with poplib.

Memory: RSS growth of the Mailstead process per logged-in connection in
IDLE, with 2,000 of them open.

Usage: ``.venv/bin/python bench/mail_access.py [--sizes 10000,100000]
[--mailstead-first] [--write-docs]``; results go to docs/benchmarks.md between the markers
``<!-- mail-access:start/end -->``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import poplib
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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mailbox_gen import MARKER, generate
from netutil import free_port, wait_for_port
from smtp_inbound import cpu_model, write_docs

USER = "alice@bench.test"
PASSWORD = "bench-password"
BODY_FETCHES = 200


def _tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


# --------------------------------------------------------------------------- clients


class RawIMAP:
    """Just enough IMAP client: send a command, read up to its tagged reply."""

    def __init__(self, port: int) -> None:
        raw = socket.create_connection(("127.0.0.1", port))
        self.sock = _tls().wrap_socket(raw)
        self.buf = b""
        self.n = 0
        self._read_until(re.compile(rb"\* OK[^\r\n]*\r\n"))

    def _read_until(self, pattern: re.Pattern[bytes]) -> bytes:
        while True:
            m = pattern.search(self.buf, max(0, len(self.buf) - 65536 - 4096))
            if m is None and len(self.buf) < 65536:
                m = pattern.search(self.buf)
            if m is not None:
                out, self.buf = self.buf[: m.end()], self.buf[m.end() :]
                return out
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self.buf += chunk

    def command(self, text: str) -> tuple[bytes, float]:
        self.n += 1
        tag = f"b{self.n}"
        start = time.perf_counter()
        self.sock.sendall(f"{tag} {text}\r\n".encode())
        response = self._read_until(re.compile(rb"(?:^|\r\n)" + tag.encode() + rb" [^\r\n]*\r\n"))
        elapsed = time.perf_counter() - start
        status = response.rsplit(b"\r\n" + tag.encode() + b" ", 1)[-1]
        if not status.startswith(b"OK") and not response.startswith(tag.encode() + b" OK"):
            raise RuntimeError(f"{text!r} failed: {response[-300:]!r}")
        return response, elapsed

    def close(self) -> None:
        with contextlib.suppress(OSError, RuntimeError):
            self.command("LOGOUT")
        self.sock.close()


@dataclass
class ImapTimes:
    select: float
    fetch_flags: float
    search_subject: float
    search_text: float
    body_fetches: float
    found_subject: int
    found_text: int
    listed: int


_Timed = TypeVar("_Timed", "ImapTimes", "Pop3Times")


def imap_round(port: int, count: int, seed: int) -> ImapTimes:
    client = RawIMAP(port)
    try:
        client.command(f'LOGIN "{USER}" "{PASSWORD}"')
        _, t_select = client.command("SELECT INBOX")
        listing, t_fetch = client.command("FETCH 1:* (UID FLAGS)")
        subject, t_subject = client.command(f"UID SEARCH SUBJECT {MARKER}")
        text, t_text = client.command(f"UID SEARCH TEXT {MARKER}")
        rng = random.Random(seed)
        t_bodies = 0.0
        for _ in range(BODY_FETCHES):
            _, t = client.command(f"FETCH {rng.randint(1, count)} BODY.PEEK[]")
            t_bodies += t
        return ImapTimes(
            t_select,
            t_fetch,
            t_subject,
            t_text,
            t_bodies,
            len(_search_hits(subject)),
            len(_search_hits(text)),
            listing.count(b" FETCH ("),
        )
    finally:
        client.close()


def median_times(rounds: list[_Timed]) -> _Timed:
    """Each timing's median over several sessions (the counts are the same in all)."""
    timed = [f.name for f in fields(rounds[0]) if f.type == "float"]  # type: ignore[arg-type]
    medians = {name: statistics.median(getattr(r, name) for r in rounds) for name in timed}
    return replace(rounds[0], **medians)  # type: ignore[type-var]


def _search_hits(response: bytes) -> list[int]:
    m = re.search(rb"\* SEARCH([ 0-9]*)\r\n", response)
    return [int(x) for x in m.group(1).split()] if m else []


@dataclass
class Pop3Times:
    login: float  # connect, TLS, USER/PASS (includes the password hash check)
    work: float  # STAT + UIDL + RETR of every message + QUIT
    messages: int
    octets: int


def pop3_round(port: int) -> Pop3Times:
    start = time.perf_counter()
    client = poplib.POP3_SSL("127.0.0.1", port, context=_tls())
    client.user(USER)
    client.pass_(PASSWORD)
    logged_in = time.perf_counter()
    count, _ = client.stat()
    client.uidl()
    octets = 0
    for n in range(1, count + 1):
        _, _, size = client.retr(n)
        octets += size
    client.quit()
    done = time.perf_counter()
    return Pop3Times(logged_in - start, done - logged_in, count, octets)


# --------------------------------------------------------------------------- servers


@dataclass
class Server:
    name: str
    imaps: int
    pop3s: int
    pid: int
    maildir: Path


@contextmanager
def dovecot(work: Path, template: Path, cert: Path, key: Path) -> Iterator[Server]:
    root = work / "dovecot"
    for sub in ("run", "state", "home"):
        (root / sub).mkdir(parents=True)
    maildir = root / "Maildir"
    shutil.copytree(template, maildir)
    subprocess.run(["chown", "-R", "mail:mail", str(maildir), str(root / "home")], check=True)
    (root / "users").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
    imaps, pop3s = free_port(), free_port()
    conf = root / "dovecot.conf"
    conf.write_text(
        f"base_dir = {root}/run\nstate_dir = {root}/state\nlog_path = {root}/dovecot.log\n"
        "instance_name = mailstead-bench\nprotocols = imap pop3\nlisten = 127.0.0.1\n"
        f"ssl = required\nssl_cert = <{cert}\nssl_key = <{key}\n"
        "auth_mechanisms = plain login\nfirst_valid_uid = 8\nfirst_valid_gid = 8\n"
        "default_internal_user = dovecot\ndefault_login_user = dovenull\n"
        "passdb {\n driver = passwd-file\n"
        f" args = scheme=PLAIN username_format=%u {root}/users\n}}\n"
        "userdb {\n driver = static\n"
        f" args = uid=mail gid=mail home={root}/home mail=maildir:{maildir}\n}}\n"
        "service imap-login {\n inet_listener imap {\n  port = 0\n }\n"
        f" inet_listener imaps {{\n  port = {imaps}\n  ssl = yes\n }}\n}}\n"
        "service pop3-login {\n inet_listener pop3 {\n  port = 0\n }\n"
        f" inet_listener pop3s {{\n  port = {pop3s}\n  ssl = yes\n }}\n}}\n"
    )
    process = subprocess.Popen(["dovecot", "-F", "-c", str(conf)])
    try:
        wait_for_port(imaps, process)
        wait_for_port(pop3s, process)
        yield Server("Dovecot", imaps, pop3s, process.pid, maildir)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)


@contextmanager
def mailstead(work: Path, template: Path, cert: Path, key: Path) -> Iterator[Server]:
    root = work / "mailstead"
    root.mkdir(parents=True)
    imaps, pop3s = free_port(), free_port()
    (root / "var" / "tls").mkdir(parents=True)
    shutil.copy(cert, root / "var" / "tls" / "cert.pem")
    shutil.copy(key, root / "var" / "tls" / "key.pem")
    config = root / "mailstead.toml"
    off = "".join(f"{n} = []\n" for n in ("smtp", "submission", "submissions", "imap", "pop3"))
    config.write_text(
        'hostname = "mx.bench.test"\ndata_dir = "var"\ndomains = ["bench.test"]\n'
        f"[listen]\n{off}imaps = {json.dumps([f'127.0.0.1:{imaps}'])}\n"
        f"pop3s = {json.dumps([f'127.0.0.1:{pop3s}'])}\n"
        "[limits]\nconnections_per_ip = 5000\nconnections_per_network = 5000\n"
        "connections_total = 5000\n"
        # The benchmark runs as root; the unprivileged user is not what it measures.
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
    shutil.copytree(template, maildir)
    log = (root / "serve.log").open("wb")
    process = subprocess.Popen([*cli, "serve"], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(imaps, process)
        wait_for_port(pop3s, process)
        yield Server("Mailstead", imaps, pop3s, process.pid, maildir)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
        log.close()


def _certificate(work: Path) -> tuple[Path, Path]:
    from mailstead.tlscert import ensure_self_signed

    cert, key = work / "cert.pem", work / "key.pem"
    ensure_self_signed(cert, key, "localhost")
    os.chmod(key, 0o644)  # Dovecot's config process reads it as its own user
    return cert, key


# --------------------------------------------------------------------------- memory


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def _idle_client(port: int, context: ssl.SSLContext, ready: asyncio.Queue[object]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    await reader.readline()
    writer.write(f'a LOGIN "{USER}" "{PASSWORD}"\r\nb SELECT INBOX\r\nc IDLE\r\n'.encode())
    while not (await reader.readline()).startswith(b"+ "):
        pass
    await ready.put(writer)
    await asyncio.sleep(3600)


async def idle_memory(server: Server, connections: int) -> tuple[int, int, float]:
    """(RSS before, RSS after in KiB, seconds to open) for ``connections`` IDLE sessions."""
    context = _tls()
    warm = RawIMAP(server.imaps)
    warm.command(f'LOGIN "{USER}" "{PASSWORD}"')
    warm.command("SELECT INBOX")
    before = rss_kib(server.pid)
    ready: asyncio.Queue[object] = asyncio.Queue()
    start = time.perf_counter()
    tasks = []
    for i in range(connections):
        tasks.append(asyncio.create_task(_idle_client(server.imaps, context, ready)))
        if i % 50 == 49:
            await asyncio.sleep(0.05)
    for _ in range(connections):
        await asyncio.wait_for(ready.get(), 120)
    opened = time.perf_counter() - start
    await asyncio.sleep(2)
    after = rss_kib(server.pid)
    for task in tasks:
        task.cancel()
    warm.close()
    return before, after, opened


# --------------------------------------------------------------------------- report


@dataclass
class Results:
    imap: dict[tuple[int, str, str], ImapTimes] = field(default_factory=dict)
    pop3: dict[tuple[str, str], Pop3Times] = field(default_factory=dict)
    memory: tuple[int, int, float, int] | None = None


_IMAP_ROWS = (
    ("SELECT INBOX", "select"),
    ("FETCH 1:* (UID FLAGS)", "fetch_flags"),
    (f"UID SEARCH SUBJECT {MARKER}", "search_subject"),
    (f"UID SEARCH TEXT {MARKER}", "search_text"),
    (f"{BODY_FETCHES} × FETCH n BODY.PEEK[]", "body_fetches"),
)


def _ms(seconds: float) -> str:
    ms = seconds * 1000
    return f"{ms:.2f} ms" if ms < 10 else f"{ms:.1f} ms"


def report(results: Results, facts: list[tuple[str, str]]) -> str:
    out = ["| | |", "| --- | --- |", *(f"| {k} | {v} |" for k, v in facts), ""]
    for count in sorted({c for c, _, _ in results.imap}):
        for phase in ("cold", "warm"):
            d = results.imap[(count, phase, "Dovecot")]
            m = results.imap[(count, phase, "Mailstead")]
            out.append(f"IMAP, {count:,} messages, {phase}:\n")
            out.append("| command | Dovecot | Mailstead | Mailstead / Dovecot |")
            out.append("| --- | ---: | ---: | ---: |")
            for label, attr in _IMAP_ROWS:
                dv, mv = getattr(d, attr), getattr(m, attr)
                out.append(f"| `{label}` | {_ms(dv)} | {_ms(mv)} | {mv / dv:.2f}x |")
            out.append("")
    if results.pop3:
        first = results.pop3[("first", "Dovecot")]
        out.append(
            f"POP3, {first.messages:,} messages ({first.octets / 1e6:.1f} MB), one session"
            ' after another on the same mailbox (the first one finds no index; "later"'
            " is the median of the next five):\n"
        )
        out.append("| session, part | Dovecot | Mailstead | Mailstead / Dovecot |")
        out.append("| --- | ---: | ---: | ---: |")
        for session in ("first", "later"):
            d = results.pop3[(session, "Dovecot")]
            m = results.pop3[(session, "Mailstead")]
            for label, dv, mv in (
                ("login (TLS, USER/PASS)", d.login, m.login),
                ("STAT + UIDL + RETR all + QUIT", d.work, m.work),
                ("whole session", d.login + d.work, m.login + m.work),
            ):
                out.append(f"| {session}, {label} | {dv:.3f} s | {mv:.3f} s | {mv / dv:.2f}x |")
        out.append(
            "\nDovecot checks a plain-text password file; Mailstead an scrypt hash"
            " (about 50 ms by design) at the first login, which is most of that"
            " login's difference, and recognises the same password from its"
            " password cache at the later ones (`auth.password_cache_ttl`).\n"
        )
    if results.memory:
        before, after, opened, n = results.memory
        out.append(
            f"Memory: {n:,} logged-in IMAP connections in IDLE (TLS) grow the Mailstead "
            f"process from {before / 1024:.1f} MiB to {after / 1024:.1f} MiB RSS: "
            f"**{(after - before) / n:.1f} KiB per connection** (opened in {opened:.1f} s).\n"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="10000,100000", help="mailbox sizes for IMAP")
    p.add_argument(
        "--warm-rounds", type=int, default=5, help="warm sessions per server (median reported)"
    )
    p.add_argument("--pop3-messages", type=int, default=10_000)
    p.add_argument("--idle-connections", type=int, default=2000)
    p.add_argument("--write-docs", action="store_true")
    p.add_argument(
        "--mailstead-first",
        action="store_true",
        help="run Mailstead before Dovecot (alternate it between runs)",
    )
    args = p.parse_args(argv)
    servers = (mailstead, dovecot) if args.mailstead_first else (dovecot, mailstead)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    results = Results()
    with tempfile.TemporaryDirectory(prefix="mailstead-bench-") as tmp:
        work = Path(tmp)
        # Dovecot's auth and mail processes run as other users: let them in.
        os.chmod(work, 0o755)
        cert, key = _certificate(work)
        for count in [int(x) for x in args.sizes.split(",") if x]:
            template = work / f"template-{count}"
            t0 = time.perf_counter()
            generate(template, count)
            print(
                f"generated {count} messages in {time.perf_counter() - t0:.1f} s", file=sys.stderr
            )
            for make in servers:
                run = work / f"{make.__name__}-{count}"
                with make(run, template, cert, key) as server:
                    cold = imap_round(server.imaps, count, seed=count)
                    warm = [
                        imap_round(server.imaps, count, seed=count) for _ in range(args.warm_rounds)
                    ]
                    results.imap[(count, "cold", server.name)] = cold
                    results.imap[(count, "warm", server.name)] = median_times(warm)
                    for phase, times in (("cold", cold), *(("warm", w) for w in warm)):
                        print(server.name, count, phase, times, file=sys.stderr)
                shutil.rmtree(run, ignore_errors=True)
            _check_same_answers(results, count)
            shutil.rmtree(template)
        if args.pop3_messages:
            template = work / "template-pop3"
            generate(template, args.pop3_messages, seed=7)
            for make in (dovecot, mailstead):
                with make(work / f"pop3-{make.__name__}", template, cert, key) as server:
                    # No DELE: both sessions retrieve every message (the
                    # first sets \Seen at QUIT, as Dovecot does).
                    first = pop3_round(server.pop3s)
                    later = [pop3_round(server.pop3s) for _ in range(args.warm_rounds)]
                    results.pop3[("first", server.name)] = first
                    results.pop3[("later", server.name)] = median_times(later)
                    for session, times in (("first", first), *(("later", t) for t in later)):
                        print(server.name, "pop3", session, times, file=sys.stderr)
        if args.idle_connections:
            template = work / "template-idle"
            generate(template, 10, seed=3)
            with mailstead(work / "idle-mailstead", template, cert, key) as server:
                before, after, opened = asyncio.run(idle_memory(server, args.idle_connections))
                results.memory = (before, after, opened, args.idle_connections)
    facts = [
        ("machine", f"{os.cpu_count()} CPUs, {cpu_model()}"),
        (
            "Dovecot",
            subprocess.run(["dovecot", "--version"], capture_output=True, text=True).stdout.strip(),
        ),
        ("Python", sys.version.split()[0]),
        ("transport", "implicit TLS on 127.0.0.1 (imaps, pop3s), one client session at a time"),
    ]
    text = report(results, facts)
    print(text)
    if args.write_docs:
        write_docs("mail-access", text)
    return 0


def _check_same_answers(results: Results, count: int) -> None:
    """Both servers must list every message and find the same marker messages."""
    for phase in ("cold", "warm"):
        d = results.imap[(count, phase, "Dovecot")]
        m = results.imap[(count, phase, "Mailstead")]
        if (d.listed, d.found_subject, d.found_text) != (m.listed, m.found_subject, m.found_text):
            print(
                f"WARNING: answers differ ({phase}): Dovecot {d} vs Mailstead {m}", file=sys.stderr
            )


if __name__ == "__main__":
    sys.exit(main())
