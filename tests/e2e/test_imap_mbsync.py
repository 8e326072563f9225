"""mbsync (isync) keeps a local Maildir and the server's mailboxes in step.

mbsync is the two-way synchroniser people run from cron: it remembers UIDs
per mailbox (``SyncState``) and propagates new messages, flag changes and
deletions in both directions, creating folders on either side. It relies on
UIDs and UIDVALIDITY staying put, on UIDPLUS (APPENDUID) to learn the UID of
what it uploads, and on ``UID FETCH`` / ``UID STORE`` being exact, so it is a
good judge of the IMAP server's bookkeeping.

The tests change one side by hand (rename a local file to ``:2,FS``, drop a
file into a local folder, STORE/EXPUNGE through imaplib, deliver by SMTP),
run ``mbsync``, and look at the files on the other side. ``mbsync -Dn``
prints the IMAP transcript, shown when an assertion fails.
"""

from __future__ import annotations

import imaplib
import re
import shutil
import smtplib
import subprocess
from pathlib import Path

import pytest

from tests.e2e.harness import ServerHandle, client_tls_context
from tests.tools import require

ALICE = "alice@example.test"
PASSWORD = "alice-pw"
SPECIAL_USE = {"Archive", "Drafts", "Junk", "Sent", "Trash"}

# Seconds one mbsync run may take (it needs well under one).
MBSYNC_TIMEOUT = 20


# --------------------------------------------------------------------------- helpers


def _message(subject: str, body: str = "hello") -> str:
    return (
        f"From: carol@remote.test\r\n"
        f"To: {ALICE}\r\n"
        f"Subject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '.')}@remote.test>\r\n"
        f"\r\n{body}\r\n"
    )


def _deliver(server: ServerHandle, subject: str) -> None:
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as smtp:
        smtp.sendmail("carol@remote.test", [ALICE], _message(subject))


def _messages(folder: Path) -> dict[str, str]:
    """Subject -> Maildir flags (what follows ``:2,``) of each message in ``folder``.

    Fails on a duplicate subject: a sync must never copy a message twice.
    """
    found: dict[str, str] = {}
    for sub in ("new", "cur"):
        directory = folder / sub
        if not directory.is_dir():
            continue
        for path in sorted(directory.iterdir()):
            match = re.search(rb"^Subject: (.*?)\r?$", path.read_bytes(), re.MULTILINE)
            assert match is not None, path
            subject = match.group(1).decode()
            assert subject not in found, f"{subject!r} twice in {folder}"
            found[subject] = path.name.partition(":2,")[2]
    return found


def _file(folder: Path, subject: str) -> Path:
    """The one file in ``folder`` whose Subject is ``subject``."""
    pattern = re.compile(rb"^Subject: " + re.escape(subject.encode()) + rb"\r?$", re.MULTILINE)
    for path in [*(folder / "new").iterdir(), *(folder / "cur").iterdir()]:
        if pattern.search(path.read_bytes()):
            return path
    raise AssertionError(f"no message {subject!r} in {folder}")


def _snapshot(root: Path) -> dict[str, bytes]:
    """Every message file under ``root`` (relative name -> content), state files left out."""
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.parent.name in ("new", "cur")
    }


def _imap(server: ServerHandle) -> imaplib.IMAP4:
    """A second client: imaplib on the STARTTLS port, logged in as alice."""
    client = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=10)
    client.starttls(ssl_context=client_tls_context())
    client.login(ALICE, PASSWORD)
    return client


def _imap_flags(server: ServerHandle, mailbox: str) -> dict[str, set[str]]:
    """Subject -> flags of every message in ``mailbox``, as imaplib sees them."""
    client = _imap(server)
    try:
        typ, exists = client.select(f'"{mailbox}"', readonly=True)
        assert typ == "OK", exists
        if exists[0] == b"0":
            return {}
        typ, data = client.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert typ == "OK", data
        result: dict[str, set[str]] = {}
        for item in data:
            if not isinstance(item, tuple):
                continue
            head, header = item
            flags = re.search(rb"FLAGS \(([^)]*)\)", head)
            subject = re.search(rb"Subject: (.*?)\r?\n", header)
            assert flags is not None and subject is not None, item
            name = subject.group(1).decode()
            assert name not in result, f"{name!r} twice in {mailbox}"
            result[name] = set(flags.group(1).decode().split())
        return result
    finally:
        client.logout()


