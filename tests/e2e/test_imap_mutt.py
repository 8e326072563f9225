"""mutt against the running IMAP server, driven non-interactively.

mutt is a curses program: it refuses to run without a terminal, so each test
starts it on a pseudo-terminal with ``-e 'push …'`` keystrokes that end in
``<quit>``. The keystrokes are what a user would type (tag, flag, save,
delete, sync); the assertions are on the files the server wrote in the
user's Maildir (``:2,S``, ``:2,FS``, ``.Archive/cur/``, files gone) and, where
it reads better, on what a second client (imaplib over STARTTLS) sees.

mutt writes its debug log, with the full IMAP transcript (``4> a0005 FETCH
…`` / ``4< * 1 FETCH …``), to ``$HOME/.muttdebug0``; HOME is the test's own
directory, and a failing assertion prints the transcript.
"""

from __future__ import annotations

import errno
import fcntl
import imaplib
import os
import pty
import re
import select
import shutil
import smtplib
import struct
import subprocess
import termios
import time
from pathlib import Path

import pytest

from tests.e2e.harness import ServerHandle, client_tls_context
from tests.tools import require

ALICE = "alice@example.test"
PASSWORD = "alice-pw"

# Seconds mutt may take for one batch session (it needs well under one).
MUTT_TIMEOUT = 20


# --------------------------------------------------------------------------- helpers


def _deliver(server: ServerHandle, subject: str, body: str = "hello") -> None:
    """One message for alice through the server's own SMTP listener."""
    message = (
        f"From: carol@remote.test\r\n"
        f"To: {ALICE}\r\n"
        f"Subject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '.')}@remote.test>\r\n"
        f"\r\n{body}\r\n"
    )
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as smtp:
        smtp.sendmail("carol@remote.test", [ALICE], message)


def _files(folder: Path) -> dict[str, str]:
    """Subject -> Maildir flags (what follows ``:2,``) of every message in ``folder``."""
    found: dict[str, str] = {}
    for sub in ("new", "cur"):
        directory = folder / sub
        if not directory.is_dir():
            continue
        for path in directory.iterdir():
            match = re.search(rb"^Subject: (.*?)\r?$", path.read_bytes(), re.MULTILINE)
            assert match is not None, path
            subject = match.group(1).decode()
            assert subject not in found, f"duplicate message {subject!r} in {folder}"
            _, _, info = path.name.partition(":2,")
            found[subject] = info
    return found


class Mutt:
    """mutt with a muttrc for alice in ``home`` and a copy of the server's certificate."""

    def __init__(self, server: ServerHandle, home: Path, *, starttls: bool = False) -> None:
        self.binary = require("mutt")
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        # mutt trusts the certificates in certificate_file (its "accept always" store).
        certs = home / "certificates.pem"
        shutil.copyfile(server.config.tls.cert, certs)
        if starttls:
            self.folder = f"imap://127.0.0.1:{server.ports['imap']}/"
            tls = "set ssl_starttls=yes\nset ssl_force_tls=yes\n"
        else:
            self.folder = f"imaps://127.0.0.1:{server.ports['imaps']}/"
            tls = "set ssl_force_tls=yes\n"
        self.muttrc = home / "muttrc"
        self.muttrc.write_text(
            f"set imap_user={ALICE}\n"
            f"set imap_pass={PASSWORD}\n"
            f"set folder={self.folder}\n"
            "set spoolfile=+INBOX\n"
            f"{tls}"
            "set ssl_verify_host=no\n"
            f"set certificate_file={certs}\n"
            "set record=\n"
            "set header_cache=\n"
            "set message_cachedir=\n"
            "set timeout=1\n"
            "set mail_check=1\n"
            "set imap_passive=yes\n"
            "set imap_check_subscribed=no\n"
            # Batch mode: nothing may stop to ask a question.
            "set confirmappend=no\n"
            "set confirmcreate=no\n"
            "set delete=yes\n"
            "set quit=yes\n"
            "set move=no\n"
            "set mark_old=no\n"
            "set wait_key=no\n"
            "set sleep_time=0\n"
            "set beep=no\n"
            "set sort=subject\n"
        )

    def debug_log(self) -> str:
        log = self.home / ".muttdebug0"
        return log.read_text(errors="replace") if log.exists() else "(no mutt debug log)"

    def transcript(self) -> str:
        """The IMAP lines of the last session's debug log (``4> `` sent, ``4< `` received)."""
        lines = [
            line for line in self.debug_log().splitlines() if re.match(r"\[[^]]*\] \d+[<>] ", line)
        ]
        return "\n".join(lines)

    def run(self, keys: str, mailbox: str = "INBOX") -> str:
        """Open ``mailbox``, type ``keys`` (which must end in ``<quit>``), return the screen."""
        argv = [
            self.binary,
            "-n",
            "-F",
            str(self.muttrc),
            "-d",
            "5",
            "-e",
            f'push "{keys}"',
            "-f",
            f"{self.folder}{mailbox}",
        ]
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),
            "TERM": "dumb",
            "LANG": "C.UTF-8",
            "COLUMNS": "132",
            "LINES": "40",
        }
        (self.home / ".muttdebug0").unlink(missing_ok=True)
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 132, 0, 0))
        try:
            process = subprocess.Popen(
                argv,
                stdin=slave,
                stdout=slave,
                stderr=slave,
                env=env,
                cwd=self.home,
                start_new_session=True,
            )
        finally:
            os.close(slave)
        screen = bytearray()
        deadline = time.monotonic() + MUTT_TIMEOUT
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    process.kill()
                    process.wait()
                    pytest.fail(
                        f"mutt did not quit within {MUTT_TIMEOUT}s\n"
                        f"screen: {bytes(screen)[-2000:]!r}\n{self.transcript()}"
                    )
                ready, _, _ = select.select([master], [], [], min(remaining, 0.5))
                if not ready:
                    continue
                try:
                    chunk = os.read(master, 65536)
                except OSError as exc:  # EIO: the child closed the terminal
                    if exc.errno != errno.EIO:
                        raise
                    break
                if not chunk:
                    break
                screen += chunk
            returncode = process.wait(timeout=MUTT_TIMEOUT)
        finally:
            os.close(master)
        text = screen.decode(errors="replace")
        assert returncode == 0, f"mutt exited {returncode}\n{text[-2000:]}\n{self.transcript()}"
        return text


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
        typ, _ = client.select(f'"{mailbox}"', readonly=True)
        assert typ == "OK"
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
            # \Recent says which session saw a message first, not what mutt did.
            shown = set(flags.group(1).decode().split()) - {"\\Recent"}
            result[subject.group(1).decode()] = shown
        return result
    finally:
        client.logout()


