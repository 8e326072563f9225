"""QUOTA against the running server: smtplib meets 452 4.2.2, imaplib meets OVERQUOTA.

The limits are set as ``mailstead user quota`` sets them (in the directory),
while the server runs; usage is what the account's index counts, plus the
mail delivered since anybody looked (store/usage.py).
"""

from __future__ import annotations

import imaplib
import smtplib

import pytest

from mailstead.directory import Directory, Quota
from mailstead.mta.queue import Queue
from tests.e2e.harness import ServerHandle, client_tls_context

ALICE = ("alice@example.test", "alice-pw")
TIMEOUT = 10


def set_quota(server: ServerHandle, address: str, quota: Quota) -> None:
    config = server.config
    with Directory(config.db_path("directory"), config.domains) as directory:
        directory.set_quota(address, quota)


def message(subject: str, size: int = 0) -> str:
    return f"From: carol@remote.test\r\nSubject: {subject}\r\n\r\n{'x' * size}\r\n"


def imap(server: ServerHandle) -> imaplib.IMAP4_SSL:
    client = imaplib.IMAP4_SSL(
        "127.0.0.1", server.ports["imaps"], ssl_context=client_tls_context(), timeout=TIMEOUT
    )
    client.login(*ALICE)
    return client


def test_smtp_answers_452_at_rcpt_once_full_and_at_data_when_too_big(
    server: ServerHandle,
) -> None:
    set_quota(server, "alice@example.test", Quota(storage=4000, messages=2))
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=TIMEOUT) as smtp:
        # Too big for what is left: the 452 comes at the end of DATA.
        smtp.ehlo()
        smtp.mail("carol@remote.test")
        assert smtp.rcpt("alice@example.test")[0] == 250
        code, text = smtp.data(message("huge", 5000))
        assert (code, text) == (452, b"4.2.2 Mailbox full")
        smtp.sendmail("carol@remote.test", ["alice@example.test"], message("one"))
        smtp.sendmail("carol@remote.test", ["alice@example.test"], message("two"))
        # Two messages of two: full before any DATA.
        smtp.mail("carol@remote.test")
        assert smtp.rcpt("alice@example.test") == (452, b"4.2.2 Mailbox full")
        smtp.rset()
    assert len(server.new_messages("alice@example.test")) == 2
    # The administrator raises the limit: the sender's retry gets through.
    set_quota(server, "alice@example.test", Quota(storage=4000, messages=3))
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=TIMEOUT) as smtp:
        smtp.sendmail("carol@remote.test", ["alice@example.test"], message("three"))
    assert len(server.new_messages("alice@example.test")) == 3


def test_a_full_mailbox_behind_an_alias_waits_in_the_queue(server: ServerHandle) -> None:
    # team@ is alice and bob: bob gets his copy now, alice's waits for room.
    set_quota(server, "alice@example.test", Quota(messages=0))
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=TIMEOUT) as smtp:
        smtp.sendmail("carol@remote.test", ["team@example.test"], message("for the team"))
    assert len(server.new_messages("bob@example.test")) == 1
    assert server.new_messages("alice@example.test") == []
    with Queue(server.config.data_dir) as queue:
        (queued,) = queue.list()
    assert [r.address for r in queued.recipients] == ["alice@example.test"]


def test_sendmail_to_a_full_mailbox_is_refused_at_rcpt(server: ServerHandle) -> None:
    set_quota(server, "alice@example.test", Quota(messages=0))
    with (
        smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=TIMEOUT) as smtp,
        pytest.raises(smtplib.SMTPRecipientsRefused) as refused,
    ):
        smtp.sendmail("carol@remote.test", ["alice@example.test"], message("no room"))
    assert refused.value.recipients == {"alice@example.test": (452, b"4.2.2 Mailbox full")}


def test_imaplib_append_over_quota_and_getquotaroot(server: ServerHandle) -> None:
    set_quota(server, "alice@example.test", Quota(storage=1024 * 1024, messages=1))
    client = imap(server)
    try:
        assert "QUOTA" in client.capabilities
        first = message("first").encode()
        assert client.append("INBOX", None, None, first)[0] == "OK"
        typ, data = client.append("INBOX", None, None, message("second").encode())
        assert (typ, data) == ("NO", [b"[OVERQUOTA] Quota exceeded"])
        typ, data = client.getquotaroot("INBOX")
        assert typ == "OK"
        assert data == [[b'INBOX ""'], [b'"" (STORAGE 1 1024 MESSAGE 1 1)']]
        assert client.select("INBOX")[0] == "OK"
        typ, data = client.copy("1", "Trash")
        assert (typ, data) == ("NO", [b"[OVERQUOTA] Quota exceeded"])
        assert client.setquota('""', "(STORAGE 10)")[0] == "NO"
    finally:
        client.logout()
