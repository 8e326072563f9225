"""Many IMAP clients on one mailbox at once, each checking every reply against its model.

N clients log in to one account, select INBOX and, for a fixed time, send a
random mix of SELECT, FETCH, STORE, EXPUNGE, UID EXPUNGE, APPEND, COPY,
MOVE, SEARCH, NOOP and IDLE. Each keeps a model of its view of the mailbox
(the UID of every sequence number, as far as it was told, and the flags)
and checks every response against it:

* EXISTS never shrinks the view; EXPUNGE names a number the client holds,
  and never comes during FETCH, STORE or SEARCH without UID
  (RFC 9051 §7.5.1);
* a FETCH names a number the client holds, with the UID it knows for it;
  a new UID is above every UID before it (RFC 9051 §2.3.1.1) and never one
  the client saw expunged; every number asked for is answered, even one
  expunged by another client meanwhile (RFC 2180 §4.1.2);
* ``SEARCH ALL`` and ``UID SEARCH ALL`` list exactly the client's view;
* STORE's FETCH shows the flag just added or removed; a body's literal is
  as long as its RFC822.SIZE;
* APPENDUID and COPYUID give UIDs no client was given before.

Every NO or BAD to these (valid) commands, every disconnect and every
mismatch is counted. With ``--dovecot`` the same mix runs against Dovecot
(Debian's package, on loopback) in alternating rounds and the commands per
second of both are printed.

Usage: ``.venv/bin/python bench/imap_stress.py [--clients 10] [--seconds 30]
[--rounds 1] [--messages 200] [--dovecot]``. Mailstead runs in its default
configuration (one worker per CPU), so clients land in different workers.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import ssl
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, suppress
from dataclasses import dataclass, field
from pathlib import Path

_STATUS = re.compile(rb"^(\S+) (OK|NO|BAD)\b(.*)$")
_LITERAL = re.compile(rb"\{(\d+)\}$")
_NUMBERED = re.compile(rb"^\* (\d+) (EXISTS|EXPUNGE|RECENT|FETCH)\b(.*)$", re.S)
_UID = re.compile(rb"\bUID (\d+)")
_FLAGS = re.compile(rb"\bFLAGS \(([^)]*)\)")
_SIZE = re.compile(rb"\bRFC822\.SIZE (\d+)")
_CODE_UIDS = re.compile(rb"\[(APPENDUID|COPYUID) \d+ (?:[\d:,]+ )?([\d:,]+)\]")
# Commands during which the client's numbers must hold (RFC 9051 §7.5.1).
_NO_EXPUNGE = frozenset({"FETCH", "STORE", "SEARCH"})
_FLAG_CHOICES = ("\\Flagged", "\\Answered", "\\Seen", "$Stress", "\\Draft")
_MESSAGE = (
    b"From: stress@example.test\r\nTo: alice@example.test\r\n"
    b"Subject: stress %d\r\nMessage-ID: <%d.stress@example.test>\r\n\r\nbody %d\r\n"
)


class ModelError(Exception):
    """A server response that contradicts what the client was told before."""


class Disconnected(Exception):
    """The server closed the connection."""


@dataclass
class Stats:
    """What the clients of one run counted."""

    commands: int = 0
    no: int = 0
    bad: int = 0
    disconnects: int = 0
    mismatches: int = 0
    examples: list[str] = field(default_factory=list)
    per_command: dict[str, int] = field(default_factory=dict)
    slowest: tuple[float, str] = (0.0, "")
    # CPU seconds the clients (this process) used while the clock ran: near
    # the elapsed time, the clients and not the server set the pace.
    client_cpu: float = 0.0

    def note(self, what: str) -> None:
        if len(self.examples) < 20:
            self.examples.append(what)

    @property
    def failures(self) -> int:
        return self.no + self.bad + self.disconnects + self.mismatches


@dataclass
class Response:
    """One command's answer: untagged responses (literals cut out) and the tagged line."""

    untagged: list[tuple[bytes, list[bytes]]]
    status: bytes
    text: bytes


