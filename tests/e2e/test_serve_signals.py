"""SIGHUP reloads without dropping a session; SIGTERM stops cleanly; systemd hears of both.

``serve`` runs as a child process, as systemd would run it, with
``$NOTIFY_SOCKET`` pointing at a datagram socket of the test's own.
"""

from __future__ import annotations

import signal
import smtplib
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailstead.directory import Directory
from mailstead.tlscert import ensure_self_signed
from mailstead.webhooks.outbox import Outbox
from tests.e2e.process import ServerProcess

ALLOW_ROOT = "[run]\nallow_root = true\n"
WEBHOOK = '[[webhooks]]\nurl = "https://app.example/hooks/mail"\nevents = ["message.*"]\n'


@pytest.fixture
def notify(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """The service manager's end of sd_notify(3): what ``serve`` reports arrives here."""
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(30)
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        yield sock


def _next(notify: socket.socket, key: str) -> list[str]:
    while True:
        lines = notify.recv(4096).decode().splitlines()
        if key in lines:
            return lines


def _wait_for_log(server: ServerProcess, text: str) -> str:
    deadline = time.monotonic() + 20
    while text not in (log := server.log_path.read_text()):
        assert time.monotonic() < deadline, log
        time.sleep(0.05)
    return log


def _hup(server: ServerProcess) -> None:
    assert server.proc is not None
    server.proc.send_signal(signal.SIGHUP)


def test_sighup_adds_a_domain_and_keeps_the_session(tmp_path: Path, notify: socket.socket) -> None:
    with ServerProcess(tmp_path, workers=1, extra=ALLOW_ROOT) as server:
        ready = _next(notify, "READY=1")
        assert any(line.startswith("STATUS=serving") for line in ready)
        config = server.config
        with Directory(config.db_path("directory"), ("new.test",)) as directory:
            directory.add_user("dana@new.test", "dana-pw")
        with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as smtp:
            smtp.ehlo()
            assert smtp.docmd("MAIL FROM:<carol@remote.test>")[0] == 250
            assert smtp.docmd("RCPT TO:<dana@new.test>")[0] == 554  # not ours yet: relaying
            smtp.rset()
            text = server.config_path.read_text()
            server.config_path.write_text(
                text.replace('"other.test"]', '"other.test", "new.test"]') + WEBHOOK
            )
            _hup(server)
            assert "RELOADING=1" in _next(notify, "RELOADING=1")
            _next(notify, "READY=1")
            log = _wait_for_log(server, "worker 0: reloaded")
            # The same connection, after the reload:
            smtp.sendmail("carol@remote.test", ["dana@new.test"], b"Subject: hi\r\n\r\nhi\r\n")
        assert (
            "reloaded: domains example.test, other.test, new.test;"
            f" certificate {config.tls.cert}; 1 [[webhooks]] endpoint(s);"
            " users and aliases are read live" in log
        )
        assert len(server.handle.new_messages("dana@new.test")) == 1
        with Outbox(config.data_dir / "queue.sqlite3") as outbox:
            assert [e.url for e in outbox.endpoints.list()] == ["https://app.example/hooks/mail"]


def test_a_config_that_no_longer_loads_keeps_the_old_one(tmp_path: Path) -> None:
    with ServerProcess(tmp_path, extra=ALLOW_ROOT) as server:
        # Before it is ready, SIGHUP is ignored (systemd holds reloads back till READY=1).
        _wait_for_log(server, "ready: ")
        server.config_path.write_text(server.config_path.read_text() + "[bogus]\n")
        _hup(server)
        log = _wait_for_log(server, "reload failed")
        assert (
            "reload failed, keeping the previous config: "
            f"{server.config_path}: bogus: unknown key (expected one of:" in log
        )
        with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as smtp:
            smtp.sendmail("carol@remote.test", ["alice@example.test"], b"Subject: x\r\n\r\nx\r\n")
        assert server.running


def _served_certificate(port: int) -> bytes:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def test_sighup_swaps_the_certificate_for_new_connections(tmp_path: Path) -> None:
    with ServerProcess(tmp_path, workers=1, extra=ALLOW_ROOT) as server:
        _wait_for_log(server, "ready: ")
        cert, key = server.config.tls.cert, server.config.tls.key
        before = _served_certificate(server.ports["submissions"])
        assert before == ssl.PEM_cert_to_DER_cert(cert.read_text())
        renewed = tmp_path / "renewed"
        ensure_self_signed(renewed / "cert.pem", renewed / "key.pem", "renewed.example.test")
        # Key and certificate replaced, as a renewal does.
        key.write_bytes((renewed / "key.pem").read_bytes())
        cert.write_bytes((renewed / "cert.pem").read_bytes())
        _hup(server)
        _wait_for_log(server, "worker 0: reloaded")
        deadline = time.monotonic() + 10
        while (after := _served_certificate(server.ports["submissions"])) == before:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert after == ssl.PEM_cert_to_DER_cert(cert.read_text())


def test_sigterm_stops_accepting_and_says_stopping(tmp_path: Path, notify: socket.socket) -> None:
    server = ServerProcess(tmp_path, workers=2, extra=ALLOW_ROOT)
    server.start()
    _next(notify, "READY=1")
    idle = smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10)
    idle.ehlo()
    server.stop()
    assert server.proc is not None and server.proc.returncode == 0
    assert "STOPPING=1" in _next(notify, "STOPPING=1")
    # RFC 5321 §3.8: the session was told, not cut.
    assert idle.getreply()[0] == 421
    idle.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.ports["smtp"]), timeout=5).close()
