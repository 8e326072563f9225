"""Real IMAP clients against the running server: imaplib, IMAPClient and aioimaplib.

The server runs on 127.0.0.1 (harness.py); login needs TLS, so the clients
use STARTTLS on the imap port or implicit TLS on imaps. Mail arrives the way
it does in production: over SMTP into the Maildir.
"""

from __future__ import annotations

import asyncio
import contextlib
import imaplib
import smtplib
import time
from collections.abc import Iterator
from pathlib import Path

import aioimaplib
import pytest
from imapclient import IMAPClient

from mailstead.config import load_config
from mailstead.limits import IMAPLimits
from tests.e2e.harness import (
    ServerHandle,
    client_tls_context,
    running_config,
    write_config,
)

ALICE = ("alice@example.test", "alice-pw")
TIMEOUT = 10


def send(handle: ServerHandle, subject: str, to: str = "alice@example.test") -> None:
    with smtplib.SMTP("127.0.0.1", handle.ports["smtp"], timeout=TIMEOUT) as smtp:
        smtp.sendmail(
            "sender@other.example",
            [to],
            f"From: sender@other.example\r\nTo: {to}\r\nSubject: {subject}\r\n\r\nHello.\r\n",
        )


def imapclient(handle: ServerHandle) -> IMAPClient:
    client = IMAPClient(
        "127.0.0.1",
        handle.ports["imaps"],
        ssl=True,
        ssl_context=client_tls_context(),
        timeout=TIMEOUT,
    )
    client.login(*ALICE)
    return client


@pytest.fixture
def alice(server: ServerHandle) -> Iterator[IMAPClient]:
    client = imapclient(server)
    yield client
    with contextlib.suppress(OSError, imaplib.IMAP4.error):
        client.logout()


# -- imaplib -----------------------------------------------------------------------