class Client:
    """One connection and the model of its selected mailbox."""

    def __init__(self, name: str, shared_uids: set[int], rng: random.Random) -> None:
        self.name = name
        self.rng = rng
        self.shared_uids = shared_uids  # every UID any client was given by APPEND/COPY
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.tag = 0
        self.uids: list[int | None] = []
        self.flags: dict[int, set[str]] = {}
        self.expunged: set[int] = set()

    async def connect(self, port: int, context: ssl.SSLContext, user: str, password: str) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
        await self._line()  # greeting
        await self.command(f'LOGIN "{user}" "{password}"', kind="LOGIN")
        await self.select()

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with suppress(OSError, ssl.SSLError):
                await self.writer.wait_closed()

    # -- the wire --------------------------------------------------------------

    async def _line(self) -> bytes:
        assert self.reader is not None
        line = await self.reader.readline()
        if not line.endswith(b"\n"):
            raise Disconnected(f"{self.name}: connection closed")
        return line.rstrip(b"\r\n")

    async def _response_line(self) -> tuple[bytes, list[bytes]]:
        """One response line with its literals cut out (the text keeps ``{n}``)."""
        assert self.reader is not None
        line = await self._line()
        literals = []
        text = line
        while (m := _LITERAL.search(line)) is not None:
            literals.append(await self.reader.readexactly(int(m.group(1))))
            line = await self._line()
            text += b"\x00" + line
        return text, literals

    async def command(
        self, text: str, *, kind: str, literal: bytes | None = None, idle: float = 0.0
    ) -> Response:
        assert self.writer is not None
        self.tag += 1
        tag = b"t%d" % self.tag
        if literal is not None:
            self.writer.write(tag + b" " + text.encode() + b" {%d+}\r\n" % len(literal))
            self.writer.write(literal + b"\r\n")
        else:
            self.writer.write(tag + b" " + text.encode() + b"\r\n")
        await self.writer.drain()
        untagged: list[tuple[bytes, list[bytes]]] = []
        allow_expunge = kind not in _NO_EXPUNGE
        while True:
            if idle and untagged and untagged[-1][0].startswith(b"+"):
                untagged.pop()
                try:
                    while True:
                        item = await asyncio.wait_for(self._response_line(), idle)
                        self._apply(item[0], allow_expunge=True)
                except TimeoutError:
                    pass
                self.writer.write(b"DONE\r\n")
                await self.writer.drain()
                idle = 0.0
                continue
            item = await self._response_line()
            m = _STATUS.match(item[0])
            if m is not None and m.group(1) == tag:
                return Response(untagged, m.group(2), m.group(3))
            if item[0].startswith(b"*"):
                self._apply(item[0], allow_expunge=allow_expunge)
            untagged.append(item)

    # -- the model -----------------------------------------------------------------

    def _apply(self, line: bytes, *, allow_expunge: bool) -> None:
        m = _NUMBERED.match(line)
        if m is None:
            return
        n, what, rest = int(m.group(1)), m.group(2), m.group(3)
        uids = self.uids
        if what == b"EXISTS":
            if n < len(uids):
                raise ModelError(f"EXISTS {n} below the {len(uids)} messages held")
            uids.extend([None] * (n - len(uids)))
        elif what == b"EXPUNGE":
            if not allow_expunge:
                raise ModelError(f"EXPUNGE {n} during a command that holds numbers")
            if not 1 <= n <= len(uids):
                raise ModelError(f"EXPUNGE {n} of {len(uids)} messages")
            uid = uids.pop(n - 1)
            if uid is not None:
                self.expunged.add(uid)
                self.flags.pop(uid, None)
        elif what == b"RECENT":
            if n > len(uids):
                raise ModelError(f"RECENT {n} of {len(uids)} messages")
        else:
            self._fetch(n, rest)

    def _fetch(self, n: int, rest: bytes) -> None:
        uids = self.uids
        if not 1 <= n <= len(uids):
            raise ModelError(f"FETCH {n} of {len(uids)} messages")
        head = rest.split(b"\x00", 1)[0]
        known = uids[n - 1]
        m = _UID.search(head)
        uid = known
        if m is not None:
            uid = int(m.group(1))
            if known is None:
                below = next((u for u in reversed(uids[: n - 1]) if u is not None), 0)
                above = next((u for u in uids[n:] if u is not None), None)
                if uid <= below or (above is not None and uid >= above) or uid in self.expunged:
                    raise ModelError(f"FETCH {n} gave UID {uid} between {below} and {above}")
                uids[n - 1] = uid
            elif uid != known:
                raise ModelError(f"FETCH {n} gave UID {uid}, not {known}")
        f = _FLAGS.search(head)
        if f is not None and uid is not None:
            self.flags[uid] = set(f.group(1).decode().split())

    def known(self) -> list[int]:
        return [u for u in self.uids if u is not None]

    # -- commands ----------------------------------------------------------------------

    async def select(self) -> None:
        self.uids = []
        self.flags = {}
        await self.command("SELECT INBOX", kind="SELECT")
        if self.uids:
            await self.fetch_flags(1, len(self.uids))

    async def fetch_flags(self, first: int, last: int) -> None:
        r = await self.command(f"FETCH {first}:{last} (UID FLAGS)", kind="FETCH")
        # Flag changes of other sessions may add FETCHes of their own.
        answered = {
            int(m.group(1))
            for m in (_NUMBERED.match(t) for t, _ in r.untagged)
            if m and m.group(2) == b"FETCH"
        }
        missing = set(range(first, last + 1)) - answered
        if r.status == b"OK" and missing:
            raise ModelError(f"FETCH {first}:{last} left out {sorted(missing)[:5]}")

    def _seq(self) -> int:
        return self.rng.randint(1, len(self.uids))

    async def step(self) -> tuple[str, Response | None]:
        """One random command; its name and response (None when checked inside)."""
        rng = self.rng
        if not self.uids:
            return "APPEND", await self._append()
        unknown = [i for i, u in enumerate(self.uids, 1) if u is None]
        if unknown:
            await self.fetch_flags(unknown[0], len(self.uids))
            return "FETCH", None
        choice = rng.choices(
            ["FETCH", "BODY", "STORE", "DELETE", "EXPUNGE", "UIDEXPUNGE", "APPEND", "COPY",
             "MOVE", "SEARCH", "UIDSEARCH", "NOOP", "IDLE", "SELECT"],
            weights=[14, 8, 12, 5, 3, 2, 6, 3, 2, 6, 6, 6, 2, 1],
        )[0]  # fmt: skip
        if choice == "FETCH":
            a = self._seq()
            b = min(len(self.uids), a + rng.randint(0, 20))
            await self.fetch_flags(a, b)
            return choice, None
        if choice == "BODY":
            n = self._seq()
            r = await self.command(f"FETCH {n} (RFC822.SIZE BODY.PEEK[])", kind="FETCH")
            for text, literals in r.untagged:
                size = _SIZE.search(text)
                if size and literals and len(literals[0]) != int(size.group(1)):
                    raise ModelError(f"body of {n}: {len(literals[0])} octets, size {size[1]!r}")
            return choice, r
        if choice in ("STORE", "DELETE"):
            n = self._seq()
            flag = "\\Deleted" if choice == "DELETE" else rng.choice(_FLAG_CHOICES)
            sign = "+" if choice == "DELETE" or rng.random() < 0.6 else "-"
            r = await self.command(f"STORE {n} {sign}FLAGS ({flag})", kind="STORE")
            # The first FETCH of n is STORE's own; later ones may carry changes
            # other sessions made since.
            own = next((t for t, _ in r.untagged if t.startswith(b"* %d FETCH " % n)), None)
            f = _FLAGS.search(own) if own is not None else None
            if f is not None and (flag.encode() in f.group(1).split()) != (sign == "+"):
                raise ModelError(f"STORE {n} {sign}FLAGS ({flag}) left {f.group(1)!r}")
            return choice, r
        if choice == "EXPUNGE":
            return choice, await self.command("EXPUNGE", kind="EXPUNGE")
        if choice == "UIDEXPUNGE":
            known = self.known()
            uid = rng.choice(known) if known else 1
            return choice, await self.command(f"UID EXPUNGE {uid}", kind="UID")
        if choice == "APPEND":
            return choice, await self._append()
        if choice in ("COPY", "MOVE"):
            n = self._seq()
            target = "INBOX" if choice == "COPY" else "Trash"
            r = await self.command(f"{choice} {n} {target}", kind=choice)
            if choice == "COPY":
                self._fresh_uids(r)
            return choice, r
        if choice in ("SEARCH", "UIDSEARCH"):
            uid = choice == "UIDSEARCH"
            expected = self.known() if uid else list(range(1, len(self.uids) + 1))
            r = await self.command(
                ("UID " if uid else "") + "SEARCH ALL", kind="UID" if uid else "SEARCH"
            )
            for text, _ in r.untagged:
                if text.startswith(b"* SEARCH"):
                    found = [int(x) for x in text[8:].split()]
                    if r.status == b"OK" and found != expected:
                        raise ModelError(f"{choice} ALL gave {len(found)} of {len(expected)}")
            return choice, r
        if choice == "IDLE":
            return choice, await self.command("IDLE", kind="IDLE", idle=0.2)
        if choice == "SELECT":
            await self.select()
            return choice, None
        return choice, await self.command("NOOP", kind="NOOP")

    async def _append(self) -> Response:
        n = self.rng.randint(0, 1 << 30)
        r = await self.command("APPEND INBOX", kind="APPEND", literal=_MESSAGE % (n, n, n))
        self._fresh_uids(r)
        return r

    def _fresh_uids(self, r: Response) -> None:
        m = _CODE_UIDS.search(r.text)
        if m is None:
            return
        for part in m.group(2).split(b","):
            first, _, last = part.partition(b":")
            for uid in range(int(first), int(last or first) + 1):
                if uid in self.shared_uids:
                    raise ModelError(f"{m.group(1).decode()} gave UID {uid} a second time")
                self.shared_uids.add(uid)


