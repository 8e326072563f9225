"""message.received tells the UID and UIDVALIDITY an IMAP client then sees (issue 13).

Mail goes in over SMTP (smtplib) to the real server; the webhook receiver
on 127.0.0.1 records each event; imaplib then selects INBOX and fetches
every message's UID and Subject. The event's ``uid`` and ``uidvalidity``
must be exactly what IMAP reports, whether the dispatcher looked at the
mailbox first (nobody had it open) or an IMAP session had INBOX selected
when the mail arrived, for Maildir and for mbox storage.
"""

from __future__ import annotations

import contextlib
import imaplib
import re
import smtplib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from mailstead.config import load_config
from mailstead.testing.dns import DNSServer
from tests.e2e.harness import (
    USERS,
    ServerHandle,
    client_tls_context,
    running_config,
    write_config,
)
from tests.e2e.process import ServerProcess
from tests.e2e.test_webhooks import Receiver, wait_for, webhook_config
from tests.mailauth import authzones

ALICE = "alice@example.test"


@contextmanager
def server_for(root: Path, url: str, storage: str) -> Iterator[ServerHandle]:
    path = write_config(root, storage=storage, extra=webhook_config(url, '["message.received"]'))
    with running_config(load_config(path)) as handle:
        yield handle


def send(server: ServerHandle, *subjects: str) -> None:
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as smtp:
        smtp.ehlo("client.sender.test")
        for subject in subjects:
            message = f"From: zoe@sender.test\r\nSubject: {subject}\r\n\r\nHi Alice\r\n"
            smtp.sendmail("zoe@sender.test", [ALICE], message.encode())


def told(receiver: Receiver, count: int) -> dict[str, tuple[int, int]]:
    """Subject -> (uidvalidity, uid), as the webhooks said."""
    wait_for(lambda: len(receiver.of_type("message.received")) >= count)
    events = receiver.of_type("message.received")
    assert len(events) == count
    return {
        e.data["message"]["headers"]["subject"]: (e.data["uidvalidity"], e.data["uid"])
        for e in events
    }


@contextmanager
def imap_session(server: ServerHandle, user: str = ALICE) -> Iterator[imaplib.IMAP4]:
    imap = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=10)
    try:
        imap.starttls(client_tls_context())
        imap.login(user, USERS[user])
        yield imap
    finally:
        with contextlib.suppress(OSError, imaplib.IMAP4.error):
            imap.logout()


def selected(imap: imaplib.IMAP4, folder: str = "INBOX") -> dict[str, tuple[int, int]]:
    """Subject -> (uidvalidity, uid), as IMAP reports them (SELECT, UID FETCH)."""
    status, _ = imap.select(folder)
    assert status == "OK"
    _, validity = imap.response("UIDVALIDITY")
    uidvalidity = int(validity[0])
    status, lines = imap.uid("FETCH", "1:*", "(UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert status == "OK"
    found = {}
    for item in lines:
        if isinstance(item, tuple):
            uid = int(re.search(rb"UID (\d+)", item[0]).group(1))  # type: ignore[union-attr]
            subject = item[1].decode().split(":", 1)[1].strip()
            found[subject] = (uidvalidity, uid)
    return found


@pytest.mark.parametrize("storage", ["maildir", "mbox"])
def test_the_uid_in_the_webhook_is_the_one_imap_shows(tmp_path: Path, storage: str) -> None:
    with Receiver() as receiver, server_for(tmp_path, receiver.url, storage) as server:
        send(server, "first", "second", "third")
        from_webhooks = told(receiver, 3)
        with imap_session(server) as imap:
            from_imap = selected(imap)
    assert from_webhooks == from_imap
    assert sorted(uid for _, uid in from_imap.values()) == [1, 2, 3]


@pytest.mark.parametrize("storage", ["maildir", "mbox"])
def test_mail_arriving_while_inbox_is_selected(tmp_path: Path, storage: str) -> None:
    with Receiver() as receiver, server_for(tmp_path, receiver.url, storage) as server:
        send(server, "before")
        with imap_session(server) as imap:
            assert selected(imap).keys() == {"before"}  # INBOX stays selected
            send(server, "while selected 1", "while selected 2")
            from_webhooks = told(receiver, 3)
            imap.noop()  # the session learns of the new mail
            from_imap = selected(imap)
    assert from_webhooks == from_imap


def test_from_serve_whose_dispatcher_runs_in_a_process_of_its_own(tmp_path: Path) -> None:
    with Receiver() as receiver:
        extra = webhook_config(receiver.url, '["message.received"]')
        proc = ServerProcess(tmp_path, workers=2, extra=extra, roles=("smtp", "imap"))
        with proc, imap_session(proc.handle) as imap:
            selected(imap)  # one worker has INBOX open; which gets the mail is chance
            send(proc.handle, "one", "two", "three", "four")
            from_webhooks = told(receiver, 4)
            imap.noop()
            from_imap = selected(imap)
    assert from_webhooks == from_imap


def test_mail_the_checks_put_in_junk_tells_junks_uid(tmp_path: Path) -> None:
    bob = "bob@example.test"
    with Receiver() as receiver, DNSServer(authzones.zones()) as (host, port):
        path = write_config(
            tmp_path,
            delivery=f'dns_servers = ["{host}:{port}"]',
            extra=webhook_config(receiver.url, '["message.received"]'),
        )
        with running_config(load_config(path)) as server:
            # From an address quarantine.test does not authorise: p=quarantine.
            smtp = smtplib.SMTP(
                "127.0.0.1", server.ports["smtp"], timeout=20, source_address=("127.0.0.2", 0)
            )
            with smtp:
                smtp.ehlo("mail.sender.test")
                content = authzones.message(from_="carol@quarantine.test")
                smtp.sendmail("carol@quarantine.test", [bob], content)
            wait_for(lambda: bool(receiver.of_type("message.received")))
            (event,) = receiver.of_type("message.received")
            with imap_session(server, bob) as imap:
                from_imap = selected(imap, "Junk")
    assert event.data["folder"] == "Junk"
    assert from_imap == {"greetings": (event.data["uidvalidity"], event.data["uid"])}
