"""SELECT, EXAMINE, CREATE, DELETE, RENAME and APPEND, as C:/S: transcripts byte for byte.

The INBOX holds the three :data:`~tests.proto.imap.imap_transcript.MESSAGES`;
``{v}`` is its UIDVALIDITY.
"""

from __future__ import annotations

from pathlib import Path

from tests.proto.imap.imap_transcript import (
    FLAGS,
    authed,
    selected,
    uidvalidity,
)

# -- SELECT / EXAMINE (RFC 9051 §6.3.2, §6.3.3; RFC 3501 §6.3.1) -----------------------


def test_select_rev1_then_examine(root: Path) -> None:
    v = uidvalidity(root)
    authed(root).run(rf"""
        C: a SELECT INBOX
        S: * FLAGS ({FLAGS})
        S: * OK [PERMANENTFLAGS ({FLAGS} \*)] Flags permitted
        S: * 3 EXISTS
        S: * 3 RECENT
        S: * OK [UNSEEN 1] First unseen
        S: * OK [UIDVALIDITY {v}] UIDs valid
        S: * OK [UIDNEXT 4] Predicted next UID
        S: * OK [MAILBOXID (F{v:08x})] Ok
        S: * OK [HIGHESTMODSEQ 2] Highest
        S: a OK [READ-WRITE] SELECT completed
        C: b EXAMINE INBOX
        S: * OK [CLOSED] Previous mailbox closed
        S: * FLAGS ({FLAGS})
        S: * OK [PERMANENTFLAGS ()] Flags permitted
        S: * 3 EXISTS
        S: * 0 RECENT
        S: * OK [UNSEEN 1] First unseen
        S: * OK [UIDVALIDITY {v}] UIDs valid
        S: * OK [UIDNEXT 4] Predicted next UID
        S: * OK [MAILBOXID (F{v:08x})] Ok
        S: * OK [HIGHESTMODSEQ 2] Highest
        S: b OK [READ-ONLY] EXAMINE completed
        C: c SELECT Nowhere
        S: * OK [CLOSED] Previous mailbox closed
        S: c NO [NONEXISTENT] Mailbox does not exist
        C: d FETCH 1 FLAGS
        S: d BAD No mailbox selected
    """)


def test_select_after_enable_imap4rev2(root: Path) -> None:
    # RFC 9051 §6.3.2: no RECENT, no UNSEEN, and a LIST response instead.
    v = uidvalidity(root)
    authed(root).run(rf"""
        C: a ENABLE IMAP4rev2
        S: * ENABLED IMAP4rev2
        S: a OK ENABLE completed
        C: b SELECT INBOX
        S: * FLAGS ({FLAGS})
        S: * OK [PERMANENTFLAGS ({FLAGS} \*)] Flags permitted
        S: * 3 EXISTS
        S: * OK [UIDVALIDITY {v}] UIDs valid
        S: * OK [UIDNEXT 4] Predicted next UID
        S: * OK [MAILBOXID (F{v:08x})] Ok
        S: * LIST () "/" "INBOX"
        S: * OK [HIGHESTMODSEQ 2] Highest
        S: b OK [READ-WRITE] SELECT completed
        C: c ENABLE IMAP4rev2
        S: * ENABLED
        S: c OK ENABLE completed
    """)


def test_keywords_show_in_flags_after_use(root: Path) -> None:
    t = selected(root)
    t.run(rf"""
        C: a STORE 1 +FLAGS ($Label1)
        S: * FLAGS ({FLAGS} $Label1)
        S: * OK [PERMANENTFLAGS ({FLAGS} $Label1 \*)] Flags permitted
        S: * 1 FETCH (FLAGS ($Label1 \Recent))
        S: a OK STORE completed
        C: b EXAMINE INBOX
        S: * OK [CLOSED] Previous mailbox closed
        S: * FLAGS ({FLAGS} $Label1)
        S: * OK [PERMANENTFLAGS ()] Flags permitted
        S: * 3 EXISTS
        S: * 0 RECENT
        S: * OK [UNSEEN 1] First unseen
        S: * OK [UIDVALIDITY {uidvalidity(root)}] UIDs valid
        S: * OK [UIDNEXT 4] Predicted next UID
        S: * OK [MAILBOXID (F{uidvalidity(root):08x})] Ok
        S: * OK [HIGHESTMODSEQ 3] Highest
        S: b OK [READ-ONLY] EXAMINE completed
    """)


# -- APPEND (RFC 9051 §6.3.12, RFC 4315 APPENDUID) -------------------------------------


JAN_1 = "01-Jan-2020 09:00:00 +0000"


def test_append_with_flags_and_date(root: Path) -> None:
    t = authed(root)
    v = uidvalidity(root)
    t.run(rf"""
        C: a APPEND INBOX (\Seen $Label) "01-Jan-2020 10:00:00 +0100" {{12}}
        S: + Ready for literal data
        C: Subject: x
        C:
        S: a OK [APPENDUID {v} 4] APPEND completed
        C: b APPEND INBOX {{10+}}
        C: Subject: y
        S: b OK [APPENDUID {v} 5] APPEND completed
        C: c SELECT INBOX
        S: * FLAGS ({FLAGS} $Label)
        S: * OK [PERMANENTFLAGS ({FLAGS} $Label \*)] Flags permitted
        S: * 5 EXISTS
        S: * 5 RECENT
        S: * OK [UNSEEN 1] First unseen
        S: * OK [UIDVALIDITY {v}] UIDs valid
        S: * OK [UIDNEXT 6] Predicted next UID
        S: * OK [MAILBOXID (F{v:08x})] Ok
        S: * OK [HIGHESTMODSEQ 4] Highest
        S: c OK [READ-WRITE] SELECT completed
        C: d FETCH 4 (UID FLAGS INTERNALDATE RFC822.SIZE)
        S: * 4 FETCH (UID 4 FLAGS ($Label \Seen \Recent) INTERNALDATE "{JAN_1}" RFC822.SIZE 12)
        S: d OK FETCH completed
        C: e FETCH 5 (UID FLAGS RFC822.SIZE)
        S: * 5 FETCH (UID 5 FLAGS (\Recent) RFC822.SIZE 10)
        S: e OK FETCH completed
    """)


