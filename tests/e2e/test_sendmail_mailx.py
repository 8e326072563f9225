"""`sendmail` used by real programs: Debian's bsd-mailx, and a cron-style pipe.

The sendmail here is the wrapper `mailstead init --system` installs as
/usr/sbin/sendmail, written for the test's config. bsd-mailx finds it
through its `sendmail` variable (set in the file $MAILRC names) and runs
`sendmail -i -t`, with To, Cc and Bcc in the header section, as it does on
a Debian host.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from mailstead.system.sendmail_install import wrapper_text
from tests.e2e.harness import ServerHandle
from tests.tools import require

TIMEOUT = 60


def _mailx() -> str:
    return require("bsd-mailx")


@pytest.fixture
def sendmail(server: ServerHandle, tmp_path: Path) -> Path:
    path = tmp_path / "bin" / "sendmail"
    path.parent.mkdir()
    path.write_text(wrapper_text([sys.executable, "-m", "mailstead"], _config_path(server)))
    path.chmod(0o755)
    return path


def _config_path(server: ServerHandle) -> Path:
    return server.config.data_dir.parent / "mailstead.toml"


def _queued(server: ServerHandle) -> list[dict[str, object]]:
    listed = subprocess.run(
        [
            sys.executable,
            "-m",
            "mailstead",
            "--config",
            str(_config_path(server)),
            "queue",
            "list",
            "--json",
        ],
        capture_output=True,
        check=True,
        timeout=TIMEOUT,
    )
    result: list[dict[str, object]] = json.loads(listed.stdout)
    return result


def test_mailx_sends_through_sendmail_t(
    server: ServerHandle, sendmail: Path, tmp_path: Path
) -> None:
    mailx = _mailx()
    (tmp_path / "mailrc").write_text(f"set sendmail={sendmail}\n")
    env = {**os.environ, "MAILRC": str(tmp_path / "mailrc"), "HOME": str(tmp_path)}
    done = subprocess.run(
        [
            mailx,
            "-s",
            "Quarterly numbers",
            "-c",
            "bob@example.test",
            "-b",
            "carol@remote.test",
            "alice@example.test",
        ],
        input=b"Numbers are up.\n.\nStill here after a lone dot: mailx passes -i.\n",
        env=env,
        capture_output=True,
        timeout=TIMEOUT,
    )
    assert (done.returncode, done.stderr) == (0, b"")

    for address in ("alice@example.test", "bob@example.test"):
        (raw,) = server.new_messages(address)
        msg = message_from_bytes(raw, policy=policy.default)
        assert msg["Subject"] == "Quarterly numbers"
        assert msg["To"] == "alice@example.test" and msg["Cc"] == "bob@example.test"
        assert "Bcc" not in msg and b"carol" not in raw  # the Bcc stays hidden
        assert msg["Message-ID"] and msg["Date"] and msg["From"]
        assert msg.get_content().endswith("Still here after a lone dot: mailx passes -i.\n")
    (queued,) = _queued(server)
    assert [r["address"] for r in queued["recipients"]] == ["carol@remote.test"]  # type: ignore[index]


def test_mailx_reports_a_refused_recipient(
    server: ServerHandle, sendmail: Path, tmp_path: Path
) -> None:
    mailx = _mailx()
    (tmp_path / "mailrc").write_text(f"set sendmail={sendmail}\n")
    env = {**os.environ, "MAILRC": str(tmp_path / "mailrc"), "HOME": str(tmp_path)}
    done = subprocess.run(
        [mailx, "-s", "hello", "nobody@example.test"],
        input=b"Is anyone there?\n",
        env=env,
        capture_output=True,
        timeout=TIMEOUT,
    )
    # mailx waits for sendmail, which said why on stderr; mailx keeps the
    # message in dead.letter.
    assert (
        b"sendmail: nobody@example.test: 550 5.1.1 No such user here; nothing sent" in done.stderr
    )
    assert (tmp_path / "dead.letter").exists()
    assert _queued(server) == [] and server.new_messages("alice@example.test") == []


def test_cron_style_pipe(server: ServerHandle, sendmail: Path) -> None:
    # What Debian's cron runs for a job's output with MAILTO=postmaster.
    done = subprocess.run(
        [str(sendmail), "-FCronDaemon", "-i", "-B8BITMIME", "-oem", "postmaster"],
        input=b"From: root (Cron Daemon)\nTo: postmaster\nSubject: Cron <root@host> backup\n"
        b"\nbackup: 3 files\n",
        capture_output=True,
        timeout=TIMEOUT,
    )
    assert (done.returncode, done.stderr) == (0, b"")
    (raw,) = server.new_messages("alice@example.test")  # postmaster is alice's alias
    assert raw.startswith(b"Return-Path: <root@mx.example.test>\n")  # the login at hostname
    assert b"\nSubject: Cron <root@host> backup\n" in raw


def test_exit_status_reaches_the_caller(server: ServerHandle, sendmail: Path) -> None:
    done = subprocess.run([str(sendmail), "-i"], input=b"x\n", capture_output=True, timeout=TIMEOUT)
    assert (done.returncode, done.stderr) == (64, b"sendmail: no recipient given\n")
