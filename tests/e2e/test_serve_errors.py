"""`mailstead serve` fails fast and says exactly what is wrong, in one line.

What a new user gets wrong (a certificate, a port, a second server, a data
directory a worker cannot open) stops the server before or right after the
fork with exit status 1 and one line naming the key, file or address: no
traceback, no restart loop, no port accepting connections no one serves.
"""

from __future__ import annotations

import smtplib
import socket
import subprocess
import sys
import time
from pathlib import Path

from mailstead.system.lock import running_pid
from mailstead.tlscert import ensure_self_signed
from tests.e2e.process import ServerProcess

ALLOW_ROOT = "[run]\nallow_root = true\n"
# Fail-fast means seconds, not the time a restart loop takes to give up.
QUICKLY = 20.0


def _serve(server: ServerProcess) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailstead", "--config", str(server.config_path), "serve"],
        capture_output=True,
        text=True,
        timeout=QUICKLY,
    )


def _fails(server: ServerProcess) -> str:
    """The one line ``serve`` ends with; it must exit 1 without a traceback."""
    run = _serve(server)
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr, run.stderr
    assert "restarting" not in run.stderr, run.stderr
    return run.stderr.splitlines()[-1]


def test_garbage_certificate(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, extra=ALLOW_ROOT)
    server.config.tls.cert.write_text("not a certificate\n")
    line = _fails(server)
    assert line.startswith(f"mailstead: cannot load TLS certificate {server.config.tls.cert}")


def test_certificate_of_another_key(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, extra=ALLOW_ROOT)
    other = tmp_path / "other"
    ensure_self_signed(other / "cert.pem", other / "key.pem", "mx.example.test")
    server.config.tls.key.write_bytes((other / "key.pem").read_bytes())
    line = _fails(server)
    assert line == (
        f"mailstead: cannot load TLS certificate {server.config.tls.cert}"
        f" with key {server.config.tls.key}: KEY_VALUES_MISMATCH"
    )


def test_implicit_tls_without_a_certificate(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, extra=ALLOW_ROOT)
    server.config.tls.cert.unlink()
    server.config.tls.key.unlink()
    line = _fails(server)
    assert line == (
        f"mailstead: listen.submissions needs a TLS certificate: tls.cert"
        f" {server.config.tls.cert} does not exist (`mailstead init` makes a self-signed one)"
    )


def test_port_clash_names_the_listener_and_address(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, extra=ALLOW_ROOT)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", server.ports["submission"]))
        taken.listen()
        line = _fails(server)
    port = server.ports["submission"]
    assert line == f"mailstead: listen.submission 127.0.0.1:{port}: address already in use"


def test_a_second_serve_says_mailstead_is_already_running(tmp_path: Path) -> None:
    with ServerProcess(tmp_path, extra=ALLOW_ROOT) as server:
        assert server.proc is not None
        line = _fails(server)
        lock = server.config.data_dir / "mailstead.pid"
        assert line == (
            f"mailstead: Mailstead is already running on {server.config.data_dir}"
            f" (pid {server.proc.pid}, lock {lock})"
        )
        assert lock.read_text() == f"{server.proc.pid}\n"
        assert running_pid(server.config.data_dir) == server.proc.pid
        with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as smtp:
            assert smtp.noop()[0] == 250  # the first one still serves
    assert running_pid(server.config.data_dir) is None  # stopped: the lock went with it


def test_a_worker_that_dies_while_starting_stops_the_server(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, workers=2, extra=ALLOW_ROOT)
    # The supervisor never opens the user directory; each worker does, and fails.
    db = server.config.db_path("directory")
    db.unlink()
    db.mkdir()
    started = time.monotonic()
    run = _serve(server)
    assert run.returncode == 1
    assert "Traceback" not in run.stderr and "restarting" not in run.stderr, run.stderr
    assert f"worker 0: cannot open directory {db}: [Errno 21] Is a directory" in run.stderr
    last = run.stderr.splitlines()[-1]
    assert last.startswith("mailstead: worker "), last
    assert last.endswith(" exited with status 1 while starting"), last
    assert time.monotonic() - started < QUICKLY


def test_no_certificate_and_no_tls_listener_warns_that_auth_is_impossible(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, extra=ALLOW_ROOT, roles=("smtp", "submission"))
    text = server.config_path.read_text()
    for role in ("submissions", "imaps", "pop3s"):
        text = text.replace(f'{role} = ["127.0.0.1:0"]', f"{role} = []")
    server.config_path.write_text(text)
    server.config.tls.cert.unlink()
    server.config.tls.key.unlink()
    with server, smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=10) as smtp:
        smtp.ehlo()
        assert not smtp.has_extn("starttls")
    assert (
        f"no TLS certificate (tls.cert {server.config.tls.cert}): STARTTLS is off, so AUTH is"
        " impossible: no submission, IMAP or POP3 login will succeed" in server.log_tail()
    )


def test_a_localhost_hostname_is_said_out_loud(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, extra=ALLOW_ROOT)
    text = server.config_path.read_text().replace('hostname = "mx.example.test"', "")
    server.config_path.write_text(f'hostname = "localhost"\n{text}')
    with server:
        pass
    # logfmt escapes the quotes inside msg="…"
    assert r"hostname is \"localhost\": this host has no fully qualified name" in server.log_tail()
