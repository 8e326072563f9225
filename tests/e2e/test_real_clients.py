"""Real SMTP clients against the running server: swaks, msmtp and aiosmtplib.

These are the programs people point at a mail server: swaks (the SMTP test
tool), msmtp (a sendmail replacement for MUAs and cron) and aiosmtplib
(the asyncio library applications use). Each test checks the client's exit
status or result *and* the files the server wrote.
"""

from __future__ import annotations

import asyncio
import subprocess
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import pytest

from tests.e2e.harness import ServerHandle, client_tls_context
from tests.tools import require

# Seconds before a client that got no answer gives up (a delivery takes far less).
CLIENT_TIMEOUT = 10

# --------------------------------------------------------------------------- swaks


def _swaks(*args: str) -> subprocess.CompletedProcess[str]:
    swaks = require("swaks")
    try:
        return subprocess.run(
            [swaks, "--helo", "client.remote.test", *args],
            capture_output=True,
            text=True,
            timeout=2 * CLIENT_TIMEOUT,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"swaks got no answer within {exc.timeout}s:\n{exc.stdout!r}")


def _queued(server: ServerHandle) -> list[bytes]:
    queue = server.config.data_dir / "queue" / "msg"
    if not queue.exists():
        return []
    return [p.read_bytes() for p in sorted(queue.iterdir())]


