"""Two servers on one PostgreSQL database: mail taken by either is served by both.

Two harness servers (two "nodes", each with its own data directory) share
the test's database. Mail goes in over SMTP (smtplib) to both; imaplib
reads, flags, expunges, appends and copies on one, and the other shows the
same UIDs, flags and bytes; POP3 on the second lists what IMAP left; an
IDLE session on one hears of mail the other accepted.
"""

from __future__ import annotations

import imaplib
import poplib
import re
import smtplib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from imapclient import IMAPClient

from tests.e2e.harness import ServerHandle, client_tls_context, running_server

ALICE = "alice@example.test"
PASSWORD = "alice-pw"


@pytest.fixture
def server(tmp_path: Path, pg_dsn: str) -> Iterator[ServerHandle]:
    """The standard test server (conftest's ``server``) with its shared state in the
    test's PostgreSQL database: the suites ``test_pg_*`` run again import it."""
    with running_server(tmp_path, dsn=pg_dsn) as handle:
        yield handle


def _send(server: ServerHandle, subject: str) -> None:
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as smtp:
        smtp.sendmail(
            "carol@remote.test",
            [ALICE],
            f"From: carol@remote.test\r\nTo: {ALICE}\r\nSubject: {subject}\r\n\r\nhi {subject}\r\n",
        )


def _imap(server: ServerHandle) -> imaplib.IMAP4_SSL:
    client = imaplib.IMAP4_SSL(
        "127.0.0.1", server.ports["imaps"], ssl_context=client_tls_context(), timeout=10
    )
    client.login(ALICE, PASSWORD)
    return client


def _ok(answer: tuple[str, list[object]]) -> list[object]:
    typ, data = answer
    assert typ == "OK", data
    return data


def _uids(client: imaplib.IMAP4_SSL, criteria: str) -> list[int]:
    (line,) = _ok(client.uid("SEARCH", criteria))
    assert isinstance(line, bytes)
    return [int(n) for n in line.split()]


def _listing(client: imaplib.IMAP4_SSL) -> dict[int, tuple[bytes, bytes]]:
    """UID -> (flags but \\Recent, subject) of every message of the selected mailbox."""
    found = {}
    for item in _ok(client.fetch("1:*", "(UID FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")):
        if isinstance(item, tuple):
            head, header = item
            uid = re.search(rb"UID (\d+)", head)
            flags = re.search(rb"FLAGS \(([^)]*)\)", head)
            assert uid is not None and flags is not None, item
            # \Recent belongs to the one session that saw the message first.
            shown = b" ".join(f for f in flags.group(1).split() if f != b"\\Recent")
            found[int(uid.group(1))] = (shown, header.strip())
    return found


def test_two_nodes_on_one_database_serve_the_same_mailbox(tmp_path: Path, pg_dsn: str) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with (
        running_server(tmp_path / "a", dsn=pg_dsn) as a,
        running_server(tmp_path / "b", dsn=pg_dsn) as b,
    ):
        # S: 250 on either node means committed in the shared database.
        for subject in ("one", "two", "three"):
            _send(a, subject)
        _send(b, "four")

        first = _imap(a)
        (exists,) = _ok(first.select("INBOX"))
        assert exists == b"4"
        assert _uids(first, "ALL") == [1, 2, 3, 4]
        (body,) = [
            x for x in _ok(first.uid("FETCH", "4", "(BODY.PEEK[TEXT])")) if isinstance(x, tuple)
        ]
        assert body[1] == b"hi four\r\n"
        _ok(first.store("1", "+FLAGS", "(\\Seen \\Flagged)"))
        _ok(first.store("3", "+FLAGS", "(\\Deleted)"))
        assert _uids(first, "FLAGGED") == [1]
        assert _uids(first, "UNSEEN") == [2, 3, 4]
        _ok(first.expunge())
        _ok(first.copy("2", "Archive"))
        _ok(
            first.append(
                "Drafts",
                "(\\Draft)",
                None,
                b"From: alice@example.test\r\nSubject: draft\r\n\r\nx\r\n",
            )
        )
        mine = _listing(first)
        first.logout()

        # The other node: the same UIDs, flags and bytes.
        second = _imap(b)
        (exists,) = _ok(second.select("INBOX"))
        assert exists == b"3"
        assert _listing(second) == mine
        assert _uids(second, "FLAGGED") == [1]
        assert _uids(second, "DELETED") == []
        _ok(second.select("Archive"))
        assert list(_listing(second).values()) == [(b"", b"Subject: two")]
        _ok(second.select("Drafts"))
        assert _uids(second, "DRAFT") == [1]
        second.logout()

        # POP3 on the second node lists what IMAP left in the INBOX.
        pop = poplib.POP3("127.0.0.1", b.ports["pop3"], timeout=10)
        pop.stls(client_tls_context())
        pop.user(ALICE)
        pop.pass_(PASSWORD)
        assert len(pop.uidl()[1]) == 3
        pop.quit()


def test_idle_on_one_node_hears_of_mail_taken_by_the_other(tmp_path: Path, pg_dsn: str) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with (
        running_server(tmp_path / "a", dsn=pg_dsn) as a,
        running_server(tmp_path / "b", dsn=pg_dsn) as b,
    ):
        _send(a, "before")
        imap = IMAPClient("127.0.0.1", b.ports["imaps"], ssl_context=client_tls_context())
        imap.login(ALICE, PASSWORD)
        imap.select_folder("INBOX")
        responses: list[tuple[int | bytes, ...]] = []
        imap.idle()
        try:
            _send(a, "during")
            started = time.monotonic()
            while time.monotonic() - started < 3 and (2, b"EXISTS") not in responses:
                responses += imap.idle_check(timeout=0.25)
            elapsed = time.monotonic() - started
        finally:
            responses += imap.idle_done()[1]
        # Polled (IDLE looks every idle_poll_interval); LISTEN/NOTIFY is a later step.
        assert (2, b"EXISTS") in responses, responses
        assert elapsed < 1.5, f"EXISTS took {elapsed:.2f}s"
        assert imap.search(["ALL"]) == [1, 2]
        imap.logout()
