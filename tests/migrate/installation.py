"""A single-node installation with some history, and what IMAP clients see of it.

Built through a real server (SMTP in, IMAP to file, flag, expunge, append
and subscribe) and the command line (a webhook endpoint, a queued
message), so the data directory is what an operator's would be.
"""

from __future__ import annotations

import imaplib
import re
import smtplib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mailstead.directory import Directory
from tests.cli.runner import run
from tests.e2e.harness import USERS, ServerHandle, client_tls_context, running_server

ALICE = "alice@example.test"
BOB = "bob@example.test"

#: mailbox -> (UIDVALIDITY, {UID: flags without \Recent})
MailboxView = dict[str, tuple[int, dict[int, tuple[bytes, ...]]]]


@dataclass(frozen=True)
class Installation:
    root: Path  # holds mailstead.toml; data_dir is root/var

    @property
    def config(self) -> Path:
        return self.root / "mailstead.toml"


def _ok(answer: tuple[str, Sequence[object]]) -> Sequence[object]:
    typ, data = answer
    assert typ == "OK", data
    return data


def imap_login(server: ServerHandle, address: str) -> imaplib.IMAP4_SSL:
    client = imaplib.IMAP4_SSL(
        "127.0.0.1", server.ports["imaps"], ssl_context=client_tls_context(), timeout=10
    )
    client.login(address, USERS[address])
    return client


def _send(server: ServerHandle, to: str, subject: str) -> None:
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as smtp:
        smtp.sendmail(
            "carol@remote.test",
            [to],
            f"From: carol@remote.test\r\nTo: {to}\r\nSubject: {subject}\r\n\r\nhi {subject}\r\n",
        )


def build(root: Path, storage: str = "maildir") -> Installation:
    """Mail for two users in several mailboxes, with flags, keywords and a gap in the UIDs."""
    root.mkdir(parents=True, exist_ok=True)
    with running_server(root, storage=storage) as server:
        for n in range(4):
            _send(server, ALICE, f"alice {n}")
        for n in range(2):
            _send(server, BOB, f"bob {n}")
        alice = imap_login(server, ALICE)
        _ok(alice.create("Work"))
        _ok(alice.create("Work/Projects" if storage == "maildir" else "Projects"))
        _ok(alice.subscribe("Work"))
        for n in range(3):
            _ok(
                alice.append(
                    "Work",
                    "(\\Seen $Label1)" if n else "(\\Answered)",
                    None,
                    f"From: alice@example.test\r\nSubject: work {n}\r\n\r\nwork\r\n".encode(),
                )
            )
        _ok(alice.select("INBOX"))
        _ok(alice.store("1", "+FLAGS", "(\\Flagged $Important)"))
        _ok(alice.store("2", "+FLAGS", "(\\Deleted)"))
        _ok(alice.expunge())
        _ok(alice.store("2", "+FLAGS", "(\\Seen)"))
        alice.logout()
        bob = imap_login(server, BOB)
        _ok(bob.select("INBOX"))
        _ok(bob.store("2", "+FLAGS", "(\\Seen NonJunk)"))
        bob.logout()
    install = Installation(root)
    added = run(install.config, "webhook", "add", "https://127.0.0.1:9/hooks")
    assert added.exit_code == 0, added.output
    sent = run(
        install.config, "send", "--from", ALICE, "--to", "dave@remote.test",
        "--subject", "queued", "--text", "waits in the queue",
    )  # fmt: skip
    assert sent.exit_code == 0, sent.output
    return install


def imap_view(server: ServerHandle, address: str) -> MailboxView:
    """Every mailbox's UIDVALIDITY and each message's UID and flags, read over IMAP
    (EXAMINE: looking changes nothing)."""
    client = imap_login(server, address)
    view: MailboxView = {}
    for line in _ok(client.list()):
        assert isinstance(line, bytes)
        name = line.rsplit(b" ", 1)[1].strip(b'"').decode()
        _ok(client.select(f'"{name}"', readonly=True))
        _, (validity,) = client.response("UIDVALIDITY")
        assert isinstance(validity, bytes)
        flags: dict[int, tuple[bytes, ...]] = {}
        for item in _ok(client.uid("FETCH", "1:*", "(FLAGS)")):
            if not isinstance(item, bytes):
                continue
            uid = re.search(rb"UID (\d+)", item)
            found = re.search(rb"FLAGS \(([^)]*)\)", item)
            if uid and found:
                flags[int(uid.group(1))] = tuple(
                    sorted(f for f in found.group(1).split() if f != b"\\Recent")
                )
        view[name] = (int(validity), flags)
    client.logout()
    return view


def logins_work(directory: Directory) -> bool:
    """Every user's password (its hash copied as it was) logs in, and the aliases resolve."""
    with directory:
        users_ok = all(directory.authenticate(a, pw) == a for a, pw in USERS.items())
        return users_ok and [a for a, _ in directory.aliases()] == [
            "postmaster@example.test",
            "team@example.test",
        ]


def views(root: Path, *, dsn: str = "", storage: str = "maildir") -> dict[str, MailboxView]:
    """What each user sees over IMAP on a server over ``root`` (on PostgreSQL with ``dsn``)."""
    with running_server(root, storage=storage, dsn=dsn) as server:
        return {address: imap_view(server, address) for address in USERS}