class Mbsync:
    """An mbsyncrc for alice: the server's IMAPS port <-> a local Maildir tree."""

    def __init__(
        self, server: ServerHandle, home: Path, *, tls: str = "IMAPS", auth: str = "PLAIN"
    ) -> None:
        self.binary = require("mbsync")
        home.mkdir(parents=True, exist_ok=True)
        self.local = home / "mail"
        self.local.mkdir()
        self.inbox = self.local / "INBOX"
        certs = home / "server-cert.pem"
        shutil.copyfile(server.config.tls.cert, certs)
        # isync < 1.5 calls it SSLType; 1.5 renamed it TLSType (keeping the old name).
        version = subprocess.run(
            [self.binary, "--version"], capture_output=True, text=True, timeout=10
        ).stdout
        match = re.search(r"(\d+)\.(\d+)", version)
        modern = match is not None and (int(match[1]), int(match[2])) >= (1, 5)
        tls_type = "TLSType" if modern else "SSLType"
        self.rc = home / "mbsyncrc"
        self.rc.write_text(
            "IMAPAccount alice\n"
            "Host 127.0.0.1\n"
            f"Port {server.ports['imaps' if tls == 'IMAPS' else 'imap']}\n"
            f"User {ALICE}\n"
            f"Pass {PASSWORD}\n"
            f"{tls_type} {tls}\n"
            f"CertificateFile {certs}\n"
            # PLAIN: SASL AUTHENTICATE PLAIN; LOGIN: the IMAP LOGIN command.
            f"AuthMechs {auth}\n"
            "\n"
            "IMAPStore remote\n"
            "Account alice\n"
            "\n"
            "MaildirStore local\n"
            f"Path {self.local}/\n"
            f"Inbox {self.inbox}\n"
            "SubFolders Verbatim\n"
            "\n"
            "Channel alice\n"
            "Far :remote:\n"
            "Near :local:\n"
            "Patterns *\n"
            "Create Both\n"
            "Expunge Both\n"
            "SyncState *\n"
        )
        self.output = ""

    def sync(self) -> str:
        try:
            result = subprocess.run(
                [self.binary, "-c", str(self.rc), "-V", "-Dn", "alice"],
                capture_output=True,
                text=True,
                timeout=MBSYNC_TIMEOUT,
            )
        except subprocess.TimeoutExpired as exc:
            pytest.fail(f"mbsync did not finish within {exc.timeout}s:\n{exc.stdout!r}")
        self.output = result.stdout + result.stderr
        assert result.returncode == 0, f"mbsync exited {result.returncode}:\n{self.output}"
        return self.output


def _synced(server: ServerHandle, tmp_path: Path, **options: str) -> Mbsync:
    """Three messages in alice's INBOX, pulled once into a fresh local Maildir."""
    for subject in ("first", "second", "third"):
        _deliver(server, subject)
    mbsync = Mbsync(server, tmp_path / "mbsync", **options)
    mbsync.sync()
    return mbsync


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize(
    ("tls", "auth"),
    [("IMAPS", "PLAIN"), ("STARTTLS", "LOGIN")],
    ids=["imaps-authenticate-plain", "starttls-login"],
)
def test_mbsync_initial_pull(server: ServerHandle, tmp_path: Path, tls: str, auth: str) -> None:
    mbsync = _synced(server, tmp_path, tls=tls, auth=auth)

    assert _messages(mbsync.inbox) == {"first": "", "second": "", "third": ""}, mbsync.output
    folders = {p.name for p in mbsync.local.iterdir() if p.is_dir()}
    assert folders == {"INBOX", *SPECIAL_USE}, mbsync.output
    if tls == "STARTTLS":
        # RFC 9051 §6.2.3: no LOGIN in the clear; the capabilities after TLS allow it.
        before, _, after = mbsync.output.partition(">>> 1 STARTTLS")
        assert "LOGINDISABLED" in before and "LOGINDISABLED" not in after, mbsync.output
    command = r">>> \d+ LOGIN " if auth == "LOGIN" else r">>> \d+ AUTHENTICATE PLAIN"
    assert re.search(command, mbsync.output), mbsync.output
    for name in SPECIAL_USE:
        assert _messages(mbsync.local / name) == {}
    # Pulling reads nothing: the server's messages are still unseen.
    assert _imap_flags(server, "INBOX") == {"first": set(), "second": set(), "third": set()}