async def _client_loop(client: Client, deadline: float, stats: Stats) -> None:
    try:
        while time.monotonic() < deadline:
            started = time.monotonic()
            kind, r = await client.step()
            stats.slowest = max(stats.slowest, (time.monotonic() - started, kind))
            stats.commands += 1
            stats.per_command[kind] = stats.per_command.get(kind, 0) + 1
            if r is not None and r.status != b"OK":
                if r.status == b"NO":
                    stats.no += 1
                else:
                    stats.bad += 1
                stats.note(f"{client.name} {kind}: {r.status.decode()}{r.text.decode()}")
    except ModelError as exc:
        stats.mismatches += 1
        stats.note(f"{client.name} mismatch: {exc}")
    except (Disconnected, OSError, ssl.SSLError, asyncio.IncompleteReadError) as exc:
        stats.disconnects += 1
        stats.note(f"{client.name} disconnected: {exc!r}")
    finally:
        await client.close()


async def stress(
    port: int,
    login: tuple[str, str],
    *,
    clients: int,
    seconds: float,
    seed: int,
    on_start: Callable[[], None] = lambda: None,
) -> tuple[Stats, float]:
    """Run ``clients`` checking clients for ``seconds``; the counts and the time taken.

    The clients log in one after another before the clock starts: logins in
    parallel from one address wait for each other (Mailstead's
    net/auth_penalty.py), which is not what this measures.
    """
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    stats = Stats()
    shared: set[int] = set()
    ready = []
    for i in range(clients):
        client = Client(f"c{i}", shared, random.Random(seed * 1000 + i))
        try:
            await client.connect(port, context, *login)
        except (ModelError, Disconnected, OSError, ssl.SSLError) as exc:
            stats.disconnects += 1
            stats.note(f"{client.name} could not start: {exc!r}")
            await client.close()
            continue
        ready.append(client)
    on_start()
    start, cpu = time.monotonic(), time.process_time()
    await asyncio.gather(*(_client_loop(c, start + seconds, stats) for c in ready))
    stats.client_cpu = time.process_time() - cpu
    return stats, time.monotonic() - start


