"""`mailstead serve` leaves root before it reads a byte from the network.

The tests run as root. Started as root, the server binds its ports and then
every process (the supervisor, the mail workers and the webhook dispatcher)
is the ``[run]`` account with no capability and no supplementary group.
Started unprivileged with only CAP_NET_BIND_SERVICE (systemd's
``AmbientCapabilities=``), it binds a port below 1024 and gives the
capability up.
"""

from __future__ import annotations

import grp
import imaplib
import os
import pwd
import shutil
import smtplib
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import USERS, write_config
from tests.e2e.process import ALL_ROLES, ServerProcess
from tests.tools import require

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="starts serve as root")

ALICE = "alice@example.test"
RUN_AS = '[run]\nuser = "nobody"\ngroup = "nogroup"\n'


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory the ``[run]`` account can reach (pytest's own is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="mailstead-run-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def _status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {key: value.strip() for key, _, value in (line.partition(":") for line in lines)}


def _children(parent: int) -> list[int]:
    return [int(pid) for pid in Path(f"/proc/{parent}/task/{parent}/children").read_text().split()]


def _wait_for_children(parent: int, count: int) -> list[int]:
    deadline = time.monotonic() + 30
    while len(children := _children(parent)) < count:
        assert time.monotonic() < deadline, f"{len(children)} of {count} processes"
        time.sleep(0.05)
    return children


def _assert_unprivileged(pid: int, uid: int, gid: int) -> None:
    status = _status(pid)
    assert status["Uid"].split() == [str(uid)] * 4, (pid, status["Uid"])
    assert status["Gid"].split() == [str(gid)] * 4, (pid, status["Gid"])
    assert status["Groups"] == ""
    for caps in ("CapEff", "CapPrm", "CapAmb"):
        assert int(status[caps], 16) == 0, (pid, caps, status[caps])


def test_started_as_root_every_process_runs_as_the_run_account(open_dir: Path) -> None:
    nobody, nogroup = pwd.getpwnam("nobody").pw_uid, grp.getgrnam("nogroup").gr_gid
    with ServerProcess(open_dir, workers=2, extra=RUN_AS, roles=ALL_ROLES) as server:
        assert server.proc is not None
        # Two mail workers and the webhook dispatcher.
        processes = [server.proc.pid, *_wait_for_children(server.proc.pid, 3)]
        for pid in processes:
            _assert_unprivileged(pid, nobody, nogroup)
        # A From field: the DMARC check then looks up the public suffix list,
        # which the workers must not have to read after leaving root.
        with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as smtp:
            smtp.sendmail(
                "carol@remote.test",
                [ALICE],
                b"From: Carol <carol@xn--bcher-kva.remote.test>\r\nSubject: hi\r\n\r\nhello\r\n",
            )
        with imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=10) as imap:
            imap.starttls()
            imap.login(ALICE, USERS[ALICE])
            assert imap.select("INBOX") == ("OK", [b"1"])
            imap.logout()
        log = server.log_path.read_text()
    assert "running as nobody:nogroup (uid 65534, gid 65534)" in log
    data = server.config.data_dir
    assert (data.stat().st_uid, data.stat().st_gid) == (nobody, nogroup)
    maildir = server.handle.maildir(ALICE)
    for path, mode in [
        (data / "directory.sqlite3", 0o600),
        (data / "queue.sqlite3", 0o600),
        (server.config.tls.key, 0o600),
        (maildir, 0o700),
        (maildir / "cur", 0o700),
        (next((maildir / "cur").iterdir()), 0o600),  # IMAP moved it from new/
    ]:
        st = path.stat()
        assert (st.st_uid, st.st_gid) == (nobody, nogroup), path
        assert stat.S_IMODE(st.st_mode) == mode, (path, oct(st.st_mode))


def _serve_failure(root: Path, extra: str) -> str:
    server = ServerProcess(root, extra=extra)
    run = subprocess.run(
        [sys.executable, "-m", "mailstead", "--config", str(server.config_path), "serve"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1
    return run.stderr.splitlines()[-1]


def test_refuses_to_stay_root(open_dir: Path) -> None:
    line = _serve_failure(open_dir, '[run]\nuser = "root"\ngroup = "root"\n')
    assert line == (
        "mailstead: run.user root / run.group root: refusing to keep running as root"
        " (name an unprivileged account, or set [run] allow_root = true)"
    )


def test_a_missing_run_user_is_named(open_dir: Path) -> None:
    line = _serve_failure(open_dir, '[run]\nuser = "no-such-user"\n')
    assert line.startswith("mailstead: run.user no-such-user: no such user (create it with")


def _closed_root() -> Path | None:
    """The first directory above the interpreter that others cannot enter (e.g. /root)."""
    for path in reversed(Path(os.path.realpath(sys.executable)).parents):
        if not os.stat(path).st_mode & stat.S_IXOTH:
            return path
    return None


def _free_low_port() -> int:
    for port in range(700, 1000):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    pytest.skip("no free port below 1024")


def test_unprivileged_with_cap_net_bind_service_binds_a_low_port(open_dir: Path) -> None:
    setpriv = require("setpriv")
    unshare = require("unshare")
    port = _free_low_port()
    config = write_config(open_dir, ports={"smtp": port}, extra="")
    # Only smtp: the other listeners keep their test ports out of the way.
    text = config.read_text()
    for role in ("submission", "submissions", "imap", "imaps", "pop3", "pop3s"):
        text = text.replace(f'{role} = ["127.0.0.1:0"]', f"{role} = []")
    config.write_text(text)
    for dirpath, dirnames, filenames in os.walk(open_dir):
        for name in (dirpath, *(os.path.join(dirpath, n) for n in dirnames + filenames)):
            os.chown(name, 65534, 65534)
    serve = [
        setpriv,
        "--reuid=nobody",
        "--regid=nogroup",
        "--clear-groups",
        "--inh-caps=+net_bind_service",
        "--ambient-caps=+net_bind_service",
        "--bounding-set=-all,+net_bind_service",
        sys.executable,
        "-m",
        "mailstead",
        "--config",
        str(config),
        "serve",
    ]
    closed = _closed_root()
    if closed is not None:
        # The interpreter lives where nobody may enter (root's home): in a
        # mount namespace of its own, an empty, open directory hides that
        # one, with just the way to the interpreter bound back into it.
        inner = closed / Path(os.path.realpath(sys.executable)).relative_to(closed).parts[0]
        keep = open_dir / "interpreter"
        keep.mkdir()
        script = (
            f"mount --bind {inner} {keep} && mount -t tmpfs -o mode=0755 tmpfs {closed}"
            f' && mkdir {inner} && mount --bind {keep} {inner} && exec "$@"'
        )
        # unshare execs without forking: the server keeps this pid.
        serve = [unshare, "--mount", "--propagation", "private", "sh", "-c", script, "sh", *serve]
    log = (open_dir / "serve.log").open("wb")
    proc = subprocess.Popen(serve, stdout=log, stderr=subprocess.STDOUT, cwd=open_dir)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (open_dir / "serve.log").read_text()
            try:
                with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
                    smtp.sendmail("carol@remote.test", [ALICE], b"Subject: low\r\n\r\nport\r\n")
                break
            except OSError:
                assert time.monotonic() < deadline, (open_dir / "serve.log").read_text()
                time.sleep(0.1)
        for pid in [proc.pid, *_wait_for_children(proc.pid, 2)]:
            _assert_unprivileged(pid, 65534, 65534)
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
    assert proc.returncode == 0, (open_dir / "serve.log").read_text()
    assert "running as uid 65534 without capabilities" in (open_dir / "serve.log").read_text()
