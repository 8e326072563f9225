"""Backup while serving, restore into a fresh data directory, read it all back over IMAP.

The real ``mailstead serve`` (a child process) takes mail over SMTP while
``mailstead backup`` copies its data directory; the restored copy, served
by a second server, shows every message with the UID, UIDVALIDITY and flags
IMAP showed before.
"""

from __future__ import annotations

import imaplib
import re
import smtplib
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from mailstead.cli.backup import backup, restore
from tests.e2e.harness import client_tls_context
from tests.e2e.process import ALL_ROLES, ServerProcess

pytestmark = pytest.mark.slow

ALICE = "alice@example.test"
TIMEOUT = 10
_FLAGS = re.compile(rb"UID (\d+) FLAGS \(([^)]*)\)|FLAGS \(([^)]*)\) UID (\d+)")


def send(server: ServerProcess, subject: str) -> None:
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=TIMEOUT) as smtp:
        smtp.sendmail(
            "carol@remote.test",
            [ALICE],
            f"From: carol@remote.test\r\nTo: {ALICE}\r\nSubject: {subject}\r\n\r\n{subject}\r\n",
        )


def login(server: ServerProcess) -> imaplib.IMAP4_SSL:
    imap = imaplib.IMAP4_SSL(
        "127.0.0.1", server.ports["imaps"], ssl_context=client_tls_context(), timeout=TIMEOUT
    )
    imap.login(ALICE, "alice-pw")
    return imap


def mailbox(imap: imaplib.IMAP4) -> tuple[int, dict[int, tuple[frozenset[bytes], bytes]]]:
    """UIDVALIDITY and UID → (flags without \\Recent, message) of INBOX, read-only."""
    typ, _ = imap.select("INBOX", readonly=True)
    assert typ == "OK"
    _, [validity] = imap.response("UIDVALIDITY")
    assert validity is not None
    flags: dict[int, frozenset[bytes]] = {}
    typ, data = imap.uid("FETCH", "1:*", "(FLAGS)")
    assert typ == "OK", data
    for line in data:
        assert isinstance(line, bytes), line
        m = _FLAGS.search(line)
        assert m is not None, line
        uid, names = (m.group(1), m.group(2)) if m.group(1) else (m.group(4), m.group(3))
        flags[int(uid)] = frozenset(names.split()) - {b"\\Recent"}
    bodies: dict[int, bytes] = {}
    typ, data = imap.uid("FETCH", "1:*", "(BODY.PEEK[])")
    assert typ == "OK", data
    for item in data:
        if isinstance(item, tuple):
            uid = re.search(rb"UID (\d+)", item[0])
            assert uid is not None, item
            bodies[int(uid.group(1))] = item[1]
    assert flags.keys() == bodies.keys()
    return int(validity), {uid: (flags[uid], bodies[uid]) for uid in flags}


def server(root: Path, storage: str = "maildir") -> ServerProcess:
    root.mkdir()
    return ServerProcess(root, roles=ALL_ROLES, storage=storage)


def cli(command: object, config: Path, *args: str) -> Result:
    return CliRunner().invoke(command, list(args), obj=config)  # type: ignore[arg-type]


@pytest.mark.parametrize("storage", ["maildir", "mbox"])
def test_backup_while_serving_restores_uids_uidvalidity_and_flags(
    tmp_path: Path, storage: str
) -> None:
    with server(tmp_path / "live", storage) as live:
        for n in range(12):
            send(live, f"before {n}")
        imap = login(live)
        imap.select("INBOX")
        imap.uid("STORE", "1:*", "+FLAGS", r"(\Seen)")
        imap.uid("STORE", "2,5,7", "+FLAGS", r"(\Flagged $Label1)")
        imap.uid("STORE", "3", "-FLAGS", r"(\Seen)")
        imap.uid("STORE", "4", "+FLAGS", r"(\Deleted)")
        imap.expunge()
        validity, before = mailbox(imap)
        assert sorted(before) == [1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12]
        assert before[5][0] == {b"\\Seen", b"\\Flagged", b"$Label1"}

        # A sender keeps delivering while the backup runs.
        stop = threading.Event()
        sent: list[str] = []

        def keep_sending() -> None:
            while not stop.is_set():
                subject = f"during {len(sent)}"
                send(live, subject)
                sent.append(subject)

        sender = threading.Thread(target=keep_sending)
        sender.start()
        try:
            while len(sent) < 3:
                stop.wait(0.01)
            result = cli(backup, live.config_path, str(tmp_path / "bk"))
        finally:
            stop.set()
            sender.join(30)
        assert result.exit_code == 0, result.output
        imap.logout()

        # Not while a server uses the data directory, even with --force.
        result = cli(restore, live.config_path, "--force", str(tmp_path / "bk"))
        assert result.exit_code == 1
        assert "a server seems to be using it (" in result.output
        assert result.output.count("\n") == 1

    fresh = server(tmp_path / "fresh", storage)
    result = cli(restore, fresh.config_path, "--force", str(tmp_path / "bk"))
    assert result.exit_code == 0, result.output
    with fresh:
        imap = login(fresh)
        got_validity, after = mailbox(imap)
        imap.logout()
    assert got_validity == validity
    for uid, (flags, body) in before.items():
        assert after[uid] == (flags, body), uid
    # Mail that arrived during the backup: each at most once, after the rest.
    extra = {uid: body for uid, (_, body) in after.items() if uid not in before}
    assert len(extra) >= 3  # sent before the backup began, not yet seen over IMAP
    assert all(uid > max(before) for uid in extra)
    subjects = re.findall(rb"\r\nSubject: (.*)\r\n", b"".join(extra.values()))
    assert len(subjects) == len(set(subjects)) == len(extra)
    assert all(s.startswith(b"during ") for s in subjects)


@pytest.mark.parametrize("damage", ["byte", "missing"])
def test_a_damaged_backup_is_refused(tmp_path: Path, damage: str) -> None:
    with server(tmp_path / "live") as live:
        send(live, "hello")
        assert cli(backup, live.config_path, str(tmp_path / "bk")).exit_code == 0
    [message] = (tmp_path / "bk" / "data" / "mail" / "example.test" / "alice").glob("Maildir/new/*")
    if damage == "byte":
        message.write_bytes(message.read_bytes().replace(b"hello", b"hellO"))
        reason = "checksum mismatch (SHA-256 differs from the manifest)"
    else:
        message.unlink()
        reason = "missing from the backup"
    fresh = server(tmp_path / "fresh")
    result = cli(restore, fresh.config_path, "--force", str(tmp_path / "bk"))
    assert result.exit_code == 1
    assert result.output == f"mailstead: {message}: {reason}\n"
    # Nothing was touched: the fresh server's own data directory is as it was.
    assert not list((tmp_path / "fresh").glob("var.before-restore-*"))
