"""A message another session expunged stays readable until this session is told.

RFC 2180 §4.1 and RFC 9051 §7.5.1: a session hears of an expunge only at a
command that allows EXPUNGE (not FETCH, STORE or SEARCH by number). Until
then the message keeps its number, and FETCH, SEARCH and COPY of it work
(RFC 2180 §4.1.2, §4.3, §4.4.1): its record stays in memory and its file
waits in ``tmp/``. A and B stand for two processes (each its own Account),
except where one process's two sessions share a mailbox.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from mailstead.store import retention
from mailstead.store.account import Account
from tests.proto.imap.imap_transcript import IMAPTranscript, created


@pytest.fixture
def a(root: Path) -> IMAPTranscript:
    return IMAPTranscript(root).login().select(enable_rev2=True)


@pytest.fixture
def b(root: Path, a: IMAPTranscript) -> IMAPTranscript:
    return IMAPTranscript(root).login().select(enable_rev2=True)


def _expunge_first(a: IMAPTranscript) -> None:
    a.run(r"""
        C: a1 STORE 1 +FLAGS.SILENT (\Deleted)
        S: a1 OK STORE completed
        C: a2 EXPUNGE
        S: * 1 EXPUNGE
        S: a2 OK EXPUNGE completed
    """)


def test_fetch_search_copy_of_a_message_expunged_elsewhere(
    a: IMAPTranscript, b: IMAPTranscript, root: Path
) -> None:
    assert created(b.say("b0 CREATE Trash"), "b0")
    _expunge_first(a)
    b.run(r"""
        C: b1 FETCH 1 (UID FLAGS BODY.PEEK[TEXT])
        S: * 1 FETCH (UID 1 FLAGS () BODY[TEXT] {12}
        S: first body
        S: )
        S: b1 OK FETCH completed
        C: b2 SEARCH BODY first
        S: * ESEARCH (TAG "b2") ALL 1
        S: b2 OK SEARCH completed
        C: b3 STORE 1 +FLAGS (\Flagged)
        S: b3 OK STORE completed
    """)
    uidvalidity = Account(root).mailbox("Trash").uidvalidity
    # COPY may carry the EXPUNGE (only FETCH, STORE and SEARCH may not).
    b.run(f"""
        C: b4 COPY 1 Trash
        S: * 1 EXPUNGE
        S: b4 OK [COPYUID {uidvalidity} 1 1] COPY completed
        C: b5 FETCH 1 (UID)
        S: * 1 FETCH (UID 2)
        S: b5 OK FETCH completed
    """)
    # The copy is the message, byte for byte.
    (copied,) = (root / ".Trash" / "cur").iterdir()
    assert copied.read_bytes().startswith(b"From: Bob <bob@example.test>\n")


def test_uid_fetch_answers_and_then_tells_of_the_expunge(
    a: IMAPTranscript, b: IMAPTranscript
) -> None:
    _expunge_first(a)
    # RFC 9051 §7.5.1: UID FETCH may carry the EXPUNGE, after its data.
    b.run("""
        C: b1 UID FETCH 1:2 (UID RFC822.SIZE)
        S: * 1 FETCH (UID 1 RFC822.SIZE 151)
        S: * 2 FETCH (UID 2 RFC822.SIZE 50)
        S: * 1 EXPUNGE
        S: b1 OK FETCH completed
    """)


def test_sessions_of_one_process_share_the_kept_message(root: Path) -> None:
    a = IMAPTranscript(root).login().select(enable_rev2=True)
    b = IMAPTranscript(root)
    b.server._open_account = lambda _address: a.account
    b.login().select(enable_rev2=True)
    _expunge_first(a)
    b.run("""
        C: b1 FETCH 1 (UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])
        S: * 1 FETCH (UID 1 BODY[HEADER.FIELDS (SUBJECT)] {16}
        S: Subject: one
        S:
        S: )
        S: b1 OK FETCH completed
        C: b2 IDLE
        S: * 1 EXPUNGE
        S: + idling
        C: DONE
        S: b2 OK IDLE terminated
    """)


def test_the_kept_file_waits_in_tmp_and_is_swept_later(
    a: IMAPTranscript, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _expunge_first(a)
    (kept,) = (root / "tmp").iterdir()
    assert kept.name.endswith(".expunged")
    assert len(list((root / "cur").iterdir())) == 2
    # A later expunge, once the time has passed, removes it.
    monkeypatch.setattr(retention, "RETAIN_SECONDS", -1)
    monkeypatch.setattr(retention, "_SWEEP_EVERY", 0.0)
    a.run(r"""
        C: a3 STORE 1 +FLAGS.SILENT (\Deleted)
        S: a3 OK STORE completed
        C: a4 EXPUNGE
        S: * 1 EXPUNGE
        S: a4 OK EXPUNGE completed
    """)
    assert not kept.exists()


def test_content_removed_by_another_program_is_expungeissued(
    a: IMAPTranscript, b: IMAPTranscript, root: Path
) -> None:
    _expunge_first(a)
    for kept in (root / "tmp").iterdir():
        os.unlink(kept)
    # RFC 2180 §4.1.3: only when the data is really gone.
    b.run("""
        C: b1 FETCH 1 (UID)
        S: * 1 FETCH (UID 1)
        S: b1 OK FETCH completed
        C: b2 FETCH 1 BODY.PEEK[]
        S: b2 NO [EXPUNGEISSUED] Some messages were expunged
    """)


def test_an_os_error_in_the_store_is_logged_with_its_traceback(
    a: IMAPTranscript, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(uids: object) -> list[int]:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(a.account.mailbox("INBOX"), "expunge", broken)
    with caplog.at_level(logging.ERROR, "mailstead.imap"):
        a.run("""
            C: a1 EXPUNGE
            S: a1 NO [UNAVAILABLE] Cannot do that now
        """)
    (record,) = caplog.records
    assert record.getMessage() == "IMAP EXPUNGE failed in the store"
    assert record.exc_info is not None and record.exc_info[0] is PermissionError
