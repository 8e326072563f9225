"""Inbound SMTP benchmark: Mailstead and Postfix side by side, same load, same run.

The load comes from Postfix's own ``smtp-source`` for both servers: N
concurrent sessions, M messages of S bytes, all to alice@example.test. The
clock starts just before smtp-source starts and stops when the last message
is a file in the recipient's Maildir ``new/``, so queueing that a server
does after its ``250`` (Postfix: cleanup -> qmgr -> virtual) is counted.

    .venv/bin/python bench/smtp_inbound.py                  # 20,000 x 5 KiB, 20 sessions
    .venv/bin/python bench/smtp_inbound.py --messages 2000 --runs 3
    .venv/bin/python bench/smtp_inbound.py --only mailstead --profile

Postfix needs root (its master starts as root) and the Debian package
(``apt-get install -y postfix``); nothing of the system Postfix is used.
Results are printed as a Markdown table; ``--write-docs`` also puts them
into docs/benchmarks.md between marker comments.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from cpu import MachineCPU, tree_cpu_seconds
from mailstead_env import mailstead_version, running_mailstead
from netutil import free_port
from profile_summary import summarise

from mailstead.testing.postfix import (
    POSTFIX_INSTALL_HINT,
    postfix_missing,
    postfix_version,
    running_postfix,
)

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
DOCS = REPO / "docs" / "benchmarks.md"
RECIPIENT = "alice@example.test"
SENDER = "bench@client.test"
SERVERS = ("postfix", "mailstead")
# The spec: "poll every 50 ms".
POLL_INTERVAL = 0.05
# py-spy samples per second; 100 Hz costs the server little.
PROFILE_RATE = 100


@dataclass(frozen=True)
class Load:
    """What smtp-source sends."""

    messages: int
    sessions: int
    size: int
    reuse: bool  # several messages per connection (smtp-source -d)

    def smtp_source(self, port: int, tool: str = "smtp-source") -> list[str]:
        args = [tool, "-s", str(self.sessions), "-m", str(self.messages), "-l", str(self.size)]
        if self.reuse:
            args.append("-d")
        return [*args, "-f", SENDER, "-t", RECIPIENT, f"127.0.0.1:{port or 'PORT'}"]

    def describe(self) -> str:
        per = (
            "all of a session's messages over one connection"
            if self.reuse
            else "one message per connection"
        )
        return (
            f"{self.messages:,} messages x {self.size:,} bytes, "
            f"{self.sessions} concurrent sessions, {per}"
        )


@dataclass(frozen=True)
class Timing:
    """What one smtp-source run cost, in wall time and CPU."""

    seconds: float
    server_user: float  # user CPU seconds of the server's process tree
    server_system: float  # system (kernel) CPU seconds of the same
    client_cpu: float  # CPU seconds of smtp-source
    busy: float  # share of all CPUs busy (user, system, irq, steal)
    iowait: float  # share of all CPUs idle while I/O was outstanding


@dataclass(frozen=True)
class Measurement:
    """One timed run against one server."""

    server: str
    messages: int
    timing: Timing

    @property
    def seconds(self) -> float:
        return self.timing.seconds

    @property
    def rate(self) -> float:
        return self.messages / self.seconds


def count_new(maildir: Path) -> int:
    """Files in ``maildir/new`` (0 before the first delivery creates it)."""
    try:
        with os.scandir(maildir / "new") as entries:
            return sum(1 for _ in entries)
    except FileNotFoundError:
        return 0


def drive(load: Load, port: int, maildir: Path, timeout: float, server_pid: int) -> Timing:
    """Run smtp-source against ``port`` until ``new/`` holds every message."""
    command = load.smtp_source(port, shutil.which("smtp-source") or "/usr/sbin/smtp-source")
    deadline = time.monotonic() + timeout
    server_before = tree_cpu_seconds(server_pid)
    client_cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    machine = MachineCPU.now()
    start = time.perf_counter()
    source = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # smtp-source exits right after its last QUIT. Until then the Maildir is
    # not listed: reading a directory of up to 20,000 names 20 times a
    # second would take CPU from the server on a small machine; the first
    # count is read at most one poll interval after the exit.
    try:
        _, err = source.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        source.kill()
        source.wait()
        raise RuntimeError(f"smtp-source still running after {timeout:.0f} s") from None
    if source.returncode != 0:
        reason = err.decode(errors="replace").strip()
        raise RuntimeError(f"smtp-source failed ({source.returncode}): {reason}")
    while (count := count_new(maildir)) < load.messages:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {count} of {load.messages} messages arrived in {maildir}")
        time.sleep(POLL_INTERVAL)
    elapsed = time.perf_counter() - start
    busy, iowait = MachineCPU.now().share_since(machine)
    server_after = tree_cpu_seconds(server_pid)
    # smtp-source is the only child reaped in the meantime.
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    client = usage.ru_utime + usage.ru_stime - client_cpu.ru_utime - client_cpu.ru_stime
    if count != load.messages:
        raise RuntimeError(f"{count} messages in {maildir}, expected {load.messages}")
    user = server_after[0] - server_before[0]
    system = server_after[1] - server_before[1]
    return Timing(elapsed, user, system, client, busy, iowait)


@contextlib.contextmanager
def profiling(pid: int, output: Path, gil_only: bool) -> Iterator[None]:
    """Sample ``pid`` with py-spy (raw collapsed stacks) while the block runs.

    ``gil_only`` samples only the thread holding the GIL: where the one
    Python CPU goes, without time spent waiting for the GIL or the disk.
    """
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(py_spy).exists():
        raise FileNotFoundError("py-spy not found; .venv/bin/pip install py-spy")
    # --idle and --threads keep waiting threads and thread ids in the stacks,
    # so the summary can tell the event loop's idle time from fsync waits;
    # --nonblocking does not stop the server for each sample.
    command = [py_spy, "record", "--pid", str(pid), "--rate", str(PROFILE_RATE)]
    # --subprocesses: `serve` forks its workers; the supervisor itself only waits.
    command += ["--format", "raw", "--threads", "--idle", "--nonblocking", "--subprocesses"]
    command += ["--output", str(output), *(["--gil"] if gil_only else [])]
    spy = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(1.0)  # let py-spy attach before the load starts
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
        _, err = spy.communicate(timeout=120)
        if not output.exists():
            raise RuntimeError(f"py-spy wrote no profile: {err.decode(errors='replace')}")


def run_postfix(load: Load, workdir: Path, timeout: float) -> Measurement:
    port = free_port()
    with running_postfix(workdir, port=port, mailboxes=[RECIPIENT]) as postfix:
        timing = drive(load, port, postfix.maildir(RECIPIENT), timeout, postfix.master_pid())
    return Measurement("postfix", load.messages, timing)


def run_mailstead(
    load: Load, workdir: Path, timeout: float, profile: Path | None, gil_only: bool = False
) -> Measurement:
    port = free_port()
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(running_mailstead(workdir, port, RECIPIENT))
        if profile is not None:
            stack.enter_context(profiling(server.process.pid, profile, gil_only))
        timing = drive(load, port, server.maildir, timeout, server.process.pid)
    return Measurement("mailstead", load.messages, timing)


# --------------------------------------------------------------------------- report


def _command_output(*command: str) -> str:
    try:
        out = subprocess.run(command, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip()


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _filesystem(path: Path) -> str:
    """``device (fstype, options)`` of the mount holding ``path``."""
    best = ("", "unknown")
    path_str = str(path.resolve())
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            device, mount, fstype, options = line.split()[:4]
            inside = path_str == mount or path_str.startswith(mount.rstrip("/") + "/")
            if inside and len(mount) > len(best[0]):
                best = (mount, f"{device} ({fstype}, {options})")
    return best[1]


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def environment(workdir: Path, load_before: str) -> list[tuple[str, str]]:
    """Facts about this machine and the software versions, for the report."""
    commit = _command_output("git", "-C", str(REPO), "describe", "--always", "--dirty")
    facts = [
        ("CPU", f"{cpu_model()}, {os.cpu_count()} logical CPUs (nproc)"),
        ("Kernel", f"{platform.system()} {platform.release()}"),
        ("Mail file system", _filesystem(workdir)),
        # Other work on the machine skews the numbers; say how busy it was.
        ("Load average before the run (1/5/15 min)", load_before),
        ("Python", platform.python_version()),
        ("Mailstead", f"{mailstead_version()} (git {commit})"),
    ]
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        facts.append(("Postfix", postfix_version()))
    return facts


def results_table(measurements: list[Measurement]) -> str:
    """Markdown: medians per server, every run's rate, and the Mailstead/Postfix ratio."""
    by_server: dict[str, list[Measurement]] = {}
    for m in measurements:
        by_server.setdefault(m.server, []).append(m)
    lines = [
        "| server | messages | seconds | msgs/s | runs (msgs/s) "
        "| server CPU s / 1k msgs (user + sys) | smtp-source CPU s | all CPUs busy | iowait |",
        "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    medians: dict[str, float] = {}
    for server in SERVERS:
        runs = by_server.get(server)
        if not runs:
            continue

        def median(value: Callable[[Measurement], float], runs: list[Measurement] = runs) -> float:
            return statistics.median(value(m) for m in runs)

        medians[server] = median(lambda m: m.rate)
        every = ", ".join(f"{m.rate:,.0f}" for m in runs)
        user = median(lambda m: 1000 * m.timing.server_user / m.messages)
        system = median(lambda m: 1000 * m.timing.server_system / m.messages)
        lines.append(
            f"| {server} | {runs[0].messages:,} | {median(lambda m: m.seconds):.2f} "
            f"| {medians[server]:,.0f} | {every} | {user + system:.2f} ({user:.2f} + {system:.2f}) "
            f"| {median(lambda m: m.timing.client_cpu):.1f} "
            f"| {median(lambda m: m.timing.busy):.0%} | {median(lambda m: m.timing.iowait):.0%} |"
        )
    lines += ["", 'Medians over the runs, except "runs".']
    if len(medians) == 2:
        ratio = medians["mailstead"] / medians["postfix"]
        lines.append("")
        lines.append(f"**Mailstead / Postfix = {ratio:.2f}x** (median msgs/s; target >= 1.5x)")
    return "\n".join(lines)


def report(load: Load, measurements: list[Measurement], facts: list[tuple[str, str]]) -> str:
    """The load, the machine (when ``facts`` is not empty) and the results table."""
    text = f"Load: {load.describe()}:\n\n    {' '.join(load.smtp_source(0))}\n\n"
    if facts:
        rows = "\n".join(f"| {name} | {value} |" for name, value in facts)
        text += f"| | |\n| --- | --- |\n{rows}\n\n"
    return f"{text}{results_table(measurements)}\n"


def replace_section(text: str, name: str, body: str) -> str:
    """Replace what is between ``<!-- name:start -->`` and ``<!-- name:end -->``."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    block = f"{start}\n{body.rstrip()}\n{end}"
    if pattern.search(text):
        return pattern.sub(lambda _: block, text)
    return f"{text.rstrip()}\n\n{block}\n"


def write_docs(section: str, body: str) -> None:
    text = DOCS.read_text() if DOCS.exists() else "# Benchmarks\n"
    DOCS.write_text(replace_section(text, section, body))
    print(f"updated {DOCS.relative_to(REPO)} ({section})", file=sys.stderr)


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--messages", type=int, default=20_000, help="messages in all (20000)")
    p.add_argument("--sessions", type=int, default=20, help="concurrent SMTP sessions (20)")
    p.add_argument("--size", type=int, default=5120, help="message body bytes (5120)")
    p.add_argument(
        "--reuse",
        action="store_true",
        help="send every message of a session over one connection (smtp-source -d)",
    )
    p.add_argument("--only", choices=SERVERS, help="benchmark one server only")
    p.add_argument("--runs", type=int, default=1, help="rounds; the table shows medians (1)")
    p.add_argument(
        "--profile",
        action="store_true",
        help="sample Mailstead with py-spy; raw stacks go to bench/results/",
    )
    p.add_argument("--gil", action="store_true", help="with --profile: sample only the GIL holder")
    p.add_argument("--workdir", type=Path, help="parent of the scratch directories (/tmp)")
    p.add_argument("--keep", action="store_true", help="keep the Maildirs and logs")
    p.add_argument("--write-docs", action="store_true", help="update docs/benchmarks.md")
    args = p.parse_args(argv)
    if min(args.messages, args.sessions, args.size, args.runs) < 1:
        p.error("--messages, --sessions, --size and --runs must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load = Load(args.messages, args.sessions, args.size, args.reuse)
    servers = [args.only] if args.only else list(SERVERS)
    missing = postfix_missing(("postfix", "postconf", "smtp-source"))
    if missing and ("postfix" in servers or "smtp-source" in missing):
        hint = f"missing {', '.join(missing)}; install with: {POSTFIX_INSTALL_HINT}"
        print(hint, file=sys.stderr)
        return 2
    # Generous: an order of magnitude slower than expected still finishes.
    timeout = 120.0 + args.messages / 20
    scratch = Path(tempfile.mkdtemp(prefix="mailstead-bench-", dir=args.workdir))
    # Postfix's unprivileged processes (postfix, nobody) walk into it.
    scratch.chmod(0o755)
    measurements: list[Measurement] = []
    profile: Path | None = None
    load_before = loadavg()
    try:
        for round_ in range(1, args.runs + 1):
            for server in servers:
                workdir = scratch / f"{server}-{round_}"
                print(f"round {round_}: {server} ...", file=sys.stderr, flush=True)
                if server == "postfix":
                    m = run_postfix(load, workdir, timeout)
                else:
                    if args.profile:
                        RESULTS.mkdir(parents=True, exist_ok=True)
                        stamp = time.strftime("%Y%m%d-%H%M%S")
                        kind = "gil" if args.gil else "all"
                        profile = RESULTS / f"mailstead-profile-{kind}-{stamp}.txt"
                    m = run_mailstead(load, workdir, timeout, profile, args.gil)
                print(f"  {m.seconds:.2f} s, {m.rate:,.0f} msgs/s", file=sys.stderr, flush=True)
                measurements.append(m)
                if not args.keep:
                    shutil.rmtree(workdir, ignore_errors=True)
        facts = environment(scratch, load_before)
    finally:
        if args.keep:
            print(f"kept {scratch}", file=sys.stderr)
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    # A profile's section sits below the results, which already name the machine.
    text = report(load, measurements, [] if args.profile else facts)
    if args.profile:
        text += "\nMailstead ran under py-spy, which may slow it down a little.\n"
    print(text)
    summary = summarise(profile, REPO) if profile else None
    if summary is not None:
        print(f"Profile: {profile}\n\n{summary}")
    if args.write_docs:
        # One section per kind of run, so they do not overwrite each other.
        if args.profile:
            section = "profile-gil" if args.gil else "profile"
        else:
            section = "results-reuse" if args.reuse else "results"
        write_docs(section, f"{text}\n{summary or ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
