"""What an account uses (RFC 9208 QUOTA): counted in the index as messages come and go."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from mailstead.store.account import Account
from mailstead.store.index import INDEX_NAME, AccountIndex
from mailstead.store.maildir import Maildir
from mailstead.store.usage import AccountUsage, account_usage
from mailstead.store.usage_columns import Usage

ONE = b"Subject: one\r\n\r\nfirst\r\n"  # 23 octets
TWO = b"Subject: two\r\n\r\nsecond body\r\n"  # 29 octets


def _account(tmp_path: Path) -> Account:
    return Account(tmp_path / "Maildir")


def test_append_copy_expunge_and_delete_keep_the_counters(tmp_path: Path) -> None:
    account = _account(tmp_path)
    inbox = account.mailbox("INBOX")
    assert account.quota_usage() == Usage(0, 0)
    inbox.append(ONE, [], None)
    uid = inbox.append(TWO, [], None)
    assert account.index.usage() == Usage(52, 2)
    account.create("Archive")
    archive = account.mailbox("Archive")
    inbox.copy_to([uid], archive)
    assert account.index.usage() == Usage(81, 3)
    inbox.expunge([uid])
    assert account.index.usage() == Usage(52, 2)
    account.rename("Archive", "Old")
    assert account.index.usage() == Usage(52, 2)
    account.delete("Old")
    assert account.index.usage() == Usage(23, 1)


def test_mail_delivered_into_new_counts_once_seen_by_imap(tmp_path: Path) -> None:
    account = _account(tmp_path)
    Maildir(tmp_path / "Maildir").deliver([b"Subject: x\n\nbody\n"])  # 20 octets with CRLF
    assert account.index.usage() == Usage(0, 0)  # nobody looked yet
    assert account.quota_usage() == Usage(20, 1)  # GETQUOTA looks at the INBOX first


def test_delivery_sees_what_is_not_indexed_yet(tmp_path: Path) -> None:
    # The SMTP side reads the index read-only and adds what waits in new/.
    root = tmp_path / "Maildir"
    reader = AccountUsage()
    assert reader.maildir(root) == Usage(0, 0)  # no account at all yet
    account = _account(tmp_path)
    account.mailbox("INBOX").append(ONE, [], None)
    maildir = Maildir(root)
    maildir.deliver([b"Subject: x\n\nbody\n"])
    assert reader.maildir(root) == Usage(43, 2)
    account.mailbox("INBOX").refresh()  # indexed now: counted once, not twice
    assert reader.maildir(root) == Usage(43, 2)
    maildir.deliver([b"Subject: y\n\nbody\n"])
    assert reader.maildir(root) == Usage(63, 3)
    reader.close()


def test_an_old_index_is_counted_when_upgraded(tmp_path: Path) -> None:
    account = _account(tmp_path)
    account.mailbox("INBOX").append(ONE, [], None)
    account.mailbox("INBOX").append(TWO, [], None)
    path = tmp_path / "Maildir" / INDEX_NAME
    account.index.close()
    # Back to schema 3: no counters, no triggers.
    conn = sqlite3.connect(path)
    for trigger in ("usage_added", "usage_removed", "usage_changed"):
        conn.execute(f"DROP TRIGGER {trigger}")
    conn.execute("ALTER TABLE mailboxes DROP COLUMN used_octets")
    conn.execute("ALTER TABLE mailboxes DROP COLUMN used_messages")
    conn.execute("PRAGMA user_version = 3")
    conn.commit()
    conn.close()
    assert AccountUsage().maildir(tmp_path / "Maildir") == Usage(52, 2)  # read as it is
    index = AccountIndex(path)
    assert index.usage() == Usage(52, 2)
    index.close()


def test_recount_repairs_counters(tmp_path: Path) -> None:
    account = _account(tmp_path)
    account.mailbox("INBOX").append(ONE, [], None)
    with account.index.transaction() as conn:
        conn.execute("UPDATE mailboxes SET used_octets = 999, used_messages = 7")
    assert account.index.usage() == Usage(999, 7)
    assert account.index.recount_usage() == Usage(23, 1)
    assert account_usage("maildir", tmp_path / "mail", "nobody@example.test") == Usage(0, 0)
