"""Keywords a session was not told of, and flag syntax (RFC 3501 §7.2.6, RFC 9051 §7.3.5).

SELECT's FLAGS names every flag the client may see. When a FETCH is about
to show a keyword that list did not hold (another session made it, or this
one did with STORE), the server first sends FLAGS again, and the
PERMANENTFLAGS that goes with it, so that the client's list is never
behind what it is shown. A flag list that breaks the grammar is BAD.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.proto.imap.imap_transcript import FLAGS, IMAPTranscript


@pytest.fixture
def a(root: Path) -> IMAPTranscript:
    return IMAPTranscript(root).login().select(enable_rev2=True)


@pytest.fixture
def b(root: Path, a: IMAPTranscript) -> IMAPTranscript:
    return IMAPTranscript(root).login().select(enable_rev2=True)


def test_keyword_made_elsewhere_is_announced_before_its_fetch(
    a: IMAPTranscript, b: IMAPTranscript
) -> None:
    b.say("b1 STORE 1 +FLAGS.SILENT ($Important)")
    a.run(rf"""
        C: a1 NOOP
        S: * FLAGS ({FLAGS} $Important)
        S: * OK [PERMANENTFLAGS ({FLAGS} $Important \*)] Flags permitted
        S: * 1 FETCH (UID 1 FLAGS ($Important))
        S: a1 OK NOOP completed
        C: a2 FETCH 1 FLAGS
        S: * 1 FETCH (FLAGS ($Important))
        S: a2 OK FETCH completed
    """)


def test_fetch_that_first_shows_a_keyword_announces_it(root: Path) -> None:
    # Two sessions of one process share the mailbox: B's STORE is in A's
    # records at once, so A's FETCH is the first to show the keyword.
    a = IMAPTranscript(root).login().select(enable_rev2=True)
    b = IMAPTranscript(root)
    b.server._open_account = lambda _address: a.account
    b.login().select(enable_rev2=True)
    b.say("b1 STORE 2 +FLAGS.SILENT (Work)")
    a.run(rf"""
        C: a1 UID FETCH 2 (FLAGS)
        S: * FLAGS ({FLAGS} Work)
        S: * OK [PERMANENTFLAGS ({FLAGS} Work \*)] Flags permitted
        S: * 2 FETCH (UID 2 FLAGS (Work))
        S: a1 OK FETCH completed
    """)


def test_own_store_of_a_new_keyword_announces_it_once(a: IMAPTranscript) -> None:
    a.run(rf"""
        C: a1 STORE 3 +FLAGS ($Todo)
        S: * FLAGS ({FLAGS} $Todo)
        S: * OK [PERMANENTFLAGS ({FLAGS} $Todo \*)] Flags permitted
        S: * 3 FETCH (FLAGS ($Todo))
        S: a1 OK STORE completed
        C: a2 STORE 2 +FLAGS ($Todo)
        S: * 2 FETCH (FLAGS ($Todo))
        S: a2 OK STORE completed
    """)


def test_read_only_session_is_told_no_flag_is_permanent(root: Path, b: IMAPTranscript) -> None:
    reader = IMAPTranscript(root).login()
    reader.say("E ENABLE IMAP4rev2")
    reader.say("r1 EXAMINE INBOX")
    b.say("b1 STORE 1 +FLAGS.SILENT ($Later)")
    reader.run(f"""
        C: r2 NOOP
        S: * FLAGS ({FLAGS} $Later)
        S: * OK [PERMANENTFLAGS ()] Flags permitted
        S: * 1 FETCH (UID 1 FLAGS ($Later))
        S: r2 OK NOOP completed
    """)


@pytest.mark.parametrize(
    ("command", "answer"),
    [
        (r"STORE 1 +FLAGS (\Bogus)", r"BAD Unknown system flag \Bogus"),
        (r"STORE 1 +FLAGS (\Recent)", r"BAD Unknown system flag \Recent"),
        ('STORE 1 +FLAGS ("quoted")', "BAD Expected a flag"),
        ("STORE 1 +FLAGS (a%b)", "BAD Invalid keyword"),
        ("STORE 1 +FLAGS (a*)", "BAD Invalid keyword"),
        ("STORE 1 +FLAGS (caf\u00e9)", "BAD Invalid character in command"),
        ("STORE 1 +FLAGS (NIL)", None),
    ],
)
def test_flag_syntax(a: IMAPTranscript, command: str, answer: str | None) -> None:
    said = a.say("t " + command)
    if answer is None:
        assert said.endswith("t OK STORE completed\r\n"), said
    else:
        assert said == f"t {answer}\r\n"
