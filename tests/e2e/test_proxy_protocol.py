"""Real HAProxy in front of the server: the client's address survives the balancer (issue 25).

HAProxy (Debian's ``haproxy``) runs in TCP mode on 127.0.0.1, started by
the test, with ``send-proxy-v2`` or ``send-proxy`` on its server lines and
``source 127.0.0.2``, the one network the server's ``[listen]
proxy_protocol`` lists. The test's smtplib and imaplib connect to HAProxy
from 127.0.0.3, so every place the server names its peer must say
127.0.0.3, never HAProxy's 127.0.0.2: the Received header, the log lines,
the ``message.received`` and ``auth.succeeded`` webhook events. IMAP goes
through both plain (STARTTLS) and implicit TLS, where the header comes in
clear before the handshake.
"""

from __future__ import annotations

import contextlib
import logging
import smtplib
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from mailstead.config import load_config
from mailstead.logs import LogfmtFormatter, parse_line
from tests.e2e.haproxy import (
    BALANCER,
    CLIENT,
    IMAPFromClient,
    IMAPSFromClient,
    proxy_protocol_line,
    running_haproxy,
)
from tests.e2e.harness import (
    ServerHandle,
    client_tls_context,
    free_port,
    running_config,
    write_config,
)
from tests.e2e.test_webhooks import Receiver, wait_for, webhook_config

PROXIED = ("smtp", "imap", "imaps")

_SECTION = """\
frontend {name}
    bind 127.0.0.1:{front}
    default_backend {name}
backend {name}
    server mailstead 127.0.0.1:{port} {send} source {source}{options}
"""


@dataclass
class Balanced:
    """The server, HAProxy's front ports for it, the webhook receiver and the log lines."""

    server: ServerHandle
    fronts: dict[str, int]
    webhooks: Receiver
    lines: list[dict[str, str]]

    def logged(self, msg: str) -> list[dict[str, str]]:
        return [line for line in self.lines if line.get("msg") == msg]