def test_swaks_plain_to_mta(server: ServerHandle) -> None:
    result = _swaks(
        "--server",
        f"127.0.0.1:{server.ports['smtp']}",
        "--from",
        "carol@remote.test",
        "--to",
        "alice@example.test",
        "--header",
        "Subject: swaks plain",
        "--body",
        "hello from swaks",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "<-  250 2.0.0 Ok: queued as" in result.stdout
    (stored,) = server.new_messages("alice@example.test")
    assert stored.startswith(b"Return-Path: <carol@remote.test>\n")
    assert b"Subject: swaks plain\n" in stored
    assert b"\nhello from swaks\n" in stored
    assert b"with ESMTP id" in stored


def test_swaks_pipelining(server: ServerHandle) -> None:
    result = _swaks(
        "--server",
        f"127.0.0.1:{server.ports['smtp']}",
        "--from",
        "carol@remote.test",
        "--to",
        "alice@example.test,bob@example.test",
        "--pipeline",
        "--header",
        "Subject: pipelined",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # swaks really pipelined: all three commands went out before any reply.
    transcript = result.stdout
    assert transcript.index(" -> DATA") < transcript.index("<-  250 2.1.0 Sender OK")
    assert len(server.new_messages("alice@example.test")) == 1
    assert len(server.new_messages("bob@example.test")) == 1


def test_swaks_dot_stuffing_round_trip(server: ServerHandle, tmp_path: Path) -> None:
    data = tmp_path / "message.eml"
    data.write_bytes(
        b"From: carol@remote.test\r\nSubject: dots\r\n\r\n.\r\n..\r\n.hidden\r\nlast\r\n"
    )
    result = _swaks(
        "--server",
        f"127.0.0.1:{server.ports['smtp']}",
        "--from",
        "carol@remote.test",
        "--to",
        "alice@example.test",
        "--data",
        str(data),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (stored,) = server.new_messages("alice@example.test")
    # swaks ends the data with its own CRLF before the dot, hence "last\n\n".
    assert b"Subject: dots\n\n.\n..\n.hidden\nlast\n" in stored


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_swaks_starttls_auth_on_submission(server: ServerHandle, mechanism: str) -> None:
    result = _swaks(
        "--server",
        f"127.0.0.1:{server.ports['submission']}",
        "--tls",
        "--auth",
        mechanism,
        "--auth-user",
        "alice@example.test",
        "--auth-password",
        "alice-pw",
        "--from",
        "alice@example.test",
        "--to",
        "bob@example.test",
        "--header",
        f"Subject: auth {mechanism}",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "=== TLS started" in result.stdout
    assert "235 2.7.0 Authentication successful" in result.stdout
    (stored,) = server.new_messages("bob@example.test")
    assert f"Subject: auth {mechanism}\n".encode() in stored
    assert b"with ESMTPSA id" in stored


def test_swaks_implicit_tls_on_submissions(server: ServerHandle) -> None:
    result = _swaks(
        "--server",
        f"127.0.0.1:{server.ports['submissions']}",
        "--tlsc",
        "--auth",
        "PLAIN",
        "--auth-user",
        "bob@example.test",
        "--auth-password",
        "bob-pw",
        "--from",
        "bob@example.test",
        "--to",
        "alice@example.test,friend@remote.test",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # TLS came first, before the banner.
    assert result.stdout.index("=== TLS started") < result.stdout.index("220 mx.example.test")
    (stored,) = server.new_messages("alice@example.test")
    assert b"with ESMTPSA id" in stored
    (queued,) = _queued(server)
    assert b"with ESMTPSA id" in queued


def test_swaks_auth_refused_without_tls(server: ServerHandle) -> None:
    result = _swaks(
        "--server",
        f"127.0.0.1:{server.ports['submission']}",
        "--auth",
        "PLAIN",
        "--auth-user",
        "alice@example.test",
        "--auth-password",
        "alice-pw",
        "--from",
        "alice@example.test",
        "--to",
        "bob@example.test",
    )
    assert result.returncode != 0
    assert "AUTH PLAIN" not in result.stdout  # the password never went out in the clear
    assert server.new_messages("bob@example.test") == []


def test_swaks_wrong_password(server: ServerHandle) -> None:
    result = _swaks(
        "--server",
        f"127.0.0.1:{server.ports['submission']}",
        "--tls",
        "--auth",
        "PLAIN",
        "--auth-user",
        "alice@example.test",
        "--auth-password",
        "not-her-password",
        "--from",
        "alice@example.test",
        "--to",
        "bob@example.test",
    )
    assert result.returncode != 0
    assert "535 5.7.8" in result.stdout
    assert server.new_messages("bob@example.test") == []


def test_swaks_unknown_user_gets_550(server: ServerHandle) -> None:
    result = _swaks(
        "--server",
        f"127.0.0.1:{server.ports['smtp']}",
        "--from",
        "carol@remote.test",
        "--to",
        "nobody@example.test",
    )
    assert result.returncode != 0
    assert "550 5.1.1" in result.stdout
    assert list(server.mail_root.glob("*/*/Maildir/new/*")) == []


def test_swaks_relay_attempt_refused(server: ServerHandle) -> None:
    result = _swaks(
        "--server",
        f"127.0.0.1:{server.ports['smtp']}",
        "--from",
        "spammer@remote.test",
        "--to",
        "victim@elsewhere.test",
    )
    assert result.returncode != 0
    assert "554 5.7.1" in result.stdout
    assert _queued(server) == []
    assert list(server.mail_root.glob("*/*/Maildir/new/*")) == []


def test_swaks_opportunistic_starttls_on_mta(server: ServerHandle) -> None:
    result = _swaks(
        "--server",
        f"127.0.0.1:{server.ports['smtp']}",
        "--tls",
        "--from",
        "carol@remote.test",
        "--to",
        "alice@example.test",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (stored,) = server.new_messages("alice@example.test")
    assert b"with ESMTPS id" in stored


# --------------------------------------------------------------------------- msmtp


def _msmtprc(tmp_path: Path, server: ServerHandle, password: str = "alice-pw") -> Path:
    rc = tmp_path / "msmtprc"
    rc.write_text(
        "defaults\n"
        "auth on\n"
        "tls on\n"
        "tls_certcheck off\n"
        "user alice@example.test\n"
        f"password {password}\n"
        "from alice@example.test\n"
        "domain client.example.test\n"
        "syslog off\n"
        "\n"
        "account starttls\n"
        "host 127.0.0.1\n"
        f"port {server.ports['submission']}\n"
        "tls_starttls on\n"
        "\n"
        "account implicit\n"
        "host 127.0.0.1\n"
        f"port {server.ports['submissions']}\n"
        "tls_starttls off\n"
    )
    rc.chmod(0o600)  # msmtp refuses a readable file that holds a password
    return rc


def _msmtp(
    rc: Path, account: str, *recipients: str, subject: str
) -> subprocess.CompletedProcess[bytes]:
    msmtp = require("msmtp")
    message = (
        f"From: alice@example.test\nTo: {', '.join(recipients)}\nSubject: {subject}\n\n"
        "Sent by msmtp.\n.\n..dots\n"
    ).encode()
    try:
        return subprocess.run(
            [msmtp, "-C", str(rc), "-a", account, *recipients],
            input=message,
            capture_output=True,
            timeout=CLIENT_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"msmtp ({account}) got no answer within {CLIENT_TIMEOUT}s")


@pytest.mark.parametrize("account", ["starttls", "implicit"])
def test_msmtp_delivers_locally(server: ServerHandle, tmp_path: Path, account: str) -> None:
    result = _msmtp(_msmtprc(tmp_path, server), account, "bob@example.test", subject=account)
    assert result.returncode == 0, result.stderr
    (stored,) = server.new_messages("bob@example.test")
    assert stored.startswith(b"Return-Path: <alice@example.test>\nDelivered-To: bob@example.test\n")
    assert f"Subject: {account}\n".encode() in stored
    assert stored.endswith(b"\n\nSent by msmtp.\n.\n..dots\n")
    assert b"with ESMTPSA id" in stored


def test_msmtp_remote_recipient_is_queued(server: ServerHandle, tmp_path: Path) -> None:
    result = _msmtp(
        _msmtprc(tmp_path, server), "implicit", "friend@remote.test", subject="outbound"
    )
    assert result.returncode == 0, result.stderr
    (queued,) = _queued(server)
    assert b"Subject: outbound\r\n" in queued
    assert list(server.mail_root.glob("*/*/Maildir/new/*")) == []


def test_msmtp_wrong_password_fails(server: ServerHandle, tmp_path: Path) -> None:
    rc = _msmtprc(tmp_path, server, password="wrong")
    result = _msmtp(rc, "implicit", "bob@example.test", subject="nope")
    assert result.returncode != 0
    assert b"535" in result.stderr or b"authentication failed" in result.stderr.lower()
    assert server.new_messages("bob@example.test") == []


# --------------------------------------------------------------------------- aiosmtplib


def _email(sender: str, to: str, subject: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, to, subject
    msg.set_content("Body from aiosmtplib.\n.leading dot\n")
    return msg


def test_aiosmtplib_starttls_login(server: ServerHandle) -> None:
    async def send() -> tuple[dict[str, object], str]:
        return await aiosmtplib.send(
            _email("alice@example.test", "bob@example.test", "aio starttls"),
            hostname="127.0.0.1",
            port=server.ports["submission"],
            start_tls=True,
            tls_context=client_tls_context(),
            username="alice@example.test",
            password="alice-pw",
            timeout=CLIENT_TIMEOUT,
        )

    errors, response = asyncio.run(send())
    assert errors == {}
    assert response.startswith("2.0.0 Ok: queued as")
    (stored,) = server.new_messages("bob@example.test")
    assert b"Subject: aio starttls\n" in stored and b"\n.leading dot\n" in stored
    assert b"with ESMTPSA id" in stored


def test_aiosmtplib_implicit_tls(server: ServerHandle) -> None:
    async def send() -> tuple[dict[str, object], str]:
        return await aiosmtplib.send(
            _email("bob@example.test", "alice@example.test", "aio implicit"),
            hostname="127.0.0.1",
            port=server.ports["submissions"],
            use_tls=True,
            tls_context=client_tls_context(),
            username="bob@example.test",
            password="bob-pw",
        )

    errors, _ = asyncio.run(send())
    assert errors == {}
    (stored,) = server.new_messages("alice@example.test")
    assert b"Subject: aio implicit\n" in stored and b"with ESMTPSA id" in stored


def test_aiosmtplib_plain_to_mta(server: ServerHandle) -> None:
    async def send() -> tuple[dict[str, object], str]:
        return await aiosmtplib.send(
            _email("carol@remote.test", "alice@example.test", "aio plain"),
            recipients=["alice@example.test", "nobody@example.test"],
            hostname="127.0.0.1",
            port=server.ports["smtp"],
            start_tls=False,
        )

    errors, _ = asyncio.run(send())
    # The unknown recipient is refused; the message still goes to the other.
    assert set(errors) == {"nobody@example.test"}
    (stored,) = server.new_messages("alice@example.test")
    assert b"Subject: aio plain\n" in stored and b"with ESMTP id" in stored


def test_aiosmtplib_submission_refuses_foreign_sender(server: ServerHandle) -> None:
    async def send() -> None:
        await aiosmtplib.send(
            _email("bob@example.test", "friend@remote.test", "forged"),
            hostname="127.0.0.1",
            port=server.ports["submissions"],
            use_tls=True,
            tls_context=client_tls_context(),
            username="alice@example.test",
            password="alice-pw",
        )

    with pytest.raises(aiosmtplib.SMTPSenderRefused) as refused:
        asyncio.run(send())
    assert refused.value.code == 553
    assert _queued(server) == []


# --------------------------------------------------------------------------- raw pipelining


async def _read_replies(reader: asyncio.StreamReader, count: int) -> list[bytes]:
    """``count`` complete replies, each as its last line."""
    replies = []
    while len(replies) < count:
        line = await asyncio.wait_for(reader.readline(), 10)
        assert line.endswith(b"\r\n"), f"connection closed after {replies}"
        if line[3:4] == b" ":
            replies.append(line.rstrip(b"\r\n"))
    return replies


def test_pipelined_transactions_in_single_writes(server: ServerHandle) -> None:
    body1 = b"Subject: one\r\n\r\nfirst\r\n..dot\r\n"
    body2 = b"Subject: two\r\n\r\nsecond\r\n"

    async def session() -> list[bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.ports["smtp"])
        replies = await _read_replies(reader, 1)
        writer.write(b"EHLO pipeline.remote.test\r\n")
        replies += await _read_replies(reader, 1)
        # RFC 2920 §3.1: a group of commands, DATA last.
        writer.write(
            b"MAIL FROM:<carol@remote.test>\r\n"
            b"RCPT TO:<alice@example.test>\r\n"
            b"RCPT TO:<nobody@example.test>\r\n"
            b"RCPT TO:<bob@example.test>\r\n"
            b"DATA\r\n"
        )
        replies += await _read_replies(reader, 5)
        # The message, its dot, and the whole next transaction in one write.
        writer.write(
            body1 + b".\r\n"
            b"MAIL FROM:<dave@remote.test>\r\n"
            b"RCPT TO:<bob@example.test>\r\n"
            b"DATA\r\n" + body2 + b".\r\nQUIT\r\n"
        )
        replies += await _read_replies(reader, 6)
        assert await asyncio.wait_for(reader.read(), 10) == b""
        writer.close()
        return replies

    replies = asyncio.run(session())
    codes = [r[:3] for r in replies]
    assert codes == [
        b"220",
        b"250",
        b"250",
        b"250",
        b"550",
        b"250",
        b"354",
        b"250",  # message one
        b"250",
        b"250",
        b"354",
        b"250",  # message two
        b"221",
    ]
    (alice,) = server.new_messages("alice@example.test")
    assert alice.endswith(b"\n\nfirst\n.dot\n")
    bob = server.new_messages("bob@example.test")
    assert len(bob) == 2
    assert {b"Subject: one" in m for m in bob} == {True, False}
