"""Header and log injection through peer text, against the real server.

Once, ``EHLO t.test<CR>X-Inj: 1`` and a normal transaction were stored as
``Received: from t.test<CR>X-Inj: ([127.0.0.1])``, which mail parsers read as
a header of its own. Each case here sends a hostile field over a real
socket, checks the exact refusal, goes on with an honest transaction, and
then parses what reached the disk — the Maildir file, the queue file, the
DSN — with the ``email`` package: its exact header list holds nothing the
peer put there. The log records of the whole exchange hold no raw control
character.
"""

from __future__ import annotations

import base64
import email
import logging
import socket
import time
from collections.abc import Callable, Iterator
from email import policy
from email.message import EmailMessage, Message
from pathlib import Path

import pytest

from mailstead.config import load_config
from mailstead.limits import SMTPLimits
from mailstead.mta.queue import Queue
from mailstead.peertext import has_control
from mailstead.testing.dns import DNSServer
from tests.e2e.harness import ServerHandle, client_tls_context, running_config, write_config
from tests.e2e.test_hostile_network import Conn

FAST_AUTH = SMTPLimits(auth_failure_delay=0.0)
BAD_EHLO = b"501 5.5.2 EHLO takes one domain name or address literal"
DELIVERED_HEADERS = ["Return-Path", "Delivered-To", "Received", "Authentication-Results", "Subject"]


@pytest.fixture
def fast_server(tmp_path: Path) -> Iterator[ServerHandle]:
    with running_config(load_config(write_config(tmp_path)), limits=FAST_AUTH) as handle:
        yield handle


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO)
    return caplog


def _assert_log_lines_clean(logs: pytest.LogCaptureFixture) -> None:
    """No record the server wrote holds a raw control character (CR, LF, NUL, ESC …)."""
    dirty = [r.getMessage() for r in logs.records if has_control(r.getMessage())]
    assert dirty == []


def _parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def _send_honest(conn: Conn, *, sender: bytes = b"carol@remote.test") -> None:
    assert conn.cmd(b"MAIL FROM:<" + sender + b">").startswith(b"250 ")
    assert conn.cmd(b"RCPT TO:<alice@example.test>").startswith(b"250 ")
    assert conn.cmd(b"DATA").startswith(b"354 ")
    assert conn.cmd(b"Subject: honest\r\n\r\nbody\r\n.").startswith(b"250 2.0.0 Ok: queued as ")


def _stored_for_alice(server: ServerHandle) -> EmailMessage:
    (raw,) = server.new_messages("alice@example.test")
    assert b"X-Inj" not in raw and b"\x00" not in raw and b"\r" not in raw
    return _parse(raw)


# --------------------------------------------------------------------------- EHLO / HELO


@pytest.mark.parametrize(
    "ehlo",
    [
        b"EHLO t.test\rX-Inj: 1",  # the report
        b"EHLO t.test\x00X-Inj: 1",
        b"HELO t.test\rX-Inj: 1",
        "EHLO t.test\u2028X-Inj: 1".encode(),
        "EHLO t.test\u0085X-Inj: 1".encode(),
        b"EHLO t.test X-Inj: 1",
        b"EHLO [IPv6:fe80::1%\rX-Inj: 1]",
    ],
)
def test_hostile_ehlo_is_refused_and_the_delivered_message_has_only_our_headers(
    server: ServerHandle, logs: pytest.LogCaptureFixture, ehlo: bytes
) -> None:
    conn = Conn(server.ports["smtp"])
    assert conn.reply().startswith(b"220 ")
    # C: EHLO t.test<CR>X-Inj: 1    S: 501 5.5.2 EHLO takes one domain name or address literal
    assert conn.cmd(ehlo) == BAD_EHLO.replace(b"EHLO", ehlo[:4])
    assert conn.cmd(b"MAIL FROM:<carol@remote.test>") == b"503 5.5.1 Send EHLO or HELO first"
    assert conn.cmd(b"EHLO t.test").startswith(b"250-mx.example.test greets t.test\n")
    _send_honest(conn)
    conn.close()
    stored = _stored_for_alice(server)
    assert stored.keys() == DELIVERED_HEADERS
    assert stored["Received"].startswith("from t.test ([127.0.0.1])\tby mx.example.test ")
    _assert_log_lines_clean(logs)


# --------------------------------------------------------------------------- envelope


@pytest.mark.parametrize(
    ("hostile", "reply"),
    [
        (b"MAIL FROM:<c\x00@remote.test>", b"501 5.1.7 "),
        (b"MAIL FROM:<carol@remote.test\rX-Inj: 1>", b"501 5.1.7 "),
        (b'MAIL FROM:<"carol\rX-Inj: 1"@remote.test>', b"501 5.1.7 "),
        ("MAIL FROM:<carol\u2028X-Inj@remote.test> SMTPUTF8".encode(), b"501 5.1.7 "),
        (b"MAIL FROM:<carol@remote.test> ENVID=a+0D+0AX-Inj:+201", b"501 5.5.4 "),
        (b"MAIL FROM:<carol@remote.test> ENVID=a+00", b"501 5.5.4 "),
        (b"MAIL FROM:<carol@remote.test> SIZE=1\rX-Inj=1", b"501 5.5.4 "),
    ],
)
def test_hostile_sender_fields_are_refused_and_never_stored(
    server: ServerHandle, logs: pytest.LogCaptureFixture, hostile: bytes, reply: bytes
) -> None:
    conn = Conn(server.ports["smtp"]).greet()
    assert conn.cmd(hostile).startswith(reply)
    _send_honest(conn)
    conn.close()
    assert _stored_for_alice(server).keys() == DELIVERED_HEADERS
    _assert_log_lines_clean(logs)