def test_imaplib_starttls_login_and_read(server: ServerHandle) -> None:
    send(server, "over smtp")
    with imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=TIMEOUT) as imap:
        assert "LOGINDISABLED" in imap.capabilities
        with pytest.raises(imaplib.IMAP4.error):
            imap.login(*ALICE)
        imap.starttls(client_tls_context())
        assert "LOGINDISABLED" not in imap.capabilities
        assert imap.login(*ALICE)[0] == "OK"
        typ, listing = imap.list()
        assert typ == "OK"
        names = {line.decode().rsplit(" ", 1)[-1].strip('"') for line in listing if line}
        assert {"INBOX", "Drafts", "Sent", "Trash", "Junk", "Archive"} <= names
        assert imap.select("INBOX") == ("OK", [b"1"])
        typ, data = imap.fetch("1", "(UID FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert typ == "OK"
        # imaplib speaks IMAP4rev1: the first session to select sees \Recent.
        assert data[0][0].startswith(b"1 (UID 1 FLAGS (\\Recent) BODY[HEADER.FIELDS (SUBJECT)] {")
        assert data[0][1] == b"Subject: over smtp\r\n\r\n"
        assert imap.search(None, "SUBJECT", '"over smtp"') == ("OK", [b"1"])
        assert imap.store("1", "+FLAGS", "(\\Flagged)")[0] == "OK"
        typ, data = imap.uid("COPY", "1", "Archive")
        assert typ == "OK"
        typ, data = imap.uid("MOVE", "1", "Trash")
        assert typ == "OK"
        assert imap.status("Trash", "(MESSAGES)") == ("OK", [b'"Trash" (MESSAGES 1)'])
        assert imap.status("Archive", "(MESSAGES)") == ("OK", [b'"Archive" (MESSAGES 1)'])
        imap.close()


def test_imaplib_over_implicit_tls(server: ServerHandle) -> None:
    with imaplib.IMAP4_SSL(
        "127.0.0.1", server.ports["imaps"], ssl_context=client_tls_context(), timeout=TIMEOUT
    ) as imap:
        assert "AUTH=PLAIN" in imap.capabilities
        assert imap.login(*ALICE)[0] == "OK"
        typ, data = imap.append("Drafts", "(\\Draft)", None, b"Subject: draft\r\n\r\nbody\r\n")
        assert typ == "OK" and data[0].startswith(b"[APPENDUID ")
        assert imap.select("Drafts", readonly=True)[0] == "OK"
        typ, data = imap.fetch("1", "(FLAGS RFC822.SIZE)")
        # EXAMINE sees the appended message as \Recent (RFC 3501 §2.3.2).
        assert data == [b"1 (FLAGS (\\Draft \\Recent) RFC822.SIZE 24)"]
        assert imap.store("1", "+FLAGS", "(\\Seen)")[0] == "NO"


def test_imaplib_authenticate_plain(server: ServerHandle) -> None:
    with imaplib.IMAP4_SSL(
        "127.0.0.1", server.ports["imaps"], ssl_context=client_tls_context(), timeout=TIMEOUT
    ) as imap:
        typ, _ = imap.authenticate("PLAIN", lambda _: b"\0alice@example.test\0alice-pw")
        assert typ == "OK"
        assert imap.state == "AUTH"


def test_wrong_password_is_refused_slowly(server: ServerHandle) -> None:
    with imaplib.IMAP4_SSL(
        "127.0.0.1", server.ports["imaps"], ssl_context=client_tls_context(), timeout=TIMEOUT
    ) as imap:
        started = time.monotonic()
        with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
            imap.login("alice@example.test", "wrong")
        assert time.monotonic() - started >= 0.9


# -- IMAPClient ----------------------------------------------------------------------


def test_imapclient_fetch_search_flags_append_move(server: ServerHandle, alice: IMAPClient) -> None:
    send(server, "first")
    send(server, "second")
    info = alice.select_folder("INBOX")
    assert info[b"EXISTS"] == 2
    assert alice.search(["SUBJECT", "second"]) == [2]
    data = alice.fetch([1, 2], ["ENVELOPE", "FLAGS", "RFC822.SIZE"])
    assert [data[uid][b"ENVELOPE"].subject for uid in (1, 2)] == [b"first", b"second"]
    # IMAPClient speaks IMAP4rev1: its session took the messages as \Recent.
    assert alice.add_flags([1], [b"\\Seen", b"$Work"])[1] == (b"$Work", b"\\Seen", b"\\Recent")
    assert alice.get_flags([1]) == {1: (b"$Work", b"\\Seen", b"\\Recent")}
    assert alice.search(["UNSEEN"]) == [2]
    assert alice.remove_flags([1], [b"$Work"]) == {1: (b"\\Seen", b"\\Recent")}
    uid = alice.append("Sent", b"Subject: sent\r\n\r\nx\r\n", flags=[b"\\Seen"])
    assert uid.startswith(b"[APPENDUID ")
    alice.move([2], "Archive")
    assert alice.search(["ALL"]) == [1]
    assert alice.folder_status("Archive", [b"MESSAGES", b"UIDNEXT"]) == {
        b"MESSAGES": 1,
        b"UIDNEXT": 2,
    }
    alice.delete_messages([1])
    alice.expunge()
    assert alice.search(["ALL"]) == []


def test_smtp_delivery_reaches_an_idle_client_within_a_second(
    server: ServerHandle, alice: IMAPClient
) -> None:
    alice.select_folder("INBOX")
    alice.idle()
    try:
        started = time.monotonic()
        send(server, "while idling")
        responses = alice.idle_check(timeout=5)
        elapsed = time.monotonic() - started
    finally:
        alice.idle_done()
    assert (1, b"EXISTS") in responses
    assert elapsed < 1.5, f"EXISTS took {elapsed:.2f}s"


def test_two_clients_see_each_others_flag_changes(server: ServerHandle) -> None:
    send(server, "shared")
    one, two = imapclient(server), imapclient(server)
    try:
        one.select_folder("INBOX")
        two.select_folder("INBOX")
        one.add_flags([1], [b"\\Flagged"])
        assert (1, b"FETCH", (b"UID", 1, b"FLAGS", (b"\\Flagged",))) in two.noop()[1]
        two.idle()
        one.add_flags([1], [b"\\Answered"])
        responses = two.idle_check(timeout=5)
        two.idle_done()
        assert any(r[:2] == (1, b"FETCH") for r in responses), responses
        assert two.get_flags([1]) == {1: (b"\\Answered", b"\\Flagged")}
        # An expunge by one reaches the other at its next NOOP.
        one.delete_messages([1])
        one.expunge()
        assert (1, b"EXPUNGE") in two.noop()[1]
    finally:
        one.logout()
        two.logout()


def test_idle_timeout_logs_the_client_out(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path))
    with running_config(config, imap_limits=IMAPLimits(idle_timeout=0.5)) as handle:
        client = imapclient(handle)
        client.select_folder("INBOX")
        client.idle()
        started = time.monotonic()
        responses = client.idle_check(timeout=5)
        elapsed = time.monotonic() - started
        assert responses == [(b"BYE", b"Autologout;", b"idle", b"for", b"too", b"long")]
        assert 0.3 < elapsed < 2.0
        with pytest.raises(imaplib.IMAP4.abort):
            client.idle_done()


# -- aioimaplib --------------------------------------------------------------------------


def test_aioimaplib_login_select_fetch_idle(server: ServerHandle) -> None:
    send(server, "for asyncio")

    async def session() -> float:
        client = aioimaplib.IMAP4_SSL(
            "127.0.0.1", server.ports["imaps"], ssl_context=client_tls_context(), timeout=TIMEOUT
        )
        await client.wait_hello_from_server()
        assert (await client.login(*ALICE)).result == "OK"
        assert (await client.select("INBOX")).result == "OK"
        fetched = await client.fetch("1", "(UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert fetched.result == "OK"
        assert any(
            b"Subject: for asyncio" in line
            for line in fetched.lines
            if isinstance(line, (bytes, bytearray))
        )
        idle = await client.idle_start(timeout=5)
        await asyncio.sleep(0.1)
        started = time.monotonic()
        await asyncio.get_running_loop().run_in_executor(None, send, server, "during idle")
        pushed = await client.wait_server_push(timeout=5)
        elapsed = time.monotonic() - started
        client.idle_done()
        await asyncio.wait_for(idle, 5)
        assert any(
            b"2 EXISTS" in line for line in pushed if isinstance(line, (bytes, bytearray))
        ), pushed
        await client.logout()
        return elapsed

    elapsed = asyncio.run(session())
    assert elapsed < 1.5
