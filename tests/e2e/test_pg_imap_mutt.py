"""The mutt suite of ``test_imap_mutt.py`` once more, with the mail store (and the
rest of the shared state) on PostgreSQL.

Where the suite looks at the Maildir files behind the server, the same look
is taken through the store: :func:`stored_flags` answers what ``_files``
answers (subject -> Maildir flag letters) from the cluster database.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import tests.e2e.test_imap_mutt as suite
from mailstead.pgsql.connect import shared_pool
from mailstead.proto.imap.storage import MailboxError
from mailstead.store.pg_account import PgAccount
from tests.e2e.harness import ServerHandle

# isort: off
from tests.e2e import test_pg_store
from tests.e2e.test_imap_mutt import *  # noqa: F403 - its tests and fixtures
# isort: on

server = test_pg_store.server  # the server fixture, on PostgreSQL

# The letters of a Maildir file name (maildir_names.py), in their ASCII order.
_LETTERS = {
    "\\Draft": "D",
    "\\Flagged": "F",
    "$Forwarded": "P",
    "\\Answered": "R",
    "\\Seen": "S",
    "\\Deleted": "T",
}


def stored_messages(dsn: str, address: str, folder: str = "INBOX") -> list[tuple[bytes, str]]:
    """(content, Maildir flag letters) of each message of ``folder``, by UID, read
    through the store; nothing when the folder does not exist."""
    account = PgAccount(shared_pool(dsn), address)
    try:
        box = account.mailbox(folder)
    except MailboxError:
        return []
    box.refresh()
    return [
        (
            box.read(uid),
            "".join(sorted(_LETTERS[f] for f in box.messages[uid].flags if f in _LETTERS)),
        )
        for uid in box.uids
    ]


def stored_flags(dsn: str, address: str, folder: str = "INBOX") -> dict[str, str]:
    """Subject -> Maildir flag letters of every message of ``folder`` in the database."""
    found: dict[str, str] = {}
    for data, letters in stored_messages(dsn, address, folder):
        match = re.search(rb"^Subject: (.*?)\r?$", data, re.MULTILINE)
        assert match is not None, data
        subject = match.group(1).decode()
        assert subject not in found, f"duplicate message {subject!r} in {folder}"
        found[subject] = letters
    return found


def flags_at(dsn: str, maildir_folder: Path) -> dict[str, str]:
    """:func:`stored_flags` of the folder a Maildir++ path would name
    (``<root>/<domain>/<local>/Maildir`` is INBOX, ``…/Maildir/.Archive`` Archive)."""
    if maildir_folder.name == "Maildir":
        inbox, folder = maildir_folder, "INBOX"
    else:
        inbox, folder = maildir_folder.parent, maildir_folder.name[1:].replace(".", "/")
    address = f"{inbox.parent.name}@{inbox.parent.parent.name}"
    return stored_flags(dsn, address, folder)


@pytest.fixture(autouse=True)
def files_through_the_store(monkeypatch: pytest.MonkeyPatch, pg_dsn: str) -> Iterator[None]:
    """The suite's look at the Maildir, taken in the test's database instead."""
    monkeypatch.setattr(suite, "_files", lambda folder: flags_at(pg_dsn, folder))
    yield


def test_mutt_deletes_tagged_messages_in_batch(
    server: ServerHandle, tmp_path: Path, pg_dsn: str
) -> None:
    """The suite's test, with the expunge log in place of the files left in tmp/."""
    suite._three_messages(server)
    mutt = suite.Mutt(server, tmp_path / "mutt")

    mutt.run("<tag-pattern>~s foo<enter><tag-prefix><delete-message><sync-mailbox><quit>")

    transcript = mutt.transcript()
    assert re.search(r"\d+> a\d+ UID STORE 1:2 \+FLAGS.SILENT \(\\Deleted\)", transcript)
    assert stored_flags(pg_dsn, suite.ALICE) == {"bar three": ""}, transcript
    # Expunged means gone, not moved to Trash: the log says which, for QRESYNC.
    account = PgAccount(shared_pool(pg_dsn), suite.ALICE)
    assert account.mailbox("INBOX").expunged_since(0) == [1, 2]
    assert stored_flags(pg_dsn, suite.ALICE, "Trash") == {}
    assert set(suite._imap_flags(server, "INBOX")) == {"bar three"}
