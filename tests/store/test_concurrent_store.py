"""Two processes on one account: what each sees of the other's changes.

Each :class:`Account` here stands for one process (its own index connection
and in-memory mailboxes), as in tests/proto/imap/test_server_concurrency.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.proto.imap.imap_transcript import MESSAGES, deliver

from mailstead.proto.imap.storage import MailboxError
from mailstead.store.account import Account
from mailstead.store.mbox_account import MboxAccount


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "Maildir"
    deliver(root, *MESSAGES)
    return root


def test_flag_changes_of_two_processes_both_stay(root: Path) -> None:
    a, b = Account(root).mailbox("INBOX"), Account(root).mailbox("INBOX")
    a.refresh()
    b.refresh()
    assert a.store([1], ["\\Seen"], "+") == [1]
    # B has not looked since: its STORE must not undo A's \Seen.
    assert b.store([1], ["\\Flagged"], "+") == [1]
    assert b.messages[1].flags == ("\\Flagged", "\\Seen")
    fresh = Account(root).mailbox("INBOX")
    fresh.refresh()
    assert fresh.messages[1].flags == ("\\Flagged", "\\Seen")


def test_flag_changes_of_two_processes_both_stay_in_mbox(tmp_path: Path) -> None:
    (tmp_path / "mbox").write_bytes(
        b"From a@example.test Wed Jul 17 09:44:25 1996\nSubject: one\n\nbody\n"
    )
    a = MboxAccount(tmp_path).mailbox("INBOX")
    b = MboxAccount(tmp_path).mailbox("INBOX")
    a.refresh()
    b.refresh()
    a.store([1], ["\\Seen"], "+")
    b.store([1], ["\\Flagged"], "+")
    assert b.messages[1].flags == ("\\Flagged", "\\Seen")


def test_one_keyword_letter_per_keyword_across_processes(root: Path) -> None:
    a, b = Account(root).mailbox("INBOX"), Account(root).mailbox("INBOX")
    a.refresh()
    b.refresh()
    b.keyword_names()  # B has read the (empty) keyword table
    a.store([1], ["$Alpha"], "+")
    b.store([2], ["$Beta"], "+")
    assert (root / "dovecot-keywords").read_text() == "0 $Alpha\n1 $Beta\n"
    fresh = Account(root).mailbox("INBOX")
    fresh.refresh()
    assert (fresh.messages[1].flags, fresh.messages[2].flags) == (("$Alpha",), ("$Beta",))


def test_creating_one_name_in_two_processes_at_once(root: Path) -> None:
    # First logins provision the special-use mailboxes in every worker at
    # once. The check, the folder and dropping old rows are one step under
    # the index's write lock, so the second create is refused and leaves
    # the first one's rows (and UIDs) alone.
    a, b = Account(root), Account(root)
    a.create("Sent")
    sent = a.mailbox("Sent")
    sent.append(b"Subject: sent\r\n\r\nx\r\n", ["\\Seen"], None)
    with pytest.raises(MailboxError) as refused:
        b.create("Sent")
    assert refused.value.code == "ALREADYEXISTS"
    sent.refresh()
    assert sent.uids == [1]
    assert b.mailbox("Sent").uidvalidity == sent.uidvalidity
