"""Mailbox changes become events: flags, expunges, mailboxes created, deleted, renamed."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

import pytest

from mailstead.events import Event
from mailstead.store import MaildirStore, MboxStore
from mailstead.store.account import maildir_accounts
from mailstead.store.changes import MAX_UIDS, ChangeReporter
from mailstead.store.maildrop import maildir_maildrops
from mailstead.store.mbox_account import mbox_accounts

ALICE = "alice@example.test"
MESSAGE = b"Subject: x\n\nbody\n"


class Sink:
    """Records what is emitted; ``wanted`` says which types anyone subscribes to."""

    def __init__(self, wanted: Sequence[str] = ("*",)) -> None:
        self.wanted = wanted
        self.events: list[Event] = []

    def wants(self, event_type: str) -> bool:
        return "*" in self.wanted or event_type in self.wanted

    def emit(self, events: Sequence[Event]) -> None:
        self.events.extend(events)

    def emit_in(self, conn: sqlite3.Connection, events: Sequence[Event]) -> bool:
        self.events.extend(events)
        return True

    def committed(self) -> None:
        pass

    def seen(self) -> list[tuple[str, dict[str, object]]]:
        return [(e.type, dict(e.data)) for e in self.events]


@pytest.mark.parametrize("fmt", ["maildir", "mbox"])
def test_imap_changes_are_reported(tmp_path: Path, fmt: str) -> None:
    sink = Sink()
    store = MaildirStore(tmp_path) if fmt == "maildir" else MboxStore(tmp_path)
    for _ in range(3):
        store.deliver(ALICE, [MESSAGE], "bob@example.test", 0.0)
    accounts = (maildir_accounts if fmt == "maildir" else mbox_accounts)(tmp_path, sink)
    account = accounts.get(ALICE)
    inbox = account.mailbox("INBOX")
    inbox.refresh()
    inbox.store([1, 2], ["\\Seen"], "+")
    inbox.store([1], ["\\Seen"], "+")  # no change: no event
    inbox.expunge([2])
    account.create("Work")
    account.rename("Work", "Projects")
    account.delete("Projects")
    assert sink.seen() == [
        (
            "message.flags_changed",
            {"mailbox": "INBOX", "uids": [1, 2], "uids_truncated": False,
             "flags": ["\\Seen"], "mode": "add"},
        ),
        ("message.expunged", {"mailbox": "INBOX", "uids": [2], "uids_truncated": False}),
        ("mailbox.created", {"mailbox": "Work"}),
        ("mailbox.renamed", {"old": "Work", "new": "Projects"}),
        ("mailbox.deleted", {"mailbox": "Projects"}),
    ]  # fmt: skip
    assert {(e.account, e.domain) for e in sink.events} == {(ALICE, "example.test")}


def test_a_pop3_deletion_is_an_expunge(tmp_path: Path) -> None:
    sink = Sink(["message.expunged"])
    MaildirStore(tmp_path).deliver(ALICE, [MESSAGE], "bob@example.test", 0.0)
    drop = maildir_maildrops(tmp_path, sink).open(ALICE)
    try:
        drop.mark_seen([0])  # not subscribed: nothing
        drop.delete([0])
    finally:
        drop.close()
    assert sink.seen() == [
        ("message.expunged", {"mailbox": "INBOX", "uids": [1], "uids_truncated": False})
    ]


def test_nobody_subscribed_costs_nothing_and_lists_are_bounded(tmp_path: Path) -> None:
    quiet = Sink(wanted=())
    ChangeReporter(quiet, ALICE).flags_changed("INBOX", [1], ["\\Seen"], "+")
    assert quiet.events == []
    loud = Sink()
    ChangeReporter(loud, ALICE).expunged("INBOX", list(range(1, MAX_UIDS + 5)))
    (event,) = loud.events
    uids = event.data["uids"]
    assert isinstance(uids, list) and len(uids) == MAX_UIDS and event.data["uids_truncated"]
