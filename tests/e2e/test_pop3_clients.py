"""Real POP3 clients against the real server: fetchmail, getmail6 and mpop.

Each client checks the server certificate (the test's self-signed one, by
its host name ``mx.example.test``), logs in as alice, delivers what it
fetches into a local directory, and either keeps the mail on the server or
deletes it. The tests then look at both sides: what arrived locally, and
what the server's Maildir still holds (with which flags).
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import smtplib
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import ServerHandle
from tests.tools import require

ALICE = "alice@example.test"
PASSWORD = "alice-pw"
CERT_NAME = "mx.example.test"  # the self-signed certificate's host name

# Seconds one client run may take (each needs well under one).
CLIENT_TIMEOUT = 20


def _message(subject: str, body: str) -> str:
    return (
        f"From: carol@remote.test\r\n"
        f"To: {ALICE}\r\n"
        f"Subject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '.')}@remote.test>\r\n"
        f"\r\n{body}\r\n"
    )


def _deliver(server: ServerHandle, *subjects: str) -> None:
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as smtp:
        for subject in subjects:
            smtp.sendmail("carol@remote.test", [ALICE], _message(subject, f"body of {subject}"))


def _subject(data: bytes) -> str:
    match = re.search(rb"^Subject: (.*?)\r?$", data, re.MULTILINE)
    assert match is not None, data
    return match.group(1).decode()


def _server_files(server: ServerHandle) -> dict[str, str]:
    """Subject -> Maildir flags of each message left in alice's INBOX on the server."""
    found: dict[str, str] = {}
    root = server.maildir(ALICE)
    for sub in ("new", "cur"):
        for path in sorted((root / sub).iterdir()):
            found[_subject(path.read_bytes())] = path.name.partition(":2,")[2]
    return found


def _local(directory: Path) -> dict[str, bytes]:
    """Subject -> content of each message a client delivered into ``directory``
    (a Maildir, or a directory of one file per message). Fails on a duplicate."""
    files = [p for p in directory.rglob("*") if p.is_file() and p.parent.name != "tmp"]
    found: dict[str, bytes] = {}
    for path in files:
        data = path.read_bytes()
        subject = _subject(data)
        assert subject not in found, f"{subject!r} delivered twice"
        found[subject] = data
    return found


def _assert_content(data: bytes, subject: str) -> None:
    """The delivered message is the one sent, body and all, with no POP3
    stuffing or terminator left in it."""
    assert f"Message-ID: <{subject}@remote.test>".encode() in data
    text = data.replace(b"\r\n", b"\n")
    assert text.endswith(f"\n\nbody of {subject}\n".encode()), data
    assert b"\n.\n" not in text


def _run(argv: list[str], env: dict[str, str] | None = None) -> str:
    try:
        result = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=CLIENT_TIMEOUT,
            env={**os.environ, **(env or {})},
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{argv[0]} did not finish within {exc.timeout}s:\n{exc.stdout!r}")
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{argv[0]} exited {result.returncode}:\n{output}"
    return output


# --------------------------------------------------------------------------- fetchmail


def _fetchmail(server: ServerHandle, home: Path, *, keep: bool) -> tuple[str, Path]:
    """Run fetchmail once over STLS; returns its log and the directory it
    delivered into (one file per message, through an MDA)."""
    binary = require("fetchmail")
    home.mkdir(parents=True, exist_ok=True)
    out = home / "delivered"
    out.mkdir(exist_ok=True)
    rc = home / ".fetchmailrc"
    rc.write_text(
        "set no bouncemail\n"
        f"poll 127.0.0.1 with proto POP3 port {server.ports['pop3']}\n"
        f'  user "{ALICE}" there with password "{PASSWORD}" is "alice" here\n'
        # sslproto without ssl: STLS, required (fetchmail >= 6.4).
        "  sslproto 'tls1.2+'\n"
        f"  sslcertck sslcertfile '{server.config.tls.cert}' sslcommonname '{CERT_NAME}'\n"
        f"  {'keep' if keep else 'nokeep'} fetchall\n"
        f"  mda \"/bin/sh -c 'cat > {out}/msg.$$'\"\n"
    )
    rc.chmod(0o600)
    log = _run(
        [binary, "--nodetach", "--nosyslog", "-v", "-f", str(rc)],
        env={"HOME": str(home), "FETCHMAILHOME": str(home)},
    )
    return log, out


def test_fetchmail_stls_keep(server: ServerHandle, tmp_path: Path) -> None:
    _deliver(server, "one", "two")
    log, out = _fetchmail(server, tmp_path / "fm", keep=True)
    assert "STLS" in log, log
    local = _local(out)
    assert set(local) == {"one", "two"}, log
    for subject, data in local.items():
        _assert_content(data, subject)
    # Kept on the server, and marked read.
    assert _server_files(server) == {"one": "S", "two": "S"}, log


def test_fetchmail_stls_nokeep_empties_the_inbox(server: ServerHandle, tmp_path: Path) -> None:
    _deliver(server, "one", "two", "three")
    log, out = _fetchmail(server, tmp_path / "fm", keep=False)
    local = _local(out)
    assert set(local) == {"one", "two", "three"}, log
    for subject, data in local.items():
        _assert_content(data, subject)
    assert _server_files(server) == {}, log


# --------------------------------------------------------------------------- getmail6


