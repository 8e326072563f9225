"""Repeatable Maildir mailboxes for the IMAP and POP3 benchmarks.

Every message is about 3 KB of plain text with the usual headers. A rare
marker word stands in the subject of every 2,000th message and in the body
of every 1,000th (offset by 500), so a search for it finds a handful. The
same seed gives the same files, names and dates, byte for byte.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

MARKER = "zanzibarquux"
_WORDS = [
    "mail",
    "server",
    "queue",
    "message",
    "header",
    "body",
    "client",
    "protocol",
    "folder",
    "flag",
    "search",
    "fetch",
    "index",
    "delivery",
    "sender",
    "recipient",
    "domain",
    "address",
    "subject",
    "reply",
    "forward",
    "archive",
    "draft",
    "junk",
    "trash",
    "sent",
    "invoice",
    "meeting",
    "report",
    "weekly",
    "project",
    "update",
    "budget",
    "review",
    "release",
    "notes",
    "schedule",
    "agenda",
    "summary",
    "question",
    "answer",
    "thanks",
]
_BASE_TIME = 1_700_000_000


def message(index: int, rng: random.Random, size: int = 3000) -> bytes:
    """Message number ``index`` (LF line ends, as Maildir holds them)."""
    subject_words = rng.sample(_WORDS, 5)
    if index % 2000 == 0:
        subject_words.insert(2, MARKER)
    when = _BASE_TIME + index * 60
    head = (
        f"From: Sender {index % 97} <sender{index % 97}@example.net>\n"
        f"To: Alice <alice@bench.test>\n"
        f"Subject: {' '.join(subject_words)}\n"
        f"Date: {_rfc2822(when)}\n"
        f"Message-ID: <{index}.{rng.getrandbits(32):08x}@example.net>\n"
        "MIME-Version: 1.0\n"
        "Content-Type: text/plain; charset=us-ascii\n"
        "\n"
    )
    lines = []
    length = len(head)
    marker_line = index % 1000 == 500
    while length < size:
        words = rng.choices(_WORDS, k=11)
        if marker_line and len(lines) == 3:
            words[5] = MARKER
        line = " ".join(words)
        lines.append(line)
        length += len(line) + 1
    return (head + "\n".join(lines) + "\n").encode()


def _rfc2822(ts: int) -> str:
    import email.utils

    return email.utils.formatdate(ts, usegmt=True)


def generate(maildir: Path, count: int, seed: int = 42) -> None:
    """Fill ``maildir`` (made if absent) with ``count`` messages in ``cur/``.

    Every tenth message is unread; the rest carry ``\\Seen``. Files are named
    like Dovecot's deliveries, with ``,S=`` and ``,W=`` sizes, and dated
    (mtime = internal date) one minute apart.
    """
    rng = random.Random(seed)
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    for i in range(1, count + 1):
        data = message(i, rng)
        vsize = len(data) + data.count(b"\n")
        when = _BASE_TIME + i * 60
        flags = "" if i % 10 == 0 else "S"
        name = f"{when}.M{i}P1Q1.bench,S={len(data)},W={vsize}:2,{flags}"
        path = maildir / "cur" / name
        path.write_bytes(data)
        os.utime(path, (when, when))