def test_mbsync_pushes_local_changes(server: ServerHandle, tmp_path: Path) -> None:
    mbsync = _synced(server, tmp_path)
    maildir = server.maildir(ALICE)

    # A local flag change: "second" read and flagged (Maildir: move to cur/, info :2,FS).
    second = _file(mbsync.inbox, "second")
    second.rename(mbsync.inbox / "cur" / (second.name.partition(":2,")[0] + ":2,FS"))
    # A new local message in an existing folder, and one in a folder made locally.
    (mbsync.local / "Archive" / "cur" / "1700000000.local1.client:2,S").write_bytes(
        _message("archived locally").encode()
    )
    projects = mbsync.local / "Projects"
    for sub in ("cur", "new", "tmp"):
        (projects / sub).mkdir(parents=True)
    (projects / "new" / "1700000001.local2.client").write_bytes(_message("project plan").encode())

    mbsync.sync()

    assert _messages(maildir) == {"first": "", "second": "FS", "third": ""}, mbsync.output
    assert _messages(maildir / ".Archive") == {"archived locally": "S"}, mbsync.output
    assert _messages(maildir / ".Projects") == {"project plan": ""}, mbsync.output
    assert _imap_flags(server, "INBOX")["second"] == {"\\Seen", "\\Flagged"}
    assert _imap_flags(server, "Archive") == {"archived locally": {"\\Seen"}}
    assert _imap_flags(server, "Projects") == {"project plan": set()}
    stored = _file(maildir / ".Projects", "project plan").read_bytes()
    assert stored.replace(b"\r\n", b"\n").endswith(b"\n\nhello\n")


def test_mbsync_pulls_server_changes(server: ServerHandle, tmp_path: Path) -> None:
    mbsync = _synced(server, tmp_path)

    client = _imap(server)
    try:
        client.select("INBOX")
        typ, data = client.search(None, "SUBJECT", "first")
        assert typ == "OK" and data[0], data
        assert client.store(data[0].decode(), "+FLAGS", "(\\Flagged \\Answered)")[0] == "OK"
        typ, data = client.search(None, "SUBJECT", "third")
        assert typ == "OK" and data[0], data
        assert client.store(data[0].decode(), "+FLAGS", "(\\Deleted)")[0] == "OK"
        assert client.expunge()[0] == "OK"
    finally:
        client.logout()
    _deliver(server, "fourth")

    mbsync.sync()

    assert _messages(mbsync.inbox) == {"first": "FR", "second": "", "fourth": ""}, mbsync.output


def test_mbsync_repeated_sync_changes_nothing(server: ServerHandle, tmp_path: Path) -> None:
    mbsync = _synced(server, tmp_path)
    maildir = server.maildir(ALICE)
    first = _file(mbsync.inbox, "first")
    first.rename(mbsync.inbox / "cur" / (first.name.partition(":2,")[0] + ":2,S"))
    (mbsync.local / "Drafts" / "new" / "1700000002.local3.client").write_bytes(
        _message("draft").encode()
    )
    _deliver(server, "fourth")
    mbsync.sync()
    local, remote = _snapshot(mbsync.local), _snapshot(maildir)
    flags = {box: _imap_flags(server, box) for box in ("INBOX", "Drafts")}

    for _ in range(2):
        output = mbsync.sync()
        assert _snapshot(mbsync.local) == local, output
        assert _snapshot(maildir) == remote, output
    assert {box: _imap_flags(server, box) for box in ("INBOX", "Drafts")} == flags
    assert _messages(mbsync.inbox) == {"first": "S", "second": "", "third": "", "fourth": ""}
    assert _messages(maildir) == {"first": "S", "second": "", "third": "", "fourth": ""}
    assert _messages(maildir / ".Drafts") == {"draft": ""}
