"""Two sessions on one mailbox, as two processes would be: who hears what, and when.

Each :class:`IMAPTranscript` opens its own :class:`~mailstead.store.account.Account`
(its own index connection and in-memory mailboxes), as a second Mailstead
process does. RFC 9051 §7.5.1: EXPUNGE is never sent during FETCH, STORE
or SEARCH (the client's numbers would shift under it), but at the next
command that allows it, such as NOOP; EXISTS and flag FETCHes may come at
any time. RFC 9051 §2.3.1.1: new messages get ascending UIDs.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.proto.imap.imap_transcript import MESSAGES, WHEN, IMAPTranscript, deliver


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "Maildir"
    deliver(root, *MESSAGES, when=WHEN)
    return root


@pytest.fixture
def a(root: Path) -> IMAPTranscript:
    return IMAPTranscript(root).login().select()


@pytest.fixture
def b(root: Path, a: IMAPTranscript) -> IMAPTranscript:
    return IMAPTranscript(root).login().select()


def test_flag_change_elsewhere_is_an_unsolicited_fetch(
    a: IMAPTranscript, b: IMAPTranscript
) -> None:
    a.run(r"""
        C: a1 STORE 2 +FLAGS (\Flagged)
        S: * 2 FETCH (FLAGS (\Flagged \Recent))
        S: a1 OK STORE completed
    """)
    b.run(r"""
        C: b1 NOOP
        S: * 2 FETCH (UID 2 FLAGS (\Flagged))
        S: b1 OK NOOP completed
        C: b2 NOOP
        S: b2 OK NOOP completed
    """)
    # A's own change is not echoed back to A. (RFC 3501 §2.3.2: the messages
    # are \Recent in A, which selected them first, and not in B.)
    a.run("""
        C: a2 NOOP
        S: a2 OK NOOP completed
    """)


def test_expunge_elsewhere_waits_for_a_command_that_allows_it(
    a: IMAPTranscript, b: IMAPTranscript
) -> None:
    a.run(r"""
        C: a1 STORE 1 +FLAGS.SILENT (\Deleted)
        S: a1 OK STORE completed
        C: a2 EXPUNGE
        S: * 1 EXPUNGE
        S: a2 OK EXPUNGE completed
    """)
    # B still numbers the expunged message 1; FETCH, STORE and SEARCH keep it
    # so, and RFC 2180 §4.1.2: B may still fetch it (A's process kept the file).
    b.run(r"""
        C: b1 FETCH 2:3 (UID)
        S: * 2 FETCH (UID 2)
        S: * 3 FETCH (UID 3)
        S: b1 OK FETCH completed
        C: b2 STORE 2 +FLAGS (\Seen)
        S: * 2 FETCH (FLAGS (\Seen))
        S: b2 OK STORE completed
        C: b3 SEARCH ALL
        S: * SEARCH 1 2 3
        S: b3 OK SEARCH completed
        C: b4 FETCH 1 (UID FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])
        S: * 1 FETCH (UID 1 FLAGS () BODY[HEADER.FIELDS (SUBJECT)] {16}
        S: Subject: one
        S:
        S: )
        S: b4 OK FETCH completed
        C: b5 NOOP
        S: * 1 EXPUNGE
        S: b5 OK NOOP completed
        C: b6 FETCH 1:* (UID)
        S: * 1 FETCH (UID 2)
        S: * 2 FETCH (UID 3)
        S: b6 OK FETCH completed
    """)


def test_uid_commands_may_carry_the_expunge(a: IMAPTranscript, b: IMAPTranscript) -> None:
    a.say(r"a1 STORE 3 +FLAGS.SILENT (\Deleted)")
    a.say("a2 EXPUNGE")
    # RFC 9051 §7.5.1: UID FETCH/STORE/SEARCH may be followed by EXPUNGE.
    b.run("""
        C: b1 UID FETCH 1 (FLAGS)
        S: * 1 FETCH (UID 1 FLAGS ())
        S: * 3 EXPUNGE
        S: b1 OK FETCH completed
    """)


def test_append_elsewhere_is_exists_at_noop(a: IMAPTranscript, b: IMAPTranscript) -> None:
    a.run(
        """
        C: a1 APPEND INBOX {10+}
        C: Subject: x
        S: * 4 EXISTS
        S: * 4 RECENT
    """.rstrip()
        + f"\n        S: a1 OK [APPENDUID {a.uidvalidity()} 4] APPEND completed\n"
    )
    b.run("""
        C: b1 NOOP
        S: * 4 EXISTS
        S: * 0 RECENT
        S: b1 OK NOOP completed
        C: b2 FETCH 4 (UID RFC822.SIZE)
        S: * 4 FETCH (UID 4 RFC822.SIZE 10)
        S: b2 OK FETCH completed
    """)


def test_exists_may_come_during_fetch(a: IMAPTranscript, b: IMAPTranscript, root: Path) -> None:
    deliver(root, b"Subject: late\n\nx\n")
    b.run("""
        C: b1 FETCH 1 (UID)
        S: * 1 FETCH (UID 1)
        S: * 4 EXISTS
        S: * 1 RECENT
        S: b1 OK FETCH completed
    """)


def test_file_from_another_mda_gets_the_next_uid_and_tmp_is_ignored(
    a: IMAPTranscript, root: Path
) -> None:
    (root / "tmp" / "1700000000.M1P1.other").write_bytes(b"Subject: half written\n")
    name = "1700000000.M2P1.other"
    (root / "new" / name).write_bytes(b"Subject: from procmail\n\nhello\n")
    os.utime(root / "new", (0, 0))
    a.run("""
        C: a1 NOOP
        S: * 4 EXISTS
        S: * 4 RECENT
        S: a1 OK NOOP completed
        C: a2 UID FETCH 4:* (UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])
        S: * 4 FETCH (UID 4 BODY[HEADER.FIELDS (SUBJECT)] {26}
        S: Subject: from procmail
        S:
        S: )
        S: a2 OK FETCH completed
        C: a3 STATUS INBOX (MESSAGES UIDNEXT)
        S: * STATUS "INBOX" (MESSAGES 4 UIDNEXT 5)
        S: a3 OK STATUS completed
    """)


def test_uids_survive_a_new_process(a: IMAPTranscript, root: Path) -> None:
    a.say(r"a1 STORE 2 +FLAGS.SILENT (\Deleted)")
    a.say("a2 EXPUNGE")
    later = IMAPTranscript(root).login().select()
    later.run("""
        C: c1 FETCH 1:* (UID)
        S: * 1 FETCH (UID 1)
        S: * 2 FETCH (UID 3)
        S: c1 OK FETCH completed
    """)


def test_flag_change_by_renaming_the_file(a: IMAPTranscript, root: Path) -> None:
    # Another program (mutt on the Maildir, Dovecot) marks message 1 seen.
    (path,) = [p for p in (root / "cur").iterdir() if p.stat().st_mtime == WHEN]
    os.rename(path, path.with_name(path.name.split(":")[0] + ":2,S"))
    os.utime(root / "cur", (0, 0))
    a.run(r"""
        C: a1 NOOP
        S: * 1 FETCH (UID 1 FLAGS (\Seen \Recent))
        S: a1 OK NOOP completed
    """)


def test_deleted_mailbox_elsewhere_ends_the_session(root: Path) -> None:
    a = IMAPTranscript(root).login()
    a.say("a1 CREATE Work")
    a.say("a2 SELECT Work")
    other = IMAPTranscript(root).login()
    assert other.say("b1 DELETE Work") == "b1 OK DELETE completed\r\n"
    a.run("""
        C: a3 NOOP
        S: * BYE Selected mailbox was removed
        S: a3 OK NOOP completed
    """)
    assert a.closed


def test_two_sessions_of_one_process_share_the_mailbox(root: Path) -> None:
    # Both sessions on one Account object: the in-memory mailbox is shared.
    a = IMAPTranscript(root).login().select()
    b = IMAPTranscript(root)
    b.server._open_account = lambda _address: a.account
    b.login().select()
    a.say(r"a1 STORE 1 +FLAGS (\Answered)")
    a.say(r"a2 STORE 2 +FLAGS.SILENT (\Deleted)")
    a.say("a3 EXPUNGE")
    b.run(r"""
        C: b1 SEARCH ANSWERED
        S: * SEARCH 1
        S: * 1 FETCH (UID 1 FLAGS (\Answered))
        S: b1 OK SEARCH completed
        C: b2 NOOP
        S: * 2 EXPUNGE
        S: b2 OK NOOP completed
    """)