def _cpu_seconds(pid: int) -> dict[int, tuple[float, float]]:
    """CPU seconds of ``pid`` and each process below it: (whole process, main thread).

    The main thread of a Mailstead worker is its event loop; the rest of a
    process's time is its thread pool (fsyncs wait off the CPU, so neither
    counts the time a thread waits for the disk).
    """
    tick = os.sysconf("SC_CLK_TCK")
    found: dict[int, tuple[float, float]] = {}
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            whole = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            main = Path(f"/proc/{p}/task/{p}/stat").read_text().rsplit(")", 1)[1].split()
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        # Fields 14 and 15 of proc(5) (utime, stime), counted after the ")".
        found[p] = (
            (int(whole[11]) + int(whole[12])) / tick,
            (int(main[11]) + int(main[12])) / tick,
        )
        todo += [int(c) for c in children]
    return found


def _cpu_report(before: dict[int, tuple[float, float]], pid: int, elapsed: float) -> str:
    """The server's CPU over the run, in all and per busy process, as shares of one CPU."""
    after = _cpu_seconds(pid)
    total, parts = 0.0, []
    for p, (whole, main) in sorted(after.items()):
        was_whole, was_main = before.get(p, (0.0, 0.0))
        used, loop = whole - was_whole, main - was_main
        total += used
        if used >= 0.05 * elapsed:
            share, loop_share = 100 * used / elapsed, 100 * loop / elapsed
            parts.append(f"pid {p} {share:.0f}% (main thread {loop_share:.0f}%)")
    return f"  server CPU {100 * total / elapsed:.0f}% of one core: " + (
        ", ".join(parts) or "no process above 5%"
    )