@pytest.fixture
def getmail_maildir(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """The local Maildir getmail delivers into, and the ``user`` line it needs.

    getmail refuses to deliver as root: as root, it delivers as ``nobody``
    into a Maildir that ``nobody`` owns, outside pytest's private tmp dir.
    """
    if os.geteuid() != 0:
        maildir = tmp_path / "Maildir"
        for sub in ("tmp", "new", "cur"):
            (maildir / sub).mkdir(parents=True)
        yield maildir, ""
        return
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("running as root and there is no user 'nobody' for getmail")
    parent = Path(tempfile.mkdtemp(prefix="getmail-"))
    try:
        parent.chmod(0o711)
        maildir = parent / "Maildir"
        for sub in ("", "tmp", "new", "cur"):
            (maildir / sub).mkdir(exist_ok=True)
            os.chown(maildir / sub, nobody.pw_uid, nobody.pw_gid)
        yield maildir, "user = nobody\n"
    finally:
        shutil.rmtree(parent, ignore_errors=True)


def _getmail(
    server: ServerHandle, home: Path, target: tuple[Path, str], *, delete: bool
) -> tuple[str, Path]:
    """Run getmail once over POP3S into a local Maildir."""
    binary = require("getmail")
    home.mkdir(parents=True, exist_ok=True)
    maildir, user_line = target
    rc = home / "getmailrc"
    rc.write_text(
        "[retriever]\n"
        "type = SimplePOP3SSLRetriever\n"
        "server = 127.0.0.1\n"
        f"port = {server.ports['pop3s']}\n"
        f"username = {ALICE}\n"
        f"password = {PASSWORD}\n"
        f"ca_certs = {server.config.tls.cert}\n"
        f"ssl_cert_hostname = {CERT_NAME}\n"
        "timeout = 10\n"
        "[destination]\n"
        "type = Maildir\n"
        f"path = {maildir}/\n"
        f"{user_line}"
        "[options]\n"
        "verbose = 2\n"
        "read_all = false\n"
        f"delete = {'true' if delete else 'false'}\n"
        "message_log_syslog = false\n"
    )
    log = _run(
        [binary, "--getmaildir", str(home), "--rcfile", str(rc)],
        env={"HOME": str(home)},
    )
    return log, maildir


def test_getmail_pop3s_keeps_and_tracks_uidl(
    server: ServerHandle, tmp_path: Path, getmail_maildir: tuple[Path, str]
) -> None:
    _deliver(server, "one", "two")
    home = tmp_path / "gm"
    log, maildir = _getmail(server, home, getmail_maildir, delete=False)
    local = _local(maildir)
    assert set(local) == {"one", "two"}, log
    for subject, data in local.items():
        _assert_content(data, subject)
    assert _server_files(server) == {"one": "S", "two": "S"}, log
    # A second run finds nothing new: getmail remembers the UIDLs.
    log, _ = _getmail(server, home, getmail_maildir, delete=False)
    assert set(_local(maildir)) == {"one", "two"}, log
    assert re.search(r"0 messages? .*retrieved", log), log
    # A new delivery is picked up alone.
    _deliver(server, "three")
    log, _ = _getmail(server, home, getmail_maildir, delete=False)
    assert set(_local(maildir)) == {"one", "two", "three"}, log


def test_getmail_pop3s_delete_empties_the_inbox(
    server: ServerHandle, tmp_path: Path, getmail_maildir: tuple[Path, str]
) -> None:
    _deliver(server, "one", "two")
    log, maildir = _getmail(server, tmp_path / "gm", getmail_maildir, delete=True)
    local = _local(maildir)
    assert set(local) == {"one", "two"}, log
    for subject, data in local.items():
        _assert_content(data, subject)
    assert _server_files(server) == {}, log


# --------------------------------------------------------------------------- mpop


def _mpop(
    server: ServerHandle, home: Path, *, keep: bool, starttls: bool = True, auth: str = "user"
) -> tuple[str, Path]:
    """Run mpop once (STLS on the pop3 port, or POP3S) into a local Maildir."""
    binary = require("mpop")
    home.mkdir(parents=True, exist_ok=True)
    maildir = home / "Maildir"
    for sub in ("tmp", "new", "cur"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    rc = home / "mpoprc"
    rc.write_text(
        "defaults\n"
        "tls on\n"
        f"tls_trust_file {server.config.tls.cert}\n"
        f"tls_host_override {CERT_NAME}\n"
        "account alice\n"
        "host 127.0.0.1\n"
        f"port {server.ports['pop3' if starttls else 'pop3s']}\n"
        f"tls_starttls {'on' if starttls else 'off'}\n"
        f"user {ALICE}\n"
        f"auth {auth}\n"
        f"password {PASSWORD}\n"
        f"delivery maildir {maildir}\n"
        f"keep {'on' if keep else 'off'}\n"
        f"uidls_file {home}/uidls\n"
        "timeout 10\n"
    )
    rc.chmod(0o600)
    log = _run([binary, "-C", str(rc), "-d", "alice"], env={"HOME": str(home)})
    return log, maildir


def test_mpop_stls_keep_then_nothing_new(server: ServerHandle, tmp_path: Path) -> None:
    _deliver(server, "one", "two")
    home = tmp_path / "mpop"
    log, maildir = _mpop(server, home, keep=True)
    assert "STLS" in log, log
    local = _local(maildir)
    assert set(local) == {"one", "two"}, log
    for subject, data in local.items():
        _assert_content(data, subject)
    assert _server_files(server) == {"one": "S", "two": "S"}, log
    log, _ = _mpop(server, home, keep=True)
    assert set(_local(maildir)) == {"one", "two"}, log


def test_mpop_pop3s_auth_plain_no_keep(server: ServerHandle, tmp_path: Path) -> None:
    _deliver(server, "one", "two")
    log, maildir = _mpop(server, tmp_path / "mpop", keep=False, starttls=False, auth="plain")
    assert "AUTH PLAIN" in log, log
    local = _local(maildir)
    assert set(local) == {"one", "two"}, log
    for subject, data in local.items():
        _assert_content(data, subject)
    assert _server_files(server) == {}, log
