"""CPU per 1,000 webhook events: the dispatcher in this process, the receiver in another.

The events/s of ``webhooks.py`` move with whatever else the machine runs;
CPU seconds per event much less. This fills an outbox (a fresh SQLite data
directory) with N ``message.received`` events as the mail path stores them
(raw message beside the payload, summarised when sent), runs the
:class:`~mailstead.webhooks.dispatcher.Dispatcher` here with the default
limits against the receiver process of ``webhooks.py`` (which verifies
every signature), and reports this process's CPU (all threads, from
``getrusage``) from the first request to the N-th answer. Logging is set up
as ``serve`` sets it (logfmt, to a file and a stream).

    .venv/bin/python bench/webhooks_cpu.py --events 5000 --rounds 3
    .venv/bin/python bench/webhooks_cpu.py --no-summary      # events without a stored message
    .venv/bin/python bench/webhooks_cpu.py --profile         # py-spy on this process, GIL holder

Compare two trees of the code by running it once with ``PYTHONPATH`` set to
the other tree's ``src``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import resource
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from profile_summary import summarise

from mailstead import logs
from mailstead.events import new_event_id
from mailstead.limits import WebhookLimits
from mailstead.mta import mail_events
from mailstead.webhooks.dispatcher import Dispatcher
from mailstead.webhooks.endpoints import ConfiguredEndpoint
from mailstead.webhooks.http import WebhookClient
from mailstead.webhooks.outbox import Outbox
from mailstead.webhooks.ssrf import AddressGuard
from webhooks import RECIPIENT, RESULTS, SECRET, SENDER, Receiver, sample_message

REPO = Path(__file__).resolve().parent.parent


@dataclasses.dataclass(frozen=True)
class Run:
    events: int
    seconds: float
    cpu: float  # user + system seconds of this process over ``seconds``
    user: float

    @property
    def per_thousand(self) -> float:
        return 1000 * self.cpu / self.events


def _cpu() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime, usage.ru_utime


def fill(outbox: Outbox, events: int, body_bytes: int, summary: bool) -> None:
    content = bytes(sample_message(0, body_bytes, "throughput"))
    [template] = mail_events.received(
        [(RECIPIENT, RECIPIENT)],
        queue_id="0" * 24,
        mail_from=SENDER,
        content=content,
        client={"ip": "127.0.0.1", "helo": "client.test", "tls": False, "user": None},
        max_body_bytes=WebhookLimits().max_body_bytes,
        received_at=time.time(),
    )
    if not summary:
        template = dataclasses.replace(template, raw_message=None)
    for start in range(0, events, 1000):
        outbox.emit(
            [
                dataclasses.replace(
                    template, id=new_event_id(), data=dict(template.data, queue_id=f"{i:024X}")
                )
                for i in range(start, min(events, start + 1000))
            ]
        )


def run_once(
    workdir: Path, events: int, body_bytes: int, summary: bool, profile: Path | None
) -> Run:
    workdir.mkdir(parents=True)
    logs.setup(
        "logfmt", file=workdir / "log" / "mailstead.log", stream=(workdir / "stderr.log").open("w")
    )
    receiver = Receiver("ok")
    try:
        outbox = Outbox(workdir / "queue.sqlite3")
        outbox.endpoints.sync_config(
            [ConfiguredEndpoint(receiver.url, ("*",), SECRET, None, None, False, True)]
        )
        fill(outbox, events, body_bytes, summary)
        limits = WebhookLimits()
        client = WebhookClient(AddressGuard(["127.0.0.0/8"]), max_connections=limits.total)
        executor = ThreadPoolExecutor(2, thread_name_prefix="webhooks")
        dispatcher = Dispatcher(outbox, client, executor=executor, limits=limits)
        outbox.on_emitted = dispatcher.wake
        run = asyncio.run(_dispatch(dispatcher, receiver, events, profile))
        executor.shutdown()
        outbox.close()
        final = receiver.stats()
    finally:
        receiver.close()
    with contextlib.closing(sqlite3.connect(workdir / "queue.sqlite3")) as db:
        rows = db.execute("SELECT state, COUNT(*) FROM webhook_deliveries GROUP BY state")
        states = {str(state): int(n) for state, n in rows}
    if (
        final["bad_signatures"]
        or final["distinct_ids"] != events
        or states != {"succeeded": events}
    ):
        raise RuntimeError(f"receiver saw {final}, outbox says {states}")
    return run


async def _dispatch(
    dispatcher: Dispatcher, receiver: Receiver, events: int, profile: Path | None
) -> Run:
    task = asyncio.create_task(dispatcher.run())
    while receiver.stats()["requests"] == 0:
        await asyncio.sleep(0.005)
    spy = None
    if profile is not None:
        py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        command = [py_spy, "record", "--pid", str(os.getpid()), "--rate", "250"]
        command += [
            "--format",
            "raw",
            "--threads",
            "--gil",
            "--nonblocking",
            "--output",
            str(profile),
        ]
        spy = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    (cpu_before, user_before), started = _cpu(), time.monotonic()
    # The receiver is asked from a thread: its answer never waits for this loop.
    while (await asyncio.to_thread(receiver.stats))["answered"] < events:
        await asyncio.sleep(0.05)
    (cpu_after, user_after), ended = _cpu(), time.monotonic()
    if spy is not None:
        spy.send_signal(signal.SIGINT)
        spy.wait(60)
    await asyncio.sleep(0.3)  # the last outcomes are recorded
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await dispatcher.drain()
    await dispatcher.client.aclose()
    return Run(events, ended - started, cpu_after - cpu_before, user_after - user_before)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=5000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--size", type=int, default=5120, help="message body bytes (5120)")
    p.add_argument("--no-summary", action="store_true", help="events carry no stored message")
    p.add_argument("--profile", action="store_true", help="one round under py-spy (GIL holder)")
    args = p.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="mailstead-webhooks-cpu-"))
    profile = None
    if args.profile:
        RESULTS.mkdir(parents=True, exist_ok=True)
        profile = RESULTS / f"webhooks-cpu-profile-{time.strftime('%Y%m%d-%H%M%S')}.txt"
    runs = []
    try:
        for n in range(1 if args.profile else args.rounds):
            run = run_once(scratch / f"r{n}", args.events, args.size, not args.no_summary, profile)
            user = 1000 * run.user / run.events
            rate = run.events / run.seconds
            print(
                f"round {n + 1}: {run.per_thousand:.3f} CPU s per 1,000 events"
                f" (user {user:.3f}), {rate:,.0f} events/s",
                flush=True,
            )
            runs.append(run)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    median = statistics.median(r.per_thousand for r in runs)
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    print(f"median: {median:.3f} CPU s per 1,000 events (load average after: {load})")
    if profile is not None:
        print(summarise(profile, REPO) or "")
    return 0


if __name__ == "__main__":
    sys.exit(main())
