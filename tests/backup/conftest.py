"""A data directory with one of everything a backup copies, made with the real stores."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from mailstead.directory import Directory
from mailstead.mta.envelope import QueuedRecipient
from mailstead.mta.queue import Queue
from mailstead.store.account import Account
from mailstead.store.maildir import Maildir
from mailstead.store.mbox import Mbox
from mailstead.tlscert import ensure_self_signed

MAILDIR = "mail/example.test/alice/Maildir"
MBOX = "mail/example.test/bob/mbox"


def message(n: int) -> bytes:
    return b"From: a@example.test\nSubject: message %d\n\nbody %d\n" % (n, n)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    data = tmp_path / "var"
    data.mkdir(mode=0o700)
    with Directory(data / "directory.sqlite3", ["example.test"]) as directory:
        directory.add_user("alice@example.test", "alice-pw")
    with Queue(data) as queue:
        queue.enqueue(
            "alice@example.test",
            [QueuedRecipient("carol@remote.test")],
            [b"Subject: out\r\n\r\nqueued\r\n"],
            received_at=time.time(),
        )
    (data / "queue" / "tmp" / "in-flight").write_bytes(b"half a message")
    ensure_self_signed(data / "tls" / "cert.pem", data / "tls" / "key.pem", "mx.example.test")
    maildir = Maildir(data / MAILDIR)
    maildir.create()
    for n in range(1, 4):
        maildir.deliver([message(n)])
    inbox = Account(data / MAILDIR).mailbox("INBOX")
    inbox.refresh()
    inbox.take_new()
    inbox.store([2], ["\\Seen", "\\Flagged"], "+")
    (data / MAILDIR / "tmp" / "being-delivered").write_bytes(b"not yet")
    (data / MBOX).parent.mkdir(mode=0o700)
    Mbox(data / MBOX).deliver([message(9)], "a@example.test", time.time())
    os.symlink("/etc/passwd", data / "tls" / "link")
    os.mkfifo(data / "fifo")
    return data