@pytest.mark.parametrize(
    ("hostile", "reply"),
    [
        (b"RCPT TO:<alice@example.test\rX-Inj: 1>", b"501 5.1.3 "),
        (b"RCPT TO:<alice\x00@example.test>", b"501 5.1.3 "),
        ("RCPT TO:<alice\u0085@example.test>".encode(), b"501 5.1.3 "),
        (b"RCPT TO:<alice@example.test> ORCPT=rfc822;a+0D+0AX-Inj:+201", b"501 5.5.4 "),
        (b"RCPT TO:<alice@example.test> ORCPT=rfc822;a+00", b"501 5.5.4 "),
    ],
)
def test_hostile_recipient_fields_are_refused_and_never_stored(
    server: ServerHandle, logs: pytest.LogCaptureFixture, hostile: bytes, reply: bytes
) -> None:
    conn = Conn(server.ports["smtp"]).greet()
    assert conn.cmd(b"MAIL FROM:<carol@remote.test> SMTPUTF8").startswith(b"250 ")
    assert conn.cmd(hostile).startswith(reply)
    assert conn.cmd(b"RSET") == b"250 2.0.0 OK"
    _send_honest(conn)
    conn.close()
    stored = _stored_for_alice(server)
    assert stored.keys() == DELIVERED_HEADERS
    assert stored["Return-Path"] == "<carol@remote.test>"
    assert stored["Delivered-To"] == "alice@example.test"
    _assert_log_lines_clean(logs)


# --------------------------------------------------------------------------- outbound


def _submissions(server: ServerHandle) -> Conn:
    """A session on the implicit-TLS submission port, logged in as alice."""
    conn = Conn(server.ports["submissions"])
    conn.sock = client_tls_context().wrap_socket(conn.sock)
    assert conn.reply().startswith(b"220 ")
    assert conn.cmd(b"EHLO laptop\x00X-Inj: 1") == BAD_EHLO
    assert conn.cmd(b"EHLO laptop").startswith(b"250-")
    plain = base64.b64encode(b"\x00alice@example.test\x00alice-pw")
    assert conn.cmd(b"AUTH PLAIN " + plain) == b"235 2.7.0 Authentication successful"
    return conn


def _submit_hostile_then_honest(conn: Conn, recipient: bytes) -> None:
    # C: MAIL FROM:<alice@example.test> ENVID=a+0D+0AX-Inj:+201   S: 501 5.5.4 …
    hostile_envid = b"MAIL FROM:<alice@example.test> ENVID=a+0D+0AX-Inj:+201"
    assert conn.cmd(hostile_envid) == b"501 5.5.4 Bad xtext encoding"
    assert conn.cmd(b"MAIL FROM:<alice@example.test> ENVID=env+2B1").startswith(b"250 ")
    hostile_orcpt = b"RCPT TO:<" + recipient + b"> ORCPT=rfc822;b+0D+0AX-Inj:+201"
    assert conn.cmd(hostile_orcpt) == b"501 5.5.4 Bad xtext encoding"
    assert conn.cmd(b"RCPT TO:<" + recipient + b"\rX-Inj: 1>").startswith(b"501 5.1.3 ")
    honest = b"RCPT TO:<" + recipient + b"> NOTIFY=FAILURE ORCPT=rfc822;" + recipient
    assert conn.cmd(honest).startswith(b"250 ")
    assert conn.cmd(b"DATA").startswith(b"354 ")
    reply = conn.cmd(b"From: alice@example.test\r\nSubject: out\r\n\r\nbody\r\n.")
    assert reply.startswith(b"250 2.0.0 Ok: queued as ")


def test_queued_outbound_mail_carries_no_injected_header(
    fast_server: ServerHandle, logs: pytest.LogCaptureFixture
) -> None:
    conn = _submissions(fast_server)
    _submit_hostile_then_honest(conn, b"bob@remote.test")
    conn.close()
    with Queue(fast_server.config.data_dir) as queue:
        (queued,) = queue.list()
        raw = queue.open_message(queued.id)
    assert queued.envid == "env+1"
    assert [(r.address, r.orcpt) for r in queued.recipients] == [
        ("bob@remote.test", "rfc822;bob@remote.test")
    ]
    assert b"X-Inj" not in raw and b"\x00" not in raw
    queued_message = _parse(raw)
    assert queued_message.keys() == ["Received", "From", "Subject"]
    assert queued_message["Received"].startswith("from laptop ([127.0.0.1])")
    _assert_log_lines_clean(logs)


