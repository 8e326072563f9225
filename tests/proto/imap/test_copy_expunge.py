"""COPY, MOVE, EXPUNGE, CLOSE and UNSELECT, as C:/S: transcripts byte for byte."""

from __future__ import annotations

from pathlib import Path

from tests.proto.imap.imap_transcript import (
    FLAGS,
    authed,
    created,
    selected,
    uidvalidity,
)

# -- COPY / MOVE (RFC 9051 §6.4.7, §6.4.8, RFC 6851, RFC 4315) ----------------------------


def test_copy_and_move_with_copyuid(root: Path) -> None:
    t = selected(root)
    assert created(t.say("c CREATE Archive"), "c")
    a = uidvalidity(root, "Archive")
    t.run(rf"""
        C: a COPY 1 Nowhere
        S: a NO [TRYCREATE] Mailbox does not exist
        C: b COPY 1:2 Archive
        S: b OK [COPYUID {a} 1:2 1:2] COPY completed
        C: d MOVE 2:3 Archive
        S: * OK [COPYUID {a} 2:3 3:4] Moved
        S: * 3 EXPUNGE
        S: * 2 EXPUNGE
        S: d OK MOVE completed
        C: e UID MOVE 1 Archive
        S: * OK [COPYUID {a} 1 5] Moved
        S: * 1 EXPUNGE
        S: e OK MOVE completed
        C: f NOOP
        S: f OK NOOP completed
        C: g STATUS Archive (MESSAGES UIDNEXT)
        S: * STATUS "Archive" (MESSAGES 5 UIDNEXT 6)
        S: g OK STATUS completed
        C: h UID COPY 1 Archive
        S: h OK COPY completed
    """)


def test_move_in_examine_is_refused_copy_is_not(root: Path) -> None:
    t = authed(root)
    t.say("a EXAMINE INBOX")
    t.run("""
        C: b MOVE 1 Trash
        S: b NO [TRYCREATE] Mailbox does not exist
    """)
    t.create("c", "Trash")
    t.run(rf"""
        C: d MOVE 1 Trash
        S: d NO [READ-ONLY] Mailbox is read-only
        C: e COPY 1 Trash
        S: e OK [COPYUID {uidvalidity(root, "Trash")} 1 1] COPY completed
    """)


# -- EXPUNGE / UID EXPUNGE / CLOSE / UNSELECT (RFC 9051 §6.4.1-§6.4.3, RFC 4315 §2.1) -----


def test_expunge_and_uid_expunge(root: Path) -> None:
    selected(root).run(r"""
        C: a STORE 1:3 +FLAGS.SILENT (\Deleted)
        S: a OK STORE completed
        C: b UID EXPUNGE 2
        S: * 2 EXPUNGE
        S: b OK EXPUNGE completed
        C: c UID EXPUNGE 7:9
        S: c OK EXPUNGE completed
        C: d EXPUNGE
        S: * 2 EXPUNGE
        S: * 1 EXPUNGE
        S: d OK EXPUNGE completed
        C: e FETCH 1:* FLAGS
        S: e BAD Message sequence number out of range
        C: f SEARCH ALL
        S: * SEARCH
        S: f OK SEARCH completed
    """)
    assert list((root / "cur").iterdir()) == []


def test_close_expunges_silently_unselect_does_not(root: Path) -> None:
    v = uidvalidity(root)
    selected(root).run(rf"""
        C: a STORE 1 +FLAGS.SILENT (\Deleted)
        S: a OK STORE completed
        C: b UNSELECT
        S: b OK UNSELECT completed
        C: c STATUS INBOX (MESSAGES)
        S: * STATUS "INBOX" (MESSAGES 3)
        S: c OK STATUS completed
        C: d SELECT INBOX
        S: * FLAGS ({FLAGS})
        S: * OK [PERMANENTFLAGS ({FLAGS} \*)] Flags permitted
        S: * 3 EXISTS
        S: * 0 RECENT
        S: * OK [UNSEEN 1] First unseen
        S: * OK [UIDVALIDITY {v}] UIDs valid
        S: * OK [UIDNEXT 4] Predicted next UID
        S: * OK [MAILBOXID (F{v:08x})] Ok
        S: * OK [HIGHESTMODSEQ 3] Highest
        S: d OK [READ-WRITE] SELECT completed
        C: e CLOSE
        S: e OK CLOSE completed
        C: f STATUS INBOX (MESSAGES)
        S: * STATUS "INBOX" (MESSAGES 2)
        S: f OK STATUS completed
        C: g CLOSE
        S: g BAD No mailbox selected
        C: h EXPUNGE
        S: h BAD No mailbox selected
    """)


def test_close_in_examine_expunges_nothing(root: Path) -> None:
    t = selected(root)
    t.say(r"a STORE 1 +FLAGS.SILENT (\Deleted)")
    t.say("b EXAMINE INBOX")
    t.run("""
        C: c CLOSE
        S: c OK CLOSE completed
        C: d STATUS INBOX (MESSAGES DELETED)
        S: * STATUS "INBOX" (MESSAGES 3 DELETED 1)
        S: d OK STATUS completed
    """)
