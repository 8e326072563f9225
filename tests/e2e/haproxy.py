"""Debian's HAProxy in front of the servers a test started, on loopback.

The test's clients connect from :data:`CLIENT`; HAProxy connects to the
servers from :data:`BALANCER`, the network they list in ``[listen]
proxy_protocol``, so every place a server names its peer shows which of
the two it believed.
"""

from __future__ import annotations

import imaplib
import socket
import ssl
import subprocess
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.tools import require

CLIENT = "127.0.0.3"  # the test's clients, in front of HAProxy
BALANCER = "127.0.0.2"  # HAProxy's source towards the servers: the listed network

_GLOBAL = """\
global
    maxconn 64
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
"""
# Seconds HAProxy may take to listen on every frontend.
_START = 10


def proxy_protocol_line() -> str:
    """The ``[listen]`` key that makes a server require the header from HAProxy."""
    return f'proxy_protocol = ["{BALANCER}/32"]\n'


@contextmanager
def running_haproxy(tmp_path: Path, sections: str, fronts: Iterable[int]) -> Iterator[None]:
    """HAProxy with ``sections`` (frontends and backends) after the usual
    globals, checked with ``haproxy -c``; returns once every port of
    ``fronts`` listens, and stops it afterwards."""
    haproxy = require("haproxy")
    config = tmp_path / "haproxy.cfg"
    config.write_text(_GLOBAL + sections)
    check = subprocess.run([haproxy, "-c", "-f", str(config)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    proc = subprocess.Popen(
        [haproxy, "-db", "-f", str(config)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + _START
        while not all(_listening(port) for port in fronts):
            assert proc.poll() is None, proc.communicate()[0]
            assert time.monotonic() < deadline, f"HAProxy did not listen within {_START} s"
            time.sleep(0.05)
        yield
    finally:
        proc.terminate()
        proc.wait(10)


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
        return False


class IMAPFromClient(imaplib.IMAP4):
    """imaplib from :data:`CLIENT` (imaplib has no source address option)."""

    def _create_socket(self, timeout: float | None) -> socket.socket:
        return socket.create_connection((self.host, self.port), timeout, source_address=(CLIENT, 0))


class IMAPSFromClient(imaplib.IMAP4_SSL):
    """The same over implicit TLS."""

    def _create_socket(self, timeout: float | None) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout, source_address=(CLIENT, 0))
        context: ssl.SSLContext = self.ssl_context
        return context.wrap_socket(sock, server_hostname=self.host)
