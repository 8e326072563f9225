"""QRESYNC (RFC 7162 §3.2) as C:/S: transcripts, byte for byte.

The INBOX holds the three MESSAGES at modseq 2. B (another process) changes
the mailbox while A is away or selected; A resynchronises with ``SELECT …
(QRESYNC …)``, ``UID FETCH … (CHANGEDSINCE … VANISHED)``, and hears of
expunges as VANISHED.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mailstead.store import index
from tests.proto.imap.imap_transcript import (
    MESSAGES,
    IMAPTranscript,
    authed,
    deliver,
    selected,
    uidvalidity,
)


def _qresync(t: IMAPTranscript) -> IMAPTranscript:
    assert t.say("q ENABLE QRESYNC") == "* ENABLED QRESYNC\r\nq OK ENABLE completed\r\n"
    return t


def _changes_by_b(root: Path) -> None:
    """B flags message 2 (modseq 3), deletes message 3 (4) and expunges it (5)."""
    selected(root).run(r"""
        C: b1 STORE 2 +FLAGS.SILENT (\Answered)
        S: b1 OK STORE completed
        C: b2 STORE 3 +FLAGS.SILENT (\Deleted)
        S: b2 OK STORE completed
        C: b3 EXPUNGE
        S: * 3 EXPUNGE
        S: b3 OK EXPUNGE completed
    """)


def _tail(said: str, after: str) -> str:
    """What the server said after the line starting with ``after``."""
    start = said.index(after)
    return said[said.index("\r\n", start) + 2 :]


def test_select_qresync_tells_vanished_and_changed(root: Path) -> None:
    # §3.2.5: the changes since modseq 2 come after HIGHESTMODSEQ: the
    # expunged UIDs as VANISHED (EARLIER), then a FETCH of each changed message.
    uv = uidvalidity(root)
    a = _qresync(authed(root))
    _changes_by_b(root)
    said = a.say(f"s SELECT INBOX (QRESYNC ({uv} 2))")
    assert _tail(said, "* OK [HIGHESTMODSEQ 5]") == (
        "* VANISHED (EARLIER) 3\r\n"
        "* 2 FETCH (UID 2 FLAGS (\\Answered) MODSEQ (3))\r\n"
        "s OK [READ-WRITE] SELECT completed\r\n"
    )
    # Up to date: nothing to tell.
    said = a.say(f"t EXAMINE INBOX (QRESYNC ({uv} 5 1:3))")
    assert _tail(said, "* OK [HIGHESTMODSEQ 5]") == "t OK [READ-ONLY] EXAMINE completed\r\n"


def test_select_qresync_known_uids_and_seq_match(root: Path) -> None:
    uv = uidvalidity(root)
    a = _qresync(authed(root))
    _changes_by_b(root)
    # Known UIDs limit both the VANISHED and the FETCHes.
    said = a.say(f"s EXAMINE INBOX (QRESYNC ({uv} 2 3))")
    assert _tail(said, "* OK [HIGHESTMODSEQ 5]") == (
        "* VANISHED (EARLIER) 3\r\ns OK [READ-ONLY] EXAMINE completed\r\n"
    )
    said = a.say(f"t EXAMINE INBOX (QRESYNC ({uv} 2 1:2))")
    assert _tail(said, "* OK [HIGHESTMODSEQ 5]") == (
        "* 2 FETCH (UID 2 FLAGS (\\Answered) MODSEQ (3))\r\nt OK [READ-ONLY] EXAMINE completed\r\n"
    )
    # §3.2.5.2: the client's sequence numbers 1 and 2 still name UIDs 1 and
    # 2, so it knows of every expunge below UID 2.
    said = a.say(f"u EXAMINE INBOX (QRESYNC ({uv} 2 1:3 (1:2 1:2)))")
    assert "VANISHED" in said
    said = a.say(f"v EXAMINE INBOX (QRESYNC ({uv} 2 1:2 (1:2 1:2)))")
    assert "VANISHED" not in said


def test_select_qresync_with_another_uidvalidity_is_a_plain_select(root: Path) -> None:
    uv = uidvalidity(root)
    a = _qresync(authed(root))
    _changes_by_b(root)
    said = a.say(f"s SELECT INBOX (QRESYNC ({uv + 1} 2))")
    assert _tail(said, "* OK [HIGHESTMODSEQ 5]") == "s OK [READ-WRITE] SELECT completed\r\n"


def test_select_qresync_when_the_expunge_log_was_pruned(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With the log cut below the client's modseq, VANISHED (EARLIER) names
    # every UID it may know that is not here any more (§3.2.5 allows UIDs
    # the client never had).
    monkeypatch.setattr(index, "EXPUNGE_LOG_KEEP", 0)
    uv = uidvalidity(root)
    a = _qresync(authed(root))
    deliver(root, *MESSAGES)  # UIDs 4, 5, 6
    b = selected(root)
    for uid in (1, 3, 5):
        b.say(f"d{uid} UID STORE {uid} +FLAGS.SILENT (\\Deleted)")
        b.say(f"x{uid} UID EXPUNGE {uid}")
    said = a.say(f"s EXAMINE INBOX (QRESYNC ({uv} 2 1:*))")
    vanished = [line for line in said.splitlines() if "VANISHED" in line]
    assert vanished == ["* VANISHED (EARLIER) 1,3,5"], said


def test_qresync_needs_enable_first(root: Path) -> None:
    # §3.2.5: BAD without ENABLE QRESYNC; the selected mailbox stays selected.
    t = selected(root)
    t.run(rf"""
        C: s SELECT INBOX (QRESYNC ({uidvalidity(root)} 2))
        S: s BAD QRESYNC must be enabled first
        C: n NOOP
        S: n OK NOOP completed
    """)


@pytest.mark.parametrize(
    ("params", "reply"),
    [
        ("(QRESYNC)", "QRESYNC needs its parameters"),
        ("(QRESYNC (1))", "QRESYNC needs (uidvalidity modseq"),
        ("(QRESYNC (0 2))", "QRESYNC needs a UIDVALIDITY"),
        ("(QRESYNC (4294967296 2))", "QRESYNC needs a UIDVALIDITY"),
        ("(QRESYNC (1 0))", "QRESYNC needs a nonzero mod-sequence"),
        ("(QRESYNC (1 2 x))", "Invalid UID set"),
        ("(QRESYNC (1 2 $))", "$ is not a UID set"),
        ("(QRESYNC (1 2 1:3 (1:2)))", "QRESYNC seq-match data is"),
        ("(QRESYNC (1 2 1:3 (1 1) 5))", "QRESYNC needs (uidvalidity modseq"),
    ],
)
def test_bad_qresync_parameters(root: Path, params: str, reply: str) -> None:
    t = _qresync(authed(root))
    said = t.say(f"s SELECT INBOX {params}")
    assert said.startswith(f"s BAD {reply}"), said


# -- VANISHED in place of EXPUNGE (§3.2.10) --------------------------------------------


def test_vanished_replaces_expunge(root: Path) -> None:
    a = _qresync(authed(root))
    a.say("s SELECT INBOX")
    a.run(r"""
        C: d STORE 1:2 +FLAGS.SILENT (\Deleted)
        S: * 1 FETCH (UID 1 MODSEQ (3))
        S: * 2 FETCH (UID 2 MODSEQ (3))
        S: d OK STORE completed
        C: x UID EXPUNGE 2
        S: * VANISHED 2
        S: x OK [HIGHESTMODSEQ 4] EXPUNGE completed
        C: y EXPUNGE
        S: * VANISHED 1
        S: y OK [HIGHESTMODSEQ 5] EXPUNGE completed
    """)


def test_vanished_from_another_session_in_noop_idle_and_move(root: Path) -> None:
    a = _qresync(authed(root))
    a.say("s SELECT INBOX")
    a.say("c CREATE Trash")
    b = selected(root)
    b.say("x1 UID STORE 1 +FLAGS.SILENT (\\Deleted)")
    b.say("x2 UID EXPUNGE 1")
    a.run(r"""
        C: n NOOP
        S: * VANISHED 1
        S: * OK [HIGHESTMODSEQ 4] Highest
        S: n OK NOOP completed
    """)
    b.say("x3 UID STORE 2 +FLAGS.SILENT (\\Deleted)")
    b.say("x4 UID EXPUNGE 2")
    a.run(r"""
        C: i IDLE
        S: * VANISHED 2
        S: * OK [HIGHESTMODSEQ 6] Highest
        S: + idling
        C: DONE
        S: i OK IDLE terminated
    """)
    said = a.say("m UID MOVE 3 Trash")
    assert said.endswith("* VANISHED 3\r\nm OK [HIGHESTMODSEQ 7] MOVE completed\r\n"), said


# -- UID FETCH … (CHANGEDSINCE … VANISHED) (§3.2.6) ------------------------------------


def test_uid_fetch_changedsince_vanished(root: Path) -> None:
    a = _qresync(authed(root))
    a.say("s SELECT INBOX")
    _changes_by_b(root)
    a.run(r"""
        C: n NOOP
        S: * VANISHED 3
        S: * 2 FETCH (UID 2 FLAGS (\Answered \Recent) MODSEQ (3))
        S: * OK [HIGHESTMODSEQ 5] Highest
        S: n OK NOOP completed
        C: f UID FETCH 1:* (FLAGS) (CHANGEDSINCE 2 VANISHED)
        S: * VANISHED (EARLIER) 3
        S: * 2 FETCH (UID 2 FLAGS (\Answered \Recent) MODSEQ (3))
        S: f OK FETCH completed
        C: g UID FETCH 1:2 (FLAGS) (CHANGEDSINCE 2 VANISHED)
        S: * 2 FETCH (UID 2 FLAGS (\Answered \Recent) MODSEQ (3))
        S: g OK FETCH completed
        C: h UID FETCH 1:* (FLAGS) (CHANGEDSINCE 5 VANISHED)
        S: h OK FETCH completed
        C: i FETCH 1:* (FLAGS) (CHANGEDSINCE 2 VANISHED)
        S: i BAD VANISHED is for UID FETCH
        C: j UID FETCH 1:* (FLAGS) (VANISHED)
        S: j BAD VANISHED needs CHANGEDSINCE
    """)


def test_uid_fetch_vanished_leaves_an_untold_expunge_to_vanished(root: Path) -> None:
    # B expunged UID 3 after A last looked: A still numbers it, so it is no
    # EARLIER news; it comes as VANISHED (and B's flag change as an
    # unsolicited FETCH) once the command has run. Asked again, UID 3 is
    # EARLIER news.
    a = _qresync(authed(root))
    a.say("s SELECT INBOX")
    _changes_by_b(root)
    a.run(r"""
        C: f UID FETCH 1:* (FLAGS) (CHANGEDSINCE 2 VANISHED)
        S: * VANISHED 3
        S: * 2 FETCH (UID 2 FLAGS (\Answered \Recent) MODSEQ (3))
        S: * OK [HIGHESTMODSEQ 5] Highest
        S: f OK FETCH completed
        C: g UID FETCH 1:* (FLAGS) (CHANGEDSINCE 2 VANISHED)
        S: * VANISHED (EARLIER) 3
        S: * 2 FETCH (UID 2 FLAGS (\Answered \Recent) MODSEQ (3))
        S: g OK FETCH completed
    """)
