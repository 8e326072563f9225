"""SORT and THREAD benchmark: Mailstead against Dovecot on the same Maildir, one run.

Both servers serve a copy of one generated Maildir (``mailbox_gen``, with
three messages in four turned into replies: ``Re:`` subjects, In-Reply-To
and References to an earlier message), started as ``mail_access`` starts
them (Dovecot's Debian package with a private config; ``mailstead serve``
in its default configuration). Per mailbox size, cold (the first session:
no sort keys kept yet) and warm (the median of more sessions, each logging
in afresh), the time of:

``SORT (DATE) UTF-8 ALL``, ``SORT (SUBJECT) UTF-8 ALL`` and
``THREAD REFERENCES UTF-8 ALL``

with the minimal client of ``mail_access`` (a command, then read to the
tagged reply). It also says whether the two servers' answers agree.

Usage: ``.venv/bin/python bench/sort_thread.py [--sizes 10000,100000]
[--warm-rounds 5] [--mailstead-first]``.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mail_access import PASSWORD, USER, RawIMAP, _certificate, dovecot, mailstead
from mailbox_gen import generate

COMMANDS = (
    ("SORT (DATE) UTF-8 ALL", "sort date"),
    ("SORT (SUBJECT) UTF-8 ALL", "sort subject"),
    ("THREAD REFERENCES UTF-8 ALL", "thread references"),
)
_MESSAGE_ID = re.compile(rb"^Message-ID: (<[^>]+>)$", re.MULTILINE)
_SUBJECT = re.compile(rb"^Subject: ([^\n]*)$", re.MULTILINE)


def make_replies(maildir: Path, seed: int = 5) -> None:
    """Turn three messages in four into replies to one of the 50 before them.

    The file names keep ``mailbox_gen``'s form, with the new sizes (both
    servers trust ``S=`` and ``W=``).
    """
    rng = random.Random(seed)
    files = sorted((maildir / "cur").iterdir(), key=lambda p: int(p.name.split(".")[0]))
    seen: list[tuple[bytes, bytes, bytes]] = []  # (message-id, references, subject)
    for path in files:
        data = path.read_bytes()
        mid = _MESSAGE_ID.search(data)
        subject = _SUBJECT.search(data)
        if mid is None or subject is None:
            continue
        refs = b""
        if seen and rng.random() < 0.75:
            parent_id, parent_refs, parent_subject = rng.choice(seen[-50:])
            refs = (parent_refs + b" " + parent_id).strip()
            head = b"In-Reply-To: " + parent_id + b"\nReferences: " + refs + b"\n"
            data = data.replace(subject.group(0), b"Subject: Re: " + parent_subject, 1)
            data = head + data
            subject_text = parent_subject
        else:
            subject_text = subject.group(1)
        seen.append((mid.group(1), refs, subject_text))
        stem, _, flags = path.name.partition(":2,")
        base = stem.split(",S=")[0]
        vsize = len(data) + data.count(b"\n")
        new = path.with_name(f"{base},S={len(data)},W={vsize}:2,{flags}")
        new.write_bytes(data)
        stat = path.stat()
        os.utime(new, (stat.st_atime, stat.st_mtime))
        if new != path:
            path.unlink()


def session(port: int) -> tuple[dict[str, float], dict[str, bytes]]:
    """One login: the time of each command and its answer (the untagged lines)."""
    client = RawIMAP(port)
    times: dict[str, float] = {}
    answers: dict[str, bytes] = {}
    try:
        client.command(f'LOGIN "{USER}" "{PASSWORD}"')
        client.command("SELECT INBOX")
        for command, name in COMMANDS:
            response, elapsed = client.command(command)
            times[name] = elapsed
            answers[name] = b"\r\n".join(
                line for line in response.split(b"\r\n") if line.startswith(b"* ")
            )
    finally:
        client.close()
    return times, answers


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="10000,100000", help="mailbox sizes")
    p.add_argument("--warm-rounds", type=int, default=5)
    p.add_argument("--mailstead-first", action="store_true")
    args = p.parse_args(argv)
    servers = (mailstead, dovecot) if args.mailstead_first else (dovecot, mailstead)
    rows: list[str] = []
    with tempfile.TemporaryDirectory(prefix="mailstead-bench-") as tmp:
        work = Path(tmp)
        os.chmod(work, 0o755)  # Dovecot's processes run as other users
        cert, key = _certificate(work)
        for count in [int(x) for x in args.sizes.split(",") if x]:
            template = work / f"template-{count}"
            generate(template, count)
            make_replies(template)
            answers: dict[str, dict[str, bytes]] = {}
            for make in servers:
                with make(work / f"{make.__name__}-{count}", template, cert, key) as server:
                    cold, answers[server.name] = session(server.imaps)
                    warm = [session(server.imaps)[0] for _ in range(args.warm_rounds)]
                for _, name in COMMANDS:
                    median = statistics.median(w[name] for w in warm) if warm else float("nan")
                    rows.append(
                        f"{count:>7} {server.name:<9} {name:<17}"
                        f" cold {cold[name] * 1000:9.1f} ms  warm {median * 1000:9.1f} ms"
                    )
                    print(rows[-1], file=sys.stderr)
            if len(answers) == 2:
                ours, theirs = answers["Mailstead"], answers["Dovecot"]
                for _, name in COMMANDS:
                    same = "same answer" if ours[name] == theirs[name] else "answers differ"
                    rows.append(f"{count:>7} {name:<17} {same}")
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(f"sort/thread benchmark, {started}\n" + "\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
