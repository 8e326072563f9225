"""POP3 and IMAP on the same INBOX at once.

IMAP sessions do not take the POP3 maildrop lock: a POP3 deletion is, to an
IMAP client, an ordinary EXPUNGE (and a POP3 retrieval a \\Seen flag), which
an IMAP client in IDLE hears about within a second or so.
"""

from __future__ import annotations

import contextlib
import poplib
import re
import smtplib
import time
from collections.abc import Iterator

import pytest
from imapclient import IMAPClient

from tests.e2e.harness import ServerHandle, client_tls_context

ALICE = "alice@example.test"
PASSWORD = "alice-pw"


def _deliver(server: ServerHandle, *subjects: str) -> None:
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as smtp:
        for subject in subjects:
            smtp.sendmail(
                "carol@remote.test",
                [ALICE],
                f"From: carol@remote.test\r\nTo: {ALICE}\r\nSubject: {subject}\r\n\r\nhi\r\n",
            )


def _pop3(server: ServerHandle) -> poplib.POP3:
    client = poplib.POP3("127.0.0.1", server.ports["pop3"], timeout=10)
    client.stls(client_tls_context())
    client.user(ALICE)
    client.pass_(PASSWORD)
    return client


def _subjects(imap: IMAPClient) -> dict[int, str]:
    """UID -> subject of every message in the selected mailbox, by ``FETCH 1:*``.

    IMAPClient cannot filter a ``1:*`` answer, so this goes through the
    imaplib object underneath it.
    """
    typ, data = imap._imap.fetch("1:*", "(UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert typ == "OK", data
    found: dict[int, str] = {}
    for item in data:
        if not isinstance(item, tuple):
            continue
        head, header = item
        uid = re.search(rb"UID (\d+)", head)
        subject = re.search(rb"Subject: (.*?)\r?\n", header)
        assert uid is not None and subject is not None, item
        found[int(uid.group(1))] = subject.group(1).decode()
    return found


def _number_of(pop: poplib.POP3, subject: str) -> int:
    for n in range(1, pop.stat()[0] + 1):
        if f"Subject: {subject}".encode() in pop.top(n, 0)[1]:
            return n
    raise AssertionError(f"no message {subject!r}")


@pytest.fixture
def imap(server: ServerHandle) -> Iterator[IMAPClient]:
    client = IMAPClient("127.0.0.1", server.ports["imap"], ssl=False, timeout=10)
    client.starttls(client_tls_context())
    client.login(ALICE, PASSWORD)
    yield client
    client.logout()


def test_pop3_dele_reaches_an_idle_imap_client_as_expunge(
    server: ServerHandle, imap: IMAPClient
) -> None:
    _deliver(server, "keep", "drop", "read")
    imap.select_folder("INBOX")
    before = _subjects(imap)
    assert sorted(before.values()) == ["drop", "keep", "read"]
    uid_of = {subject: uid for uid, subject in before.items()}
    sequence = sorted(before).index(uid_of["drop"]) + 1

    responses: list[tuple[int | bytes, ...]] = []
    imap.idle()
    try:
        pop = _pop3(server)
        drop, read = _number_of(pop, "drop"), _number_of(pop, "read")
        pop.dele(drop)
        pop.retr(read)
        started = time.monotonic()
        pop.quit()
        while time.monotonic() - started < 3 and (sequence, b"EXPUNGE") not in responses:
            responses += imap.idle_check(timeout=0.25)
        elapsed = time.monotonic() - started
    finally:
        responses += imap.idle_done()[1]
    assert (sequence, b"EXPUNGE") in responses, responses
    assert elapsed < 1.5, f"EXPUNGE took {elapsed:.2f}s"

    after = _subjects(imap)
    assert sorted(after.values()) == ["keep", "read"]
    assert uid_of["drop"] not in after
    flags = imap.get_flags([uid_of["keep"], uid_of["read"]])
    assert b"\\Seen" in flags[uid_of["read"]]
    assert b"\\Seen" not in flags[uid_of["keep"]]


def test_imap_expunge_while_pop3_session_is_open(server: ServerHandle, imap: IMAPClient) -> None:
    """IMAP removes a message a POP3 session listed: the POP3 session keeps
    its listing (RFC 1939 message numbers are fixed), RETR of the vanished
    message fails cleanly, and QUIT still removes what POP3 deleted."""
    _deliver(server, "one", "two", "three")
    pop = _pop3(server)
    numbers = {s: _number_of(pop, s) for s in ("one", "two", "three")}
    imap.select_folder("INBOX")
    uid_of = {subject: uid for uid, subject in _subjects(imap).items()}
    imap.delete_messages([uid_of["one"]])
    imap.expunge()
    assert pop.stat()[0] == 3
    with pytest.raises(poplib.error_proto, match=r"-ERR"):
        pop.retr(numbers["one"])
    pop.dele(numbers["two"])
    assert b"Subject: three" in pop.retr(numbers["three"])[1]
    pop.quit()
    imap.noop()  # hears of the POP3 expunge
    assert sorted(_subjects(imap).values()) == ["three"]


def test_imap_fetch_right_after_a_pop3_expunge(server: ServerHandle, imap: IMAPClient) -> None:
    _deliver(server, "one", "two")
    imap.select_folder("INBOX")
    assert sorted(_subjects(imap).values()) == ["one", "two"]
    pop = _pop3(server)
    pop.dele(_number_of(pop, "one"))
    pop.quit()
    # No NOOP: the IMAP view still has "one" (RFC 3501 §7.4.1 keeps EXPUNGE
    # out of a FETCH response); the FETCH may answer NO or omit it, not crash.
    with contextlib.suppress(AssertionError):  # a NO is a fine answer
        _subjects(imap)
    imap.noop()
    assert sorted(_subjects(imap).values()) == ["two"]


@pytest.mark.parametrize("retr_after_select", [False, True])
def test_imap_select_during_a_pop3_session_moves_files_under_it(
    server: ServerHandle, imap: IMAPClient, retr_after_select: bool
) -> None:
    """A read-write SELECT moves new/ to cur/ while POP3 holds its listing:
    RETR, the \\Seen at QUIT and DELE must follow the files to cur/ (and a
    deleted message must not come back under a new UIDL)."""
    _deliver(server, "read", "drop", "keep")
    pop = _pop3(server)
    numbers = {s: _number_of(pop, s) for s in ("read", "drop", "keep")}
    uidls = {s: pop.uidl(n).split()[2] for s, n in numbers.items()}
    if not retr_after_select:
        assert b"Subject: read" in pop.retr(numbers["read"])[1]
    imap.select_folder("INBOX")  # new/ -> cur/
    imap.noop()
    assert not list((server.maildir(ALICE) / "new").iterdir())
    if retr_after_select:
        assert b"Subject: read" in pop.retr(numbers["read"])[1]
    pop.dele(numbers["drop"])
    assert pop.quit().startswith(b"+OK")

    pop = _pop3(server)
    try:
        _, listing, _ = pop.uidl()
        assert sorted(line.split()[1] for line in listing) == sorted([uidls["read"], uidls["keep"]])
    finally:
        pop.quit()
    imap.noop()
    after = {subject: uid for uid, subject in _subjects(imap).items()}
    assert sorted(after) == ["keep", "read"]
    flags = imap.get_flags(list(after.values()))
    assert b"\\Seen" in flags[after["read"]]
    assert b"\\Seen" not in flags[after["keep"]]
