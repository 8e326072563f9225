"""SORT, THREAD, OBJECTID and PREVIEW with real clients: IMAPClient and imaplib.

The server runs on 127.0.0.1 (harness.py); the messages go in by APPEND
into a folder of their own, so their UIDs are 1 to 4.
"""

from __future__ import annotations

import contextlib
import imaplib
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from imapclient import IMAPClient

from tests.e2e.harness import ServerHandle, client_tls_context

ALICE = ("alice@example.test", "alice-pw")
TIMEOUT = 10
FOLDER = "Sorting"

MAIL = (
    b"From: Zed <zed@example.test>\r\nSubject: Re: plans\r\nMessage-ID: <2@x.test>\r\n"
    b"In-Reply-To: <1@x.test>\r\nDate: Tue, 2 Jan 2024 10:00:00 +0000\r\n\r\nSounds good.\r\n",
    b"From: amy@example.test\r\nSubject: plans\r\nMessage-ID: <1@x.test>\r\n"
    b"Date: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\nShall we meet?\r\n",
    b"From: Bob <bob@example.test>\r\nSubject: [team] budget\r\nMessage-ID: <3@x.test>\r\n"
    b"Date: Wed, 3 Jan 2024 10:00:00 +0000\r\n\r\nNumbers attached.\r\n",
    b"From: carl@example.test\r\nSubject: Re: plans\r\nMessage-ID: <4@x.test>\r\n"
    b"References: <1@x.test> <2@x.test>\r\nDate: Thu, 4 Jan 2024 10:00:00 +0000\r\n\r\nMe too.\r\n",
)


@pytest.fixture
def alice(server: ServerHandle) -> Iterator[IMAPClient]:
    client = IMAPClient(
        "127.0.0.1",
        server.ports["imaps"],
        ssl=True,
        ssl_context=client_tls_context(),
        timeout=TIMEOUT,
    )
    client.login(*ALICE)
    client.create_folder(FOLDER)
    for i, message in enumerate(MAIL):
        client.append(FOLDER, message, msg_time=datetime(2024, 2, 1 + i, tzinfo=UTC))
    yield client
    with contextlib.suppress(OSError, imaplib.IMAP4.error):
        client.logout()


def test_imapclient_sort_thread_and_objectid(alice: IMAPClient) -> None:
    caps = alice.capabilities()
    for word in (b"SORT", b"SORT=DISPLAY", b"ESORT", b"THREAD=REFERENCES", b"OBJECTID", b"PREVIEW"):
        assert word in caps
    alice.select_folder(FOLDER)
    assert alice.sort(["SUBJECT"]) == [3, 1, 2, 4]  # budget, then "plans" by number
    assert alice.sort(["REVERSE", "DATE"]) == [4, 3, 1, 2]
    assert alice.sort(["FROM"], ["NOT", "FROM", "zed"]) == [2, 3, 4]
    assert alice.sort(["DISPLAYFROM"]) == [2, 3, 4, 1]  # amy@, Bob, carl@, Zed
    assert alice.thread("REFERENCES") == ((2, 1, 4), (3,))
    assert alice.thread("ORDEREDSUBJECT") == ((2, (1,), (4,)), (3,))
    fetched = alice.fetch([1, 2], ["EMAILID", "THREADID", "PREVIEW"])
    assert fetched[1][b"PREVIEW"] == b"Sounds good."
    assert fetched[1][b"THREADID"] == fetched[2][b"THREADID"]
    assert fetched[1][b"EMAILID"] != fetched[2][b"EMAILID"]
    status = alice.folder_status(FOLDER, ["MAILBOXID", "MESSAGES"])
    assert status[b"MESSAGES"] == 4 and status[b"MAILBOXID"]


def test_imaplib_sort_and_thread(server: ServerHandle, alice: IMAPClient) -> None:
    with imaplib.IMAP4_SSL(
        "127.0.0.1", server.ports["imaps"], ssl_context=client_tls_context(), timeout=TIMEOUT
    ) as imap:
        imap.login(*ALICE)
        imap.select(FOLDER)
        assert imap.sort("(DATE)", "UTF-8", "ALL") == ("OK", [b"2 1 3 4"])
        assert imap.uid("SORT", "(REVERSE SUBJECT)", "UTF-8", "ALL") == ("OK", [b"1 2 4 3"])
        assert imap.thread("REFERENCES", "UTF-8", "ALL") == ("OK", [b"(2 1 4)(3)"])
        # imaplib.sort would put RETURN inside the criteria's parentheses.
        typ, _ = imap.xatom("SORT", "RETURN (MIN MAX COUNT) (DATE) UTF-8 ALL")
        assert typ == "OK"
        typ, data = imap.response("ESEARCH")
        assert data and b"MIN 2 MAX 4 COUNT 4" in data[-1]