def test_append_to_the_selected_mailbox_announces_exists(root: Path) -> None:
    v = uidvalidity(root)
    selected(root).run(f"""
        C: a APPEND INBOX {{10+}}
        C: Subject: y
        S: * 4 EXISTS
        S: * 4 RECENT
        S: a OK [APPENDUID {v} 4] APPEND completed
    """)


def test_append_refusals(root: Path) -> None:
    authed(root).run(
        r"""
        C: a APPEND Nowhere {10}
        S: + Ready for literal data
        C: Subject: y
        S: a NO [TRYCREATE] Mailbox does not exist
        C: b APPEND INBOX (\Bogus) {10+}
        C: Subject: y
        S: b BAD Unknown system flag \Bogus
        C: c APPEND INBOX "31-Feb-2020 10:00:00 +0000" {10+}
        C: Subject: y
        S: c BAD Invalid date-time
        C: d APPEND INBOX {0}
        S: + Ready for literal data
        C:
        S: d NO Empty message
        C: e APPEND INBOX {2+}
        C: a\x00
        S: e BAD NUL octet in literal
    """.replace("\\x00", "\x00")
    )


# -- CREATE / DELETE / RENAME (RFC 9051 §6.3.4-§6.3.6) -----------------------------------


def test_create_delete_rename(root: Path) -> None:
    t = authed(root).create("a", "Work/Projects")
    t.run(r"""
        C: b CREATE Work/Projects
        S: b NO [ALREADYEXISTS] Mailbox already exists
        C: c CREATE INBOX
        S: c NO [ALREADYEXISTS] INBOX always exists
        C: d RENAME Work/Projects Play/Games
        S: d OK RENAME completed
        C: e LIST "" "*"
        S: * LIST (\HasNoChildren) "/" "INBOX"
        S: * LIST (\NonExistent \HasChildren) "/" "Play"
        S: * LIST (\HasNoChildren) "/" "Play/Games"
        S: e OK LIST completed
        C: f RENAME Nowhere Elsewhere
        S: f NO [NONEXISTENT] Mailbox does not exist
    """)
    t.create("g", "Other").run(r"""
        C: h RENAME Other Play/Games
        S: h NO [ALREADYEXISTS] Mailbox already exists
        C: i DELETE Play/Games
        S: i OK DELETE completed
        C: j DELETE Play/Games
        S: j NO [NONEXISTENT] Mailbox does not exist
        C: k DELETE INBOX
        S: k NO [CANNOT] INBOX cannot be deleted
        C: l LIST "" "*"
        S: * LIST (\HasNoChildren) "/" "INBOX"
        S: * LIST (\HasNoChildren) "/" "Other"
        S: l OK LIST completed
    """)


def test_rename_moves_children_along(root: Path) -> None:
    t = authed(root)
    t.say("a CREATE Work")
    t.say("b CREATE Work/Projects")
    t.run(r"""
        C: c RENAME Work Play
        S: c OK RENAME completed
        C: d LIST "" "*"
        S: * LIST (\HasNoChildren) "/" "INBOX"
        S: * LIST (\HasChildren) "/" "Play"
        S: * LIST (\HasNoChildren) "/" "Play/Projects"
        S: d OK LIST completed
        C: e RENAME Play Play/Sub
        S: e NO [CANNOT] Cannot move a mailbox into itself
    """)


def test_rename_inbox_moves_its_messages(root: Path) -> None:
    # RFC 9051 §6.3.6: INBOX stays, empty; its messages go to the new name.
    t = selected(root)
    t.run(r"""
        C: a RENAME INBOX Old
        S: * 3 EXPUNGE
        S: * 2 EXPUNGE
        S: * 1 EXPUNGE
        S: a OK RENAME completed
        C: b STATUS Old (MESSAGES)
        S: * STATUS "Old" (MESSAGES 3)
        S: b OK STATUS completed
        C: c STATUS INBOX (MESSAGES UIDNEXT)
        S: * STATUS "INBOX" (MESSAGES 0 UIDNEXT 4)
        S: c OK STATUS completed
    """)


def test_subscriptions_do_not_leak_into_plain_list(root: Path) -> None:
    # RFC 9051 §6.3.9: a subscription to a mailbox that is gone is no
    # reason for LIST (without SUBSCRIBED) to show its parent.
    t = authed(root)
    t.say("a CREATE Work/Projects")
    t.say("b SUBSCRIBE Work/Projects")
    t.say("c DELETE Work/Projects")
    t.run(r"""
        C: d LIST "" "*"
        S: * LIST (\HasNoChildren) "/" "INBOX"
        S: d OK LIST completed
        C: e LIST (SUBSCRIBED) "" "*"
        S: * LIST (\NonExistent \Subscribed) "/" "Work/Projects"
        S: e OK LIST completed
    """)
