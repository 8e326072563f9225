"""\\Recent for IMAP4rev1 sessions (RFC 3501 §2.3.2); IMAP4rev2 has none (RFC 9051).

A message new to a mailbox (delivered, APPENDed, COPYed or MOVEd in) is
\\Recent in exactly one session: the first to select the mailbox after it
arrived, or the one selected when it arrived, which is told first. That
session sees ``* n RECENT``, the flag in FETCH, and SEARCH RECENT, NEW and
OLD (RFC 3501 §6.4.4) by it; every other session sees it as old.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from mailstead.store.account import Account
from mailstead.store.index import INDEX_NAME
from tests.proto.imap.imap_transcript import MESSAGES, IMAPTranscript, deliver


def _session(root: Path) -> IMAPTranscript:
    return IMAPTranscript(root).login()


def test_first_session_to_select_has_the_recent_messages(root: Path) -> None:
    a = _session(root)
    said = a.say("a1 SELECT INBOX")
    assert "* 3 EXISTS\r\n* 3 RECENT\r\n" in said
    a.run(r"""
        C: a2 STORE 2 +FLAGS (\Seen)
        S: * 2 FETCH (FLAGS (\Seen \Recent))
        S: a2 OK STORE completed
        C: a3 SEARCH RECENT
        S: * SEARCH 1 2 3
        S: a3 OK SEARCH completed
        C: a4 SEARCH NEW
        S: * SEARCH 1 3
        S: a4 OK SEARCH completed
        C: a5 SEARCH OLD
        S: * SEARCH
        S: a5 OK SEARCH completed
    """)
    b = _session(root)
    assert "* 3 EXISTS\r\n* 0 RECENT\r\n" in b.say("b1 SELECT INBOX")
    b.run(r"""
        C: b2 FETCH 1:2 FLAGS
        S: * 1 FETCH (FLAGS ())
        S: * 2 FETCH (FLAGS (\Seen))
        S: b2 OK FETCH completed
        C: b3 SEARCH RECENT
        S: * SEARCH
        S: b3 OK SEARCH completed
        C: b4 SEARCH OLD
        S: * SEARCH 1 2 3
        S: b4 OK SEARCH completed
    """)


def test_mail_arriving_is_recent_in_the_session_told_first(root: Path) -> None:
    a = _session(root).select()
    b = _session(root).select()
    deliver(root, b"Subject: late\n\nx\n")
    a.run(r"""
        C: a1 NOOP
        S: * 4 EXISTS
        S: * 4 RECENT
        S: a1 OK NOOP completed
        C: a2 FETCH 4 FLAGS
        S: * 4 FETCH (FLAGS (\Recent))
        S: a2 OK FETCH completed
    """)
    b.run("""
        C: b1 NOOP
        S: * 4 EXISTS
        S: * 0 RECENT
        S: b1 OK NOOP completed
    """)


def test_appended_copied_and_moved_messages_are_recent(root: Path) -> None:
    a = _session(root).select()
    a.say("a1 CREATE Work")
    a.run(
        """
        C: a2 APPEND Work {10+}
        C: Subject: x
    """.rstrip()
        + f"\n        S: a2 OK [APPENDUID {a.uidvalidity('Work')} 1] APPEND completed\n"
    )
    a.say("a3 COPY 1 Work")
    a.say("a4 MOVE 2 Work")
    said = _session(root).say("b1 SELECT Work")
    assert "* 3 EXISTS\r\n* 3 RECENT\r\n" in said
    assert "* 3 EXISTS\r\n* 0 RECENT\r\n" in _session(root).say("c1 SELECT Work")


def test_examine_sees_recent_messages_without_taking_them(root: Path) -> None:
    a = _session(root)
    a.say("a1 EXAMINE INBOX")
    assert "* 3 RECENT\r\n" in _session(root).say("b1 SELECT INBOX")


def test_imap4rev2_sessions_see_no_recent(root: Path) -> None:
    a = _session(root)
    said = a.say("a0 ENABLE IMAP4rev2") + a.say("a1 SELECT INBOX")
    assert "RECENT" not in said
    a.run("""
        C: a2 FETCH 1 FLAGS
        S: * 1 FETCH (FLAGS ())
        S: a2 OK FETCH completed
    """)


def test_an_index_from_before_recent_keeps_old_mail_old(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    deliver(root, *MESSAGES)
    Account(root).mailbox("INBOX").refresh()
    # An index as schema 1 left it: no recent_floor column.
    with sqlite3.connect(root / INDEX_NAME) as conn:
        conn.execute("ALTER TABLE mailboxes DROP COLUMN recent_floor")
        conn.execute("PRAGMA user_version=1")
    conn.close()
    assert Account(root).mailbox("INBOX").recent_uids() == []
    deliver(root, b"Subject: after the upgrade\n\nx\n")
    assert "* 4 EXISTS\r\n* 1 RECENT\r\n" in _session(root).say("a1 SELECT INBOX")