class _Lines(logging.Handler):
    """Each record formatted where it is logged (its session's context), as in the log file."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(LogfmtFormatter())
        self.out: list[dict[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        parsed = parse_line(self.format(record))
        if parsed is not None:
            self.out.append(parsed)


@contextmanager
def _haproxy(
    tmp_path: Path, send: str, ports: dict[str, int], options: str
) -> Iterator[dict[str, int]]:
    fronts = {name: free_port() for name in PROXIED}
    sections = "".join(
        _SECTION.format(
            name=name,
            front=fronts[name],
            port=ports[name],
            send=send,
            source=BALANCER,
            options=options,
        )
        for name in PROXIED
    )
    with running_haproxy(tmp_path, sections, fronts.values()):
        yield fronts


@contextmanager
def balanced(tmp_path: Path, send: str, options: str = "") -> Iterator[Balanced]:
    ports = {name: free_port() for name in ("smtp", "submission", "submissions", *PROXIED)}
    lines = _Lines()
    logger = logging.getLogger("mailstead")
    level = logger.level
    logger.addHandler(lines)
    logger.setLevel(logging.INFO)
    with Receiver() as webhooks:
        path = write_config(
            tmp_path, ports=ports, extra=webhook_config(webhooks.url, '["message.*", "auth.*"]')
        )
        text = path.read_text()
        path.write_text(text.replace("[listen]\n", "[listen]\n" + proxy_protocol_line(), 1))
        try:
            with (
                running_config(load_config(path)) as server,
                _haproxy(tmp_path, send, ports, options) as fronts,
            ):
                yield Balanced(server, fronts, webhooks, lines.out)
        finally:
            logger.removeHandler(lines)
            logger.setLevel(level)


MESSAGE = b"From: zoe@sender.test\r\nTo: alice@example.test\r\nSubject: via HAProxy\r\n\r\nhi\r\n"


@pytest.mark.parametrize("send", ["send-proxy-v2", "send-proxy"])
def test_the_client_address_crosses_haproxy(tmp_path: Path, send: str) -> None:
    with balanced(tmp_path, send) as b:
        # SMTP: the MTA listener, through HAProxy, from 127.0.0.3.
        with smtplib.SMTP(
            "127.0.0.1", b.fronts["smtp"], source_address=(CLIENT, 0), timeout=10
        ) as smtp:
            smtp.ehlo("client.sender.test")
            smtp.sendmail("zoe@sender.test", ["alice@example.test"], MESSAGE)
        (stored,) = b.server.new_messages("alice@example.test")  # before IMAP sees it
        # IMAP with STARTTLS, then IMAP over implicit TLS.
        imap = IMAPFromClient("127.0.0.1", b.fronts["imap"], timeout=10)
        imap.starttls(client_tls_context())
        imap.login("alice@example.test", "alice-pw")
        assert imap.select("INBOX") == ("OK", [b"1"])
        imap.logout()
        imaps = IMAPSFromClient("127.0.0.1", b.fronts["imaps"], ssl_context=client_tls_context())
        imaps.login("alice@example.test", "alice-pw")
        imaps.select("INBOX", readonly=True)
        typ, data = imaps.fetch("1", "(BODY.PEEK[HEADER.FIELDS (RECEIVED)])")
        imaps.logout()
        wait_for(lambda: len(b.webhooks.of_type("auth.succeeded")) == 2)
        wait_for(lambda: bool(b.webhooks.of_type("message.received")))

    # The Received header names the client, stored and as IMAP shows it.
    assert b"Received: from client.sender.test ([127.0.0.3])\n" in stored
    assert typ == "OK" and isinstance(data[0], tuple)
    assert b"Received: from client.sender.test ([127.0.0.3])" in data[0][1]
    # The webhook events.
    (received,) = b.webhooks.of_type("message.received")
    assert received.data["client"]["ip"] == CLIENT
    assert [e.data["remote_ip"] for e in b.webhooks.of_type("auth.succeeded")] == [CLIENT] * 2
    # The log lines: every session under the client's address, HAProxy's as proxy=.
    connects = b.logged("connect")
    assert sorted(line["protocol"] for line in connects) == ["imap", "imap", "smtp"]
    assert {(line["ip"], line["proxy"]) for line in connects} == {(CLIENT, BALANCER)}
    assert {line["ip"] for line in b.logged("login")} == {CLIENT}
    assert not [line for line in b.lines if line.get("ip") == BALANCER]


def test_without_haproxy_a_proxy_line_is_just_a_bad_command(tmp_path: Path) -> None:
    with balanced(tmp_path, "send-proxy-v2") as b:
        # Straight to the server from 127.0.0.3, which is not listed: served
        # as it is, and a PROXY line from it is an unknown command.
        with smtplib.SMTP(
            "127.0.0.1", b.server.ports["smtp"], source_address=(CLIENT, 0), timeout=10
        ) as smtp:
            code, _ = smtp.docmd("PROXY", "TCP4 198.51.100.1 127.0.0.1 4000 25")
            assert code == 500
            smtp.ehlo("client.sender.test")
            smtp.sendmail("zoe@sender.test", ["alice@example.test"], MESSAGE)
        # From the balancer's own address without a header: closed, one line.
        with socket.create_connection(
            ("127.0.0.1", b.server.ports["smtp"]), timeout=10, source_address=(BALANCER, 0)
        ) as sock:
            sock.sendall(b"EHLO spoof.example\r\n")
            # Not even a greeting: closed (reset, with the EHLO unread).
            with contextlib.suppress(ConnectionResetError):
                assert sock.recv(100) == b""
    (stored,) = b.server.new_messages("alice@example.test")
    assert b"Received: from client.sender.test ([127.0.0.3])\n" in stored
    (refused,) = b.logged("PROXY header refused: not a PROXY header")
    assert refused["ip"] == BALANCER and refused["protocol"] == "smtp"


def test_haproxy_health_checks_are_local_connections(tmp_path: Path) -> None:
    # With check-send-proxy, HAProxy's checks carry a v2 LOCAL header
    # (proxy-protocol.txt §2.2): served under the balancer's own address.
    with balanced(tmp_path, "send-proxy-v2", " check inter 100ms check-send-proxy") as b:
        wait_for(lambda: len(b.logged("connect")) >= 2 * len(PROXIED))
    checks = b.logged("connect")
    assert {line["protocol"] for line in checks} == {"smtp", "imap"}
    assert {line["ip"] for line in checks} == {BALANCER}
    assert not [line for line in b.lines if line.get("msg", "").startswith("PROXY header")]
