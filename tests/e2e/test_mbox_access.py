"""IMAP and POP3 over an mbox store: what the MDA delivers, the clients see.

``[storage] format = "mbox"``: SMTP appends to ``<mail>/<domain>/<local>/mbox``
and imaplib / poplib read it over implicit TLS, the way a user's client does.
"""

from __future__ import annotations

import imaplib
import poplib
import smtplib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailstead.store.mbox_format import parse, unescape_mboxrd
from tests.e2e.harness import ServerHandle, client_tls_context, running_server

ALICE = ("alice@example.test", "alice-pw")
TIMEOUT = 10
BODY = "From here\r\n>From there\r\nHello.\r\n"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerHandle]:
    with running_server(tmp_path, storage="mbox") as handle:
        yield handle


def mbox_file(handle: ServerHandle) -> Path:
    return handle.mail_root / "example.test" / "alice" / "mbox"


def mbox_messages(handle: ServerHandle) -> list[bytes]:
    data = mbox_file(handle).read_bytes()
    return [
        unescape_mboxrd(data[r.offset : r.offset + r.length]) for r in parse(data, 0, len(data))
    ]


def send(handle: ServerHandle, subject: str) -> None:
    with smtplib.SMTP("127.0.0.1", handle.ports["smtp"], timeout=TIMEOUT) as smtp:
        smtp.sendmail(
            "sender@other.example",
            ["alice@example.test"],
            f"From: sender@other.example\r\nTo: alice@example.test\r\nSubject: {subject}\r\n"
            f"\r\n{BODY}",
        )


def imap(handle: ServerHandle) -> imaplib.IMAP4_SSL:
    client = imaplib.IMAP4_SSL(
        "127.0.0.1", handle.ports["imaps"], ssl_context=client_tls_context(), timeout=TIMEOUT
    )
    client.login(*ALICE)
    return client


def test_smtp_delivery_is_seen_by_imap_byte_for_byte(server: ServerHandle) -> None:
    send(server, "one")
    with imap(server) as c:
        typ, listing = c.list()
        names = {line.decode().rsplit(" ", 1)[-1].strip('"') for line in listing if line}
        assert {"INBOX", "Drafts", "Sent", "Trash", "Junk", "Archive"} <= names
        assert c.select("INBOX") == ("OK", [b"1"])
        typ, data = c.uid("FETCH", "1", "(BODY.PEEK[] RFC822.SIZE)")
        assert typ == "OK"
        _, body = data[0]  # type: ignore[misc]
        (stored,) = mbox_messages(server)
        assert body == stored.replace(b"\n", b"\r\n")
        assert body.endswith(b"Subject: one\r\n\r\n" + BODY.encode())
        assert b"RFC822.SIZE %d)" % len(body) in data[1]  # type: ignore[operator]


def test_seen_persists_across_reconnect_and_file_is_untouched(server: ServerHandle) -> None:
    send(server, "flag me")
    before = mbox_file(server).read_bytes()
    with imap(server) as c:
        c.select("INBOX")
        assert c.store("1", "+FLAGS", "(\\Seen $Work)")[0] == "OK"
    with imap(server) as c:
        c.select("INBOX")
        _, data = c.fetch("1", "(FLAGS)")
        assert b"\\Seen" in data[0] and b"$Work" in data[0]  # type: ignore[operator]
    assert mbox_file(server).read_bytes() == before


def test_expunge_removes_the_message_from_the_file(server: ServerHandle) -> None:
    send(server, "doomed")
    send(server, "kept")
    with imap(server) as c:
        c.select("INBOX")
        c.store("1", "+FLAGS", "(\\Deleted)")
        typ, data = c.expunge()
        assert (typ, data) == ("OK", [b"1"])
        typ, data = c.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert b"Subject: kept" in data[0][1]  # type: ignore[index]
    messages = mbox_messages(server)
    assert len(messages) == 1 and b"Subject: kept" in messages[0]


def test_pop3_retr_dele_quit_removes_from_the_file(server: ServerHandle) -> None:
    send(server, "pop me")
    send(server, "leave me")
    pop = poplib.POP3_SSL(
        "127.0.0.1", server.ports["pop3s"], context=client_tls_context(), timeout=TIMEOUT
    )
    try:
        pop.user(ALICE[0])
        pop.pass_(ALICE[1])
        assert pop.stat()[0] == 2
        _, lines, _ = pop.retr(1)
        assert b"Subject: pop me" in lines
        assert lines[-3:] == [b"From here", b">From there", b"Hello."]
        pop.dele(1)
    finally:
        pop.quit()
    messages = mbox_messages(server)
    assert len(messages) == 1 and b"Subject: leave me" in messages[0]
    with imap(server) as c:
        assert c.select("INBOX") == ("OK", [b"1"])


def test_idle_sees_an_smtp_delivery_within_a_second_and_a_half(server: ServerHandle) -> None:
    send(server, "before")
    with imap(server) as c:
        c.select("INBOX")
        tag = c._new_tag()  # imaplib has no IDLE before Python 3.14
        c.send(tag + b" IDLE\r\n")
        assert c.readline().startswith(b"+ ")
        start = time.monotonic()
        send(server, "during idle")
        c.sock.settimeout(1.5)
        try:
            line = c.readline()
        except TimeoutError:
            pytest.fail("no EXISTS within 1.5 s")
        assert line == b"* 2 EXISTS\r\n"
        assert time.monotonic() - start < 1.5
        c.sock.settimeout(TIMEOUT)
        c.send(b"DONE\r\n")
        while not (line := c.readline()).startswith(tag):
            pass
        assert b" OK " in line
