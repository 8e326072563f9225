"""The control socket against the real ``serve``: status, reload, flush and stop,
through the commands an operator types.

``serve`` runs as a child process (tests/e2e/process.py) with two mail
workers; the commands run as separate ``python -m mailstead`` processes.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import signal
import smtplib
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from mailstead.config import load_config
from mailstead.control.client import ControlError, request
from mailstead.directory import Directory
from mailstead.mta.queue import Queue
from mailstead.testing.dns import DNSServer
from mailstead.tlscert import ensure_self_signed
from tests.control.status_shape import check_status
from tests.e2e.harness import client_tls_context, running_config
from tests.e2e.process import ServerProcess, children


def mailstead(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailstead", "--config", str(server.config_path), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _usr1(pid: int) -> str:
    """What process ``pid`` does with SIGUSR1, from proc(5)'s signal masks."""
    masks = dict(
        line.split(":\t", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    bit = 1 << (signal.SIGUSR1 - 1)
    if int(masks["SigCgt"], 16) & bit:
        return "caught"
    return "ignored" if int(masks["SigIgn"], 16) & bit else "default"


def _wait_for(condition: Callable[[], object], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_status_reload_and_stop(tmp_path: Path) -> None:
    with ServerProcess(tmp_path, workers=2) as server:
        assert server.proc is not None
        done = mailstead(server, "status", "--json")
        assert done.returncode == 0, done.stderr
        status = json.loads(done.stdout)
        check_status(status)
        assert status["pid"] == server.proc.pid
        assert status["state"] == "serving"
        workers = status["workers"]
        assert [(w["role"], w["state"]) for w in workers] == [
            ("mail", "serving"),
            ("mail", "serving"),
            ("webhooks", "serving"),
        ]
        assert {w["pid"] for w in workers} == set(children(server.proc.pid))
        # The flush's wake-up (SIGUSR1): caught by the mail workers, ignored by the
        # webhook dispatcher, caught by the supervisor, which passes it on.
        assert [_usr1(w["pid"]) for w in workers] == ["caught", "caught", "ignored"]
        assert _usr1(server.proc.pid) == "caught"
        bound = {(a["name"], a["port"]) for a in status["listeners"]}
        assert set(server.ports.items()) <= bound  # the others listen on port 0's choice
        assert [a["name"] for a in status["listeners"]] == [
            "smtp",
            "submission",
            "submissions",
            "imap",
            "imaps",
            "pop3",
            "pop3s",
        ]
        assert status["queue"] == {
            "messages": 0,
            "recipients": {},
            "oldest_received_at": None,
            "oldest_age_seconds": None,
        }

        # Sessions per protocol, all workers together (mailstead.metrics counts them).
        with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as smtp:
            smtp.ehlo()
            with smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=10) as other:
                other.ehlo()
                sessions = json.loads(mailstead(server, "status", "--json").stdout)["sessions"]
        assert sessions is not None and (sessions["smtp"], sessions["submission"]) == (1, 1)

        text = mailstead(server, "status")
        assert text.returncode == 0
        assert text.stdout.startswith(
            "mailstead 0.1.0 serving example.test, other.test as mx.example.test\n"
        )
        assert f"  smtp         127.0.0.1:{server.ports['smtp']}\n" in text.stdout

        # A new domain and its user: refused, then reloaded, then accepted.
        with Directory(server.config.db_path("directory"), ("new.test",)) as directory:
            directory.add_user("dana@new.test", "dana-pw")
        with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as smtp:
            smtp.ehlo()
            assert smtp.docmd("MAIL FROM:<carol@remote.test>")[0] == 250
            assert smtp.docmd("RCPT TO:<dana@new.test>")[0] == 554
        config_text = server.config_path.read_text()
        server.config_path.write_text(
            config_text.replace('"other.test"]', '"other.test", "new.test"]')
        )
        done = mailstead(server, "reload")
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(
            "reloaded: domains example.test, other.test, new.test; certificate "
        )
        # The reply comes once every worker has reloaded: any new session sees it.
        log = server.log_path.read_text()
        assert 'msg="worker 0: reloaded"' in log and 'msg="worker 1: reloaded"' in log
        with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as smtp:
            smtp.ehlo()
            assert smtp.docmd("MAIL FROM:<carol@remote.test>")[0] == 250
            assert smtp.docmd("RCPT TO:<dana@new.test>")[0] == 250

        # A config the server refuses: the reason, exit 1, the old config kept.
        garbage = server.config.data_dir / "tls" / "garbage.pem"
        garbage.write_text("not a certificate\n")
        server.config_path.write_text(
            server.config_path.read_text() + f'[tls]\ncert = "{garbage}"\n'
        )
        done = mailstead(server, "reload")
        assert done.returncode == 1
        assert done.stderr.startswith("mailstead: reload failed, keeping the previous config: ")
        assert done.stderr.count("\n") == 1
        status = json.loads(mailstead(server, "status", "--json").stdout)
        assert status["last_reload"]["ok"] is False
        assert "new.test" in status["domains"]

        done = mailstead(server, "stop", "--timeout", "30")
        assert done.returncode == 0, done.stderr
        assert done.stdout == f"stopped (pid {server.proc.pid})\n"
        assert server.proc.poll() == 0  # exited, and reaped by nobody yet but the test
        assert not (server.config.data_dir / "control.sock").exists()
        done = mailstead(server, "status")
        assert (done.returncode, done.stderr) == (
            3,
            f"mailstead: no server running on {server.config.data_dir}\n",
        )


def _sink_config(root: Path, port: int) -> Path:
    """far.test's MX: another Mailstead on 127.0.0.5, which keeps what it receives."""
    root.mkdir()
    path = root / "mailstead.toml"
    path.write_text(
        'hostname = "mx.far.test"\ndata_dir = "var"\ndomains = ["far.test"]\n'
        f'[listen]\nsmtp = ["127.0.0.5:{port}"]\nsubmission = []\nsubmissions = []\n'
        "imap = []\nimaps = []\npop3 = []\npop3s = []\n"
    )
    config = load_config(path)
    config.data_dir.mkdir(parents=True)
    ensure_self_signed(config.tls.cert, config.tls.key, config.hostname)
    with Directory(config.db_path("directory"), config.domains) as directory:
        directory.add_user("bob@far.test", "bob-pw")
    return path


def test_flush_sends_a_deferred_message_at_once(tmp_path: Path) -> None:
    zones = {"far.test": {"MX": [(10, "mx.far.test")]}, "mx.far.test": {"A": ["127.0.0.5"]}}
    sink_port = _free_port_on("127.0.0.5")
    with DNSServer(zones) as (dns_host, dns_port):
        delivery = (
            f'dns_servers = ["{dns_host}:{dns_port}"]\nsmtp_port = {sink_port}\n'
            # Without a flush the next attempt would be an hour away.
            'retry_schedule = ["1h"]\n'
        )
        (tmp_path / "ours").mkdir()
        with ServerProcess(tmp_path / "ours", workers=2, delivery=delivery) as server:
            with smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=10) as smtp:
                smtp.starttls(context=client_tls_context())
                smtp.login("alice@example.test", "alice-pw")
                smtp.sendmail(
                    "alice@example.test", ["bob@far.test"], b"Subject: later\r\n\r\nhi\r\n"
                )

            def deferred() -> bool:
                with Queue(server.config.data_dir) as queue:
                    return any(r.state == "deferred" for m in queue.list() for r in m.recipients)

            _wait_for(deferred)  # nothing listens on far.test's MX yet
            status = json.loads(mailstead(server, "status", "--json").stdout)
            assert status["queue"]["messages"] == 1
            assert status["queue"]["recipients"] == {"deferred": 1}

            sink_config = load_config(_sink_config(tmp_path / "sink", sink_port))
            with running_config(sink_config) as sink:
                started = time.monotonic()
                flushed = mailstead(server, "queue", "flush")
                assert flushed.stdout == (
                    "1 deferred recipient(s) due now; 2 worker(s) of the running server"
                    " trying them now\n"
                )
                _wait_for(lambda: sink.new_messages("bob@far.test"), timeout=30)
                took = time.monotonic() - started
            assert b"Subject: later" in sink.new_messages("bob@far.test")[0]
            assert took < 30
            _wait_for(
                lambda: (
                    json.loads(mailstead(server, "status", "--json").stdout)["queue"]["messages"]
                    == 0
                )
            )


def _free_port_on(host: str) -> int:
    import socket

    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _ask_as(uid: int, gid: int, server: ServerProcess) -> str:
    """``request(config, "status")`` from a process that left root for ``uid``: its outcome."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
            try:
                said = f"pid {request(server.config, 'status')['pid']}"
            except ControlError as exc:
                said = f"ControlError: {exc}"
            os.write(write, said.encode())
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read, "rb") as outcome:
        return outcome.read().decode()


@pytest.mark.skipif(os.geteuid() != 0, reason="starts serve as root")
def test_root_and_the_run_user_may_ask_no_one_else() -> None:
    nobody = pwd.getpwnam("nobody")
    nogroup = grp.getgrnam("nogroup").gr_gid
    root = Path(tempfile.mkdtemp(prefix="mailstead-control-", dir="/tmp"))
    root.chmod(0o755)  # pytest's own directory is root's alone
    try:
        run_as = '[run]\nuser = "nobody"\ngroup = "nogroup"\n'
        with ServerProcess(root, workers=1, extra=run_as) as server:
            assert server.proc is not None
            sock = server.config.data_dir / "control.sock"
            st = sock.lstat()
            # Bound after the privilege drop: the [run] account's, 0600.
            assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (
                nobody.pw_uid,
                nogroup,
                0o600,
            )
            assert json.loads(mailstead(server, "status", "--json").stdout)["pid"] == (
                server.proc.pid
            )
            assert _ask_as(nobody.pw_uid, nogroup, server) == f"pid {server.proc.pid}"
            daemon = pwd.getpwnam("daemon")
            assert _ask_as(daemon.pw_uid, daemon.pw_gid, server) == (
                f"ControlError: {sock}: permission denied (run as root or as the [run] user nobody)"
            )
    finally:
        shutil.rmtree(root)