def _report(name: str, stats: Stats, elapsed: float) -> str:
    rate = stats.commands / elapsed if elapsed else 0.0
    lines = [
        f"{name}: {stats.commands} commands in {elapsed:.1f} s = {rate:.0f}/s;"
        f" NO {stats.no}, BAD {stats.bad}, disconnects {stats.disconnects},"
        f" model mismatches {stats.mismatches}; slowest {stats.slowest[1]}"
        f" {1000 * stats.slowest[0]:.0f} ms; clients' CPU"
        f" {100 * stats.client_cpu / elapsed if elapsed else 0:.0f}% of one core",
    ]
    lines += [f"  {example}" for example in stats.examples]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=10)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--rounds", type=int, default=1, help="alternating rounds per server")
    p.add_argument("--messages", type=int, default=200, help="messages in INBOX at the start")
    p.add_argument("--dovecot", action="store_true", help="run the same mix against Dovecot")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from mail_access import PASSWORD, USER, Server, _certificate, dovecot, mailstead
    from mailbox_gen import generate

    servers: list[tuple[str, Callable[..., AbstractContextManager[Server]]]] = [
        ("Mailstead", mailstead)
    ]
    if args.dovecot:
        servers.append(("Dovecot", dovecot))
    rates: dict[str, list[float]] = {name: [] for name, _ in servers}
    failures = 0
    with tempfile.TemporaryDirectory(prefix="mailstead-stress-") as tmp:
        work = Path(tmp)
        os.chmod(work, 0o755)
        cert, key = _certificate(work)
        template = work / "template"
        generate(template, args.messages)
        for round_no in range(args.rounds):
            order = servers if round_no % 2 == 0 else list(reversed(servers))
            for name, make in order:
                run = work / f"{name}-{round_no}"
                cpu: dict[int, tuple[float, float]] = {}
                with make(run, template, cert, key) as server:
                    _make_trash(server.maildir)
                    stats, elapsed = asyncio.run(
                        stress(
                            server.imaps,
                            (USER, PASSWORD),
                            clients=args.clients,
                            seconds=args.seconds,
                            seed=args.seed + round_no,
                            on_start=lambda cpu=cpu, pid=server.pid: cpu.update(_cpu_seconds(pid)),
                        )
                    )
                    usage = _cpu_report(cpu, server.pid, elapsed)
                print(_report(f"round {round_no + 1} {name}", stats, elapsed), flush=True)
                print(f"{usage}; load average {os.getloadavg()[0]:.2f}", flush=True)
                log = run / "mailstead" / "serve.log"
                if log.exists() and "Traceback" in (text := log.read_text("utf-8", "replace")):
                    print(f"  errors in Mailstead's log:\n{text[-3000:]}")
                    failures += 1
                shutil.rmtree(run, ignore_errors=True)
                rates[name].append(stats.commands / elapsed)
                if name == "Mailstead":
                    failures += stats.failures
    for name, values in rates.items():
        print(
            f"{name}: median {statistics.median(values):.0f} commands/s"
            f" (min {min(values):.0f}, max {max(values):.0f}, {len(values)} rounds)"
        )
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 1 if failures else 0


def _make_trash(maildir: Path) -> None:
    """MOVE's target: a Trash folder beside INBOX, owned like INBOX (Dovecot's user)."""
    owner = maildir.stat()
    for sub in ("", "/cur", "/new", "/tmp"):
        path = Path(f"{maildir}/.Trash{sub}")
        path.mkdir(exist_ok=True)
        os.chown(path, owner.st_uid, owner.st_gid)


if __name__ == "__main__":
    sys.exit(main())