def _wait_for(condition: Callable[[], object], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def _blocks(part: Message) -> list[list[str]]:
    """The field names of each block of a message/delivery-status part."""
    payload = part.get_payload()
    assert isinstance(payload, list)
    return [block.keys() for block in payload if isinstance(block, Message)]


def test_dsn_of_a_bounce_carries_no_injected_header(
    tmp_path: Path, logs: pytest.LogCaptureFixture
) -> None:
    # nullmx.test says it takes no mail (RFC 7505): the bounce comes at once.
    with DNSServer({"nullmx.test": {"MX": [(0, ".")]}}) as (host, port):
        config = load_config(write_config(tmp_path, delivery=f'dns_servers = ["{host}:{port}"]'))
        with running_config(config, limits=FAST_AUTH, outbound=True) as server:
            conn = _submissions(server)
            _submit_hostile_then_honest(conn, b"bob@nullmx.test")
            conn.close()
            _wait_for(lambda: server.new_messages("alice@example.test"))
            (raw,) = server.new_messages("alice@example.test")
    assert b"X-Inj" not in raw and b"\x00" not in raw
    dsn = _parse(raw)
    assert dsn.keys() == [
        "Return-Path",
        "Delivered-To",
        "From",
        "To",
        "Subject",
        "Date",
        "Message-ID",
        "Auto-Submitted",
        "MIME-Version",
        "Content-Type",
    ]
    payload = dsn.get_payload()
    assert isinstance(payload, list)
    _human, status, original = payload
    assert isinstance(status, Message) and isinstance(original, Message)
    assert _blocks(status) == [
        [
            "Original-Envelope-Id",
            "Reporting-MTA",
            "X-Mailstead-Queue-ID",
            "X-Mailstead-Sender",
            "Arrival-Date",
        ],
        [
            "Original-Recipient",
            "Final-Recipient",
            "Action",
            "Status",
            "Diagnostic-Code",
            "Last-Attempt-Date",
        ],
    ]
    blocks = status.get_payload()
    assert isinstance(blocks, list)
    per_message, rcpt = blocks
    assert per_message["Original-Envelope-Id"] == "env+1"
    assert rcpt["Original-Recipient"] == "rfc822; bob@nullmx.test"
    returned = original.get_payload()
    returned_message = returned[0] if isinstance(returned, list) else None
    assert isinstance(returned_message, Message)
    assert returned_message.keys() == ["Received", "From", "Subject"]
    assert returned_message["Received"].startswith("from laptop ([127.0.0.1])")
    _assert_log_lines_clean(logs)


# --------------------------------------------------------------------------- user names


def test_user_names_reach_log_lines_escaped(
    fast_server: ServerHandle, logs: pytest.LogCaptureFixture
) -> None:
    # SMTP AUTH: a control character in a user name is refused (RFC 4013 §2.3) …
    conn = Conn(fast_server.ports["submissions"])
    conn.sock = client_tls_context().wrap_socket(conn.sock)
    assert conn.reply().startswith(b"220 ")
    assert conn.cmd(b"EHLO laptop").startswith(b"250-")
    evil = base64.b64encode(b"\x00alice\r\nX-Inj: 1\x00pw")
    assert conn.cmd(b"AUTH PLAIN " + evil) == (
        b"501 5.5.2 Control characters are not allowed in a user name"
    )
    # … and a name that is merely odd (a bidi override) is logged escaped.
    odd = base64.b64encode("\x00ali\u202ece\x00pw".encode())
    assert conn.cmd(b"AUTH PLAIN " + odd) == b"535 5.7.8 Authentication credentials invalid"
    conn.close()

    # IMAP LOGIN: a literal may hold CR LF (RFC 9051 §4.3).
    raw = socket.create_connection(("127.0.0.1", fast_server.ports["imaps"]), timeout=10)
    with client_tls_context().wrap_socket(raw) as imap:
        reader = imap.makefile("rb")
        assert reader.readline().startswith(b"* OK")
        user = b"alice\r\nX-Inj: 1"
        imap.sendall(b"a1 LOGIN {%d}\r\n" % len(user))
        assert reader.readline().startswith(b"+")
        imap.sendall(user + b" wrong\r\n")
        assert reader.readline().startswith(b"a1 NO ")

    # POP3 USER: the line may hold ESC and NUL.
    raw = socket.create_connection(("127.0.0.1", fast_server.ports["pop3s"]), timeout=10)
    with client_tls_context().wrap_socket(raw) as pop:
        reader = pop.makefile("rb")
        assert reader.readline().startswith(b"+OK")
        pop.sendall(b"USER alice\x1b[2J\x00\r\n")
        assert reader.readline().startswith(b"+OK")
        pop.sendall(b"PASS wrong\r\n")
        assert reader.readline().startswith(b"-ERR")

    # Each name that was checked is in a log line, escaped, never raw.
    logins = " | ".join(r.getMessage() for r in logs.records if "login" in r.getMessage())
    assert "ali\\u202ece" in logins
    assert "alice\\r\\nX-Inj: 1" in logins
    assert "alice\\x1b[2J\\x00" in logins
    _assert_log_lines_clean(logs)
