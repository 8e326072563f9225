"""CONDSTORE (RFC 7162 §3.1) as C:/S: transcripts, byte for byte.

The INBOX holds the three MESSAGES; their first scan gives them all modseq 2
(a new mailbox starts at 1), and every later change takes the mailbox's next
modseq. A and B are two processes on the same Maildir.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.proto.imap.imap_transcript import IMAPTranscript, authed, selected, uidvalidity

FLAGS = r"(\Answered \Flagged \Deleted \Seen \Draft $Forwarded)"
PERMANENT = r"(\Answered \Flagged \Deleted \Seen \Draft $Forwarded \*)"


@pytest.fixture
def a(root: Path) -> IMAPTranscript:
    return selected(root)


@pytest.fixture
def b(root: Path, a: IMAPTranscript) -> IMAPTranscript:
    return selected(root)


# -- enabling (§3.1) ---------------------------------------------------------------


def test_select_condstore_reports_highestmodseq(root: Path) -> None:
    # §3.1.8: SELECT's CONDSTORE parameter; §3.1.2.1: HIGHESTMODSEQ in an
    # untagged OK, here after UIDVALIDITY and UIDNEXT; EXAMINE after it too.
    t = authed(root)
    for command, done in (("SELECT", "[READ-WRITE] SELECT"), ("EXAMINE", "[READ-ONLY] EXAMINE")):
        said = t.say(f"s {command} INBOX (CONDSTORE)")
        assert said.endswith(f"s OK {done} completed\r\n"), said
        lines = said.splitlines()
        assert lines.index("* OK [HIGHESTMODSEQ 2] Highest") > lines.index(
            f"* OK [UIDVALIDITY {uidvalidity(root)}] UIDs valid"
        )


def test_every_select_reports_highestmodseq(root: Path) -> None:
    # §3.1.2.1: a mailbox that keeps modseqs says so on every SELECT and
    # EXAMINE, CONDSTORE enabled or not (IMAPClient's select_folder reads it).
    t = authed(root)
    assert "* OK [HIGHESTMODSEQ 2] Highest\r\n" in t.say("s SELECT INBOX")
    assert "* OK [HIGHESTMODSEQ 2] Highest\r\n" in t.say("e EXAMINE INBOX")


def test_enable_condstore_while_selected_tells_highestmodseq(a: IMAPTranscript) -> None:
    a.run(r"""
        C: e ENABLE CONDSTORE
        S: * ENABLED CONDSTORE
        S: * OK [HIGHESTMODSEQ 2] Highest
        S: e OK ENABLE completed
        C: f ENABLE CONDSTORE
        S: * ENABLED
        S: f OK ENABLE completed
    """)


@pytest.mark.parametrize(
    "command",
    [
        "STATUS INBOX (HIGHESTMODSEQ)",
        "FETCH 1 (MODSEQ)",
        "FETCH 1:* (UID) (CHANGEDSINCE 0)",
        "SEARCH MODSEQ 0",
        r"STORE 1 (UNCHANGEDSINCE 0) -FLAGS.SILENT (\Flagged)",
        "ENABLE CONDSTORE",
    ],
)
def test_condstore_enabling_commands(a: IMAPTranscript, b: IMAPTranscript, command: str) -> None:
    # §3.1: each of these turns CONDSTORE on; in the selected state the
    # first one is answered with HIGHESTMODSEQ; from then on the flag
    # changes of other sessions come with their MODSEQ.
    assert "* OK [HIGHESTMODSEQ 2] Highest\r\n" in a.say(f"c {command}")
    b.say(r"s STORE 3 +FLAGS.SILENT (\Answered)")
    said = a.say("n NOOP")
    assert said.startswith("* 3 FETCH (UID 3 FLAGS (\\Answered \\Recent) MODSEQ ("), said


def test_status_highestmodseq(root: Path) -> None:
    # §3.1.6.
    authed(root).run(r"""
        C: s STATUS INBOX (MESSAGES HIGHESTMODSEQ)
        S: * STATUS "INBOX" (MESSAGES 3 HIGHESTMODSEQ 2)
        S: s OK STATUS completed
    """)


# -- FETCH MODSEQ and CHANGEDSINCE (§3.1.4.1) ------------------------------------------


def test_fetch_modseq_and_changedsince(a: IMAPTranscript) -> None:
    a.run(r"""
        C: f FETCH 1:* (FLAGS MODSEQ)
        S: * OK [HIGHESTMODSEQ 2] Highest
        S: * 1 FETCH (FLAGS (\Recent) MODSEQ (2))
        S: * 2 FETCH (FLAGS (\Recent) MODSEQ (2))
        S: * 3 FETCH (FLAGS (\Recent) MODSEQ (2))
        S: f OK FETCH completed
        C: s STORE 2 +FLAGS (\Answered)
        S: * 2 FETCH (UID 2 FLAGS (\Answered \Recent) MODSEQ (3))
        S: s OK STORE completed
        C: c FETCH 1:* (FLAGS) (CHANGEDSINCE 2)
        S: * 2 FETCH (FLAGS (\Answered \Recent) MODSEQ (3))
        S: c OK FETCH completed
        C: u UID FETCH 1:* (UID) (CHANGEDSINCE 3)
        S: u OK FETCH completed
    """)


def test_fetch_setting_seen_tells_uid_and_modseq(a: IMAPTranscript) -> None:
    # §3.1: a FETCH that sets \Seen reports UID and MODSEQ once CONDSTORE is on.
    a.say("e ENABLE CONDSTORE")
    a.run(r"""
        C: f FETCH 2 BODY[TEXT]
        S: * 2 FETCH (UID 2 BODY[TEXT] {8}
        S: second
        S:  MODSEQ (3) FLAGS (\Seen \Recent))
        S: f OK FETCH completed
    """)


def test_flag_changes_of_another_session_carry_modseq(a: IMAPTranscript, b: IMAPTranscript) -> None:
    a.say("e ENABLE CONDSTORE")
    b.say(r"s STORE 3 +FLAGS.SILENT ($Forwarded)")
    a.run(r"""
        C: n NOOP
        S: * 3 FETCH (UID 3 FLAGS ($Forwarded \Recent) MODSEQ (3))
        S: n OK NOOP completed
    """)


# -- STORE UNCHANGEDSINCE (§3.1.3) -----------------------------------------------------


def test_conditional_store_reports_modified(a: IMAPTranscript, b: IMAPTranscript) -> None:
    # Message 1 changed elsewhere after modseq 2: it fails the test, the others
    # are stored and their new MODSEQ is told even with .SILENT; then the
    # client hears message 1's new flags.
    b.say(r"s STORE 1 +FLAGS.SILENT (\Flagged)")
    a.run(r"""
        C: c STORE 1:3 (UNCHANGEDSINCE 2) +FLAGS.SILENT (\Deleted)
        S: * OK [HIGHESTMODSEQ 2] Highest
        S: * 2 FETCH (UID 2 MODSEQ (4))
        S: * 3 FETCH (UID 3 MODSEQ (4))
        S: * 1 FETCH (UID 1 FLAGS (\Flagged \Recent) MODSEQ (3))
        S: c OK [MODIFIED 1] Conditional STORE failed
        C: d UID STORE 1:3 (UNCHANGEDSINCE 3) FLAGS (\Seen)
        S: * 1 FETCH (UID 1 FLAGS (\Seen \Recent) MODSEQ (5))
        S: d OK [MODIFIED 2:3] Conditional STORE failed
        C: e STORE 1 (UNCHANGEDSINCE 5) -FLAGS (\Answered)
        S: * 1 FETCH (UID 1 FLAGS (\Seen \Recent) MODSEQ (5))
        S: e OK STORE completed
    """)


def test_unchangedsince_zero_always_fails(a: IMAPTranscript) -> None:
    # §3.1.3: every message has a modseq above 0.
    a.run(r"""
        C: z STORE 1:2 (UNCHANGEDSINCE 0) +FLAGS (\Seen)
        S: * OK [HIGHESTMODSEQ 2] Highest
        S: z OK [MODIFIED 1:2] Conditional STORE failed
    """)


def test_conditional_store_in_examine_is_refused(root: Path) -> None:
    t = authed(root)
    t.say("x EXAMINE INBOX")
    assert t.say(r"s STORE 1 (UNCHANGEDSINCE 9) +FLAGS (\Seen)").endswith(
        "s NO [READ-ONLY] Mailbox is read-only\r\n"
    )


# -- SEARCH MODSEQ (§3.1.5) --------------------------------------------------------------


def test_search_modseq(a: IMAPTranscript) -> None:
    a.say(r"s STORE 3 +FLAGS.SILENT (\Draft)")
    a.run(r"""
        C: f SEARCH MODSEQ 3
        S: * OK [HIGHESTMODSEQ 3] Highest
        S: * SEARCH 3 (MODSEQ 3)
        S: f OK SEARCH completed
        C: g SEARCH MODSEQ "/flags/\\draft" all 2
        S: * SEARCH 1 2 3 (MODSEQ 3)
        S: g OK SEARCH completed
        C: h SEARCH MODSEQ 4
        S: * SEARCH
        S: h OK SEARCH completed
        C: i UID SEARCH RETURN (MIN COUNT) MODSEQ 2
        S: * ESEARCH (TAG "i") UID MIN 1 COUNT 3 MODSEQ 3
        S: i OK SEARCH completed
        C: j SEARCH RETURN (MIN) MODSEQ 2
        S: * ESEARCH (TAG "j") MIN 1 MODSEQ 2
        S: j OK SEARCH completed
        C: k SEARCH UNSEEN
        S: * SEARCH 1 2 3
        S: k OK SEARCH completed
    """)


# -- EXPUNGE (and the expunges a session may not hear of yet) ----------------------------


def test_expunge_tells_highestmodseq(a: IMAPTranscript) -> None:
    a.run(r"""
        C: s STORE 2 +FLAGS.SILENT (\Deleted)
        S: s OK STORE completed
        C: e ENABLE CONDSTORE
        S: * ENABLED CONDSTORE
        S: * OK [HIGHESTMODSEQ 3] Highest
        S: e OK ENABLE completed
        C: x EXPUNGE
        S: * 2 EXPUNGE
        S: x OK [HIGHESTMODSEQ 4] EXPUNGE completed
    """)


def test_pending_expunge_holds_highestmodseq_back(a: IMAPTranscript, b: IMAPTranscript) -> None:
    # B flags message 1 \Deleted (modseq 3) and expunges it (4); A's STORE
    # by number may not hear of it (RFC 9051 §7.5.1) but tells a MODSEQ past
    # it: a HIGHESTMODSEQ from before the expunge follows, so a client that
    # resynchronises from it later still learns of the expunge. A
    # conditional STORE cannot change the expunged message: MODIFIED. Once
    # the expunge is told, so is the HIGHESTMODSEQ that covers it.
    a.say("e ENABLE CONDSTORE")
    b.say(r"s STORE 1 +FLAGS.SILENT (\Deleted)")
    b.say("x EXPUNGE")
    a.run(r"""
        C: c STORE 2 +FLAGS (\Seen)
        S: * 2 FETCH (UID 2 FLAGS (\Seen \Recent) MODSEQ (5))
        S: * OK [HIGHESTMODSEQ 2] Expunges pending
        S: c OK STORE completed
        C: d STORE 1:2 (UNCHANGEDSINCE 9) +FLAGS.SILENT (\Answered)
        S: * 2 FETCH (UID 2 MODSEQ (6))
        S: * OK [HIGHESTMODSEQ 2] Expunges pending
        S: d OK [MODIFIED 1] Conditional STORE failed
        C: n NOOP
        S: * 1 EXPUNGE
        S: * OK [HIGHESTMODSEQ 6] Highest
        S: n OK NOOP completed
    """)


# -- what the client may not send -------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "reply"),
    [
        (r"STORE 1 (UNCHANGEDSINCE -1) +FLAGS (\Seen)", "UNCHANGEDSINCE needs a mod-sequence"),
        (
            r"STORE 1 (UNCHANGEDSINCE 9223372036854775808) +FLAGS (\Seen)",
            "UNCHANGEDSINCE needs a mod-sequence",
        ),
        (r"STORE 1 (CHANGEDSINCE 1) +FLAGS (\Seen)", "The STORE modifier is"),
        ("STORE 1 (UNCHANGEDSINCE 1)", "Wrong number of arguments to STORE"),
        ("FETCH 1 FLAGS (CHANGEDSINCE)", "Unknown FETCH modifier CHANGEDSINCE"),
        ("FETCH 1 FLAGS (CHANGEDSINCE x)", "CHANGEDSINCE needs a mod-sequence"),
        ("FETCH 1 FLAGS (NOPE 1)", "Unknown FETCH modifier NOPE"),
        ("FETCH 1 FLAGS ()", "FETCH modifiers go in one parenthesized list"),
        ("UID FETCH 1 FLAGS (CHANGEDSINCE 1 VANISHED)", "QRESYNC must be enabled first"),
        ('SEARCH MODSEQ "/other/x" all 1', "MODSEQ entry names start with /flags/"),
        (r'SEARCH MODSEQ "/flags/\\seen" mine 1', "MODSEQ entry type is priv, shared or all"),
        ("SEARCH MODSEQ", "Missing mod-sequence"),
        ("SELECT INBOX (CONDSTORE NOPE)", "Unknown SELECT parameter NOPE"),
        ("SELECT INBOX CONDSTORE", "SELECT parameters go in one parenthesized list"),
    ],
)
def test_bad_arguments(a: IMAPTranscript, command: str, reply: str) -> None:
    said = a.say(f"t {command}")
    assert said.startswith(f"t BAD {reply}"), said