def _three_messages(server: ServerHandle) -> Path:
    for subject in ("foo one", "foo two", "bar three"):
        _deliver(server, subject)
    return server.maildir(ALICE)


# --------------------------------------------------------------------------- tests


def test_mutt_reads_a_message_and_marks_it_seen(server: ServerHandle, tmp_path: Path) -> None:
    maildir = _three_messages(server)
    mutt = Mutt(server, tmp_path / "mutt")

    mutt.run("<search>~s three<enter><display-message><exit><sync-mailbox><quit>")

    assert _files(maildir) == {"foo one": "", "foo two": "", "bar three": "S"}, mutt.transcript()
    assert _imap_flags(server, "INBOX")["bar three"] == {"\\Seen"}
    # mutt fetches the body with BODY.PEEK[] and then stores \Seen itself.
    assert re.search(r"> a\d+ UID FETCH \d+ BODY(\.PEEK)?\[\]", mutt.transcript())


def test_mutt_flags_every_message(server: ServerHandle, tmp_path: Path) -> None:
    maildir = _three_messages(server)
    mutt = Mutt(server, tmp_path / "mutt")

    mutt.run("<tag-pattern>~A<enter><tag-prefix><flag-message><sync-mailbox><quit>")

    assert _files(maildir) == {"foo one": "F", "foo two": "F", "bar three": "F"}, mutt.transcript()
    # Read one of them afterwards: the flags add up to FS (Maildir order).
    mutt.run("<search>~s two<enter><display-message><exit><sync-mailbox><quit>")
    assert _files(maildir)["foo two"] == "FS", mutt.transcript()
    assert _imap_flags(server, "INBOX") == {
        "foo one": {"\\Flagged"},
        "foo two": {"\\Flagged", "\\Seen"},
        "bar three": {"\\Flagged"},
    }


def test_mutt_saves_a_message_to_archive(server: ServerHandle, tmp_path: Path) -> None:
    maildir = _three_messages(server)
    mutt = Mutt(server, tmp_path / "mutt")

    mutt.run(
        "<search>~s two<enter><display-message><exit>"
        "<save-message>=Archive<enter><sync-mailbox><quit>"
    )

    transcript = mutt.transcript()
    assert _files(maildir) == {"foo one": "", "bar three": ""}, transcript
    # The message was read before it was saved: UID COPY keeps \Seen.
    assert _files(maildir / ".Archive") == {"foo two": "S"}, transcript
    assert _imap_flags(server, "Archive") == {"foo two": {"\\Seen"}}
    assert set(_imap_flags(server, "INBOX")) == {"foo one", "bar three"}


def test_mutt_deletes_tagged_messages_in_batch(server: ServerHandle, tmp_path: Path) -> None:
    maildir = _three_messages(server)
    mutt = Mutt(server, tmp_path / "mutt")

    mutt.run("<tag-pattern>~s foo<enter><tag-prefix><delete-message><sync-mailbox><quit>")

    transcript = mutt.transcript()
    assert re.search(r"\d+> a\d+ UID STORE 1:2 \+FLAGS.SILENT \(\\Deleted\)", transcript)
    assert _files(maildir) == {"bar three": ""}, transcript
    # Expunged means gone: no file left behind, not moved to Trash either; the
    # files kept for sessions not yet told (RFC 2180 §4.1) wait in tmp/ a while.
    left = [
        p.name
        for sub in ("new", "cur", "tmp")
        for p in (maildir / sub).iterdir()
        if not p.name.endswith(".expunged")
    ]
    assert len(left) == 1, left
    assert _files(maildir / ".Trash") == {}
    assert set(_imap_flags(server, "INBOX")) == {"bar three"}


def test_mutt_over_starttls_flags_and_reads(server: ServerHandle, tmp_path: Path) -> None:
    maildir = _three_messages(server)
    mutt = Mutt(server, tmp_path / "mutt", starttls=True)

    mutt.run(
        "<search>~s one<enter><flag-message>"
        "<search>~s one<enter><display-message><exit>"
        "<sync-mailbox><quit>"
    )

    transcript = mutt.transcript()
    assert "STARTTLS" in transcript
    assert _files(maildir) == {"foo one": "FS", "foo two": "", "bar three": ""}, transcript
