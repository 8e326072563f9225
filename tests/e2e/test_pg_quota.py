"""Quota at RCPT and DATA, the same on both backends: smtplib meets 452 4.2.2.

With ``[storage] backend = "postgresql"`` the usage is summed in the
cluster database (``PgMailStore.usage``), so a node counts mail any node
delivered: here the message that fills the mailbox goes to node A and the
refusal comes from node B.
"""

from __future__ import annotations

import imaplib
import smtplib
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from mailstead.directory import Quota, open_directory
from tests.e2e.harness import ServerHandle, client_tls_context, running_server

ALICE = "alice@example.test"
TIMEOUT = 10


@pytest.fixture(params=["sqlite", "postgresql"])
def nodes(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[ServerHandle, ...]]:
    """Two nodes on one database, or (SQLite) one server playing both."""
    with ExitStack() as stack:
        if request.param == "sqlite":
            one = stack.enter_context(running_server(tmp_path))
            yield one, one
            return
        dsn = request.getfixturevalue("pg_dsn")
        handles = []
        for name in ("a", "b"):
            (tmp_path / name).mkdir()
            handles.append(stack.enter_context(running_server(tmp_path / name, dsn=dsn)))
        yield tuple(handles)


def set_quota(server: ServerHandle, address: str, quota: Quota) -> None:
    directory = open_directory(server.config)
    try:
        directory.set_quota(address, quota)
    finally:
        directory.close()


def message(subject: str, size: int = 0) -> str:
    return f"From: carol@remote.test\r\nSubject: {subject}\r\n\r\n{'x' * size}\r\n"


def inbox_count(server: ServerHandle) -> int:
    with imaplib.IMAP4_SSL(
        "127.0.0.1", server.ports["imaps"], ssl_context=client_tls_context(), timeout=TIMEOUT
    ) as client:
        client.login(ALICE, "alice-pw")
        typ, data = client.select("INBOX", readonly=True)
        assert typ == "OK", data
        return int(data[0] or b"0")


def test_an_over_quota_recipient_gets_452_at_rcpt_and_at_data(
    nodes: tuple[ServerHandle, ServerHandle],
) -> None:
    a, b = nodes
    set_quota(a, ALICE, Quota(storage=4000, messages=2))
    with smtplib.SMTP("127.0.0.1", b.ports["smtp"], timeout=TIMEOUT) as smtp:
        # C: DATA of 5000 octets -> S: 452 4.2.2 (too big for what is left)
        smtp.ehlo()
        smtp.mail("carol@remote.test")
        assert smtp.rcpt(ALICE)[0] == 250
        assert smtp.data(message("huge", 5000)) == (452, b"4.2.2 Mailbox full")
    with smtplib.SMTP("127.0.0.1", a.ports["smtp"], timeout=TIMEOUT) as smtp:
        smtp.sendmail("carol@remote.test", [ALICE], message("one"))
        smtp.sendmail("carol@remote.test", [ALICE], message("two"))
    with smtplib.SMTP("127.0.0.1", b.ports["smtp"], timeout=TIMEOUT) as smtp:
        # Two messages of two, delivered by the other node: full before DATA.
        smtp.ehlo()
        smtp.mail("carol@remote.test")
        assert smtp.rcpt(ALICE) == (452, b"4.2.2 Mailbox full")
        smtp.rset()
        # The administrator raises the limit: the retry gets through.
        set_quota(a, ALICE, Quota(storage=4000, messages=3))
        smtp.sendmail("carol@remote.test", [ALICE], message("three"))
    assert inbox_count(b) == 3
