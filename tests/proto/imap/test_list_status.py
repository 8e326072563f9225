"""LIST, LSUB and STATUS, as C:/S: transcripts byte for byte."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.proto.imap.imap_transcript import (
    IMAPTranscript,
    authed,
    selected,
    uidvalidity,
)

# -- LIST / LSUB / STATUS (RFC 9051 §6.3.9-§6.3.11, RFC 5258, RFC 6154, RFC 5819) --------


@pytest.fixture
def tree(root: Path) -> IMAPTranscript:
    t = authed(root)
    for command in ("a CREATE Work/Projects/", "b CREATE Trash", "c SUBSCRIBE Work/Projects"):
        assert t.say(command).endswith(" " + command.split()[1] + " completed\r\n")
    return t


def test_list_variants(tree: IMAPTranscript) -> None:
    tree.run(r"""
        C: a LIST "" "*"
        S: * LIST (\HasNoChildren) "/" "INBOX"
        S: * LIST (\HasNoChildren \Trash) "/" "Trash"
        S: * LIST (\NonExistent \HasChildren) "/" "Work"
        S: * LIST (\HasNoChildren) "/" "Work/Projects"
        S: a OK LIST completed
        C: b LIST "" "%"
        S: * LIST (\HasNoChildren) "/" "INBOX"
        S: * LIST (\HasNoChildren \Trash) "/" "Trash"
        S: * LIST (\NonExistent \HasChildren) "/" "Work"
        S: b OK LIST completed
        C: c LIST "INBOX" "*"
        S: * LIST (\HasNoChildren) "/" "INBOX"
        S: c OK LIST completed
        C: d LIST "Work/" "%"
        S: * LIST (\HasNoChildren) "/" "Work/Projects"
        S: d OK LIST completed
        C: e LIST "" ""
        S: * LIST (\Noselect) "/" ""
        S: e OK LIST completed
        C: f LIST (SUBSCRIBED) "" "*"
        S: * LIST (\HasNoChildren \Subscribed) "/" "Work/Projects"
        S: f OK LIST completed
        C: g LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"
        S: * LIST (\NonExistent \HasChildren) "/" "Work" ("CHILDINFO" ("SUBSCRIBED"))
        S: g OK LIST completed
        C: h LIST (SPECIAL-USE) "" "*"
        S: * LIST (\HasNoChildren \Trash) "/" "Trash"
        S: h OK LIST completed
        C: i LIST "" "*" RETURN (CHILDREN SPECIAL-USE STATUS (MESSAGES))
        S: * LIST (\HasNoChildren) "/" "INBOX"
        S: * STATUS "INBOX" (MESSAGES 3)
        S: * LIST (\HasNoChildren \Trash) "/" "Trash"
        S: * STATUS "Trash" (MESSAGES 0)
        S: * LIST (\NonExistent \HasChildren) "/" "Work"
        S: * LIST (\HasNoChildren) "/" "Work/Projects"
        S: * STATUS "Work/Projects" (MESSAGES 0)
        S: i OK LIST completed
        C: j LIST "" "*" RETURN (SUBSCRIBED)
        S: * LIST (\HasNoChildren) "/" "INBOX"
        S: * LIST (\HasNoChildren \Trash) "/" "Trash"
        S: * LIST (\NonExistent \HasChildren) "/" "Work"
        S: * LIST (\HasNoChildren \Subscribed) "/" "Work/Projects"
        S: j OK LIST completed
        C: k LIST (BOGUS) "" "*"
        S: k BAD Unknown selection option BOGUS
        C: l LIST (RECURSIVEMATCH) "" "*"
        S: l BAD RECURSIVEMATCH needs another selection option
    """)


def test_lsub(tree: IMAPTranscript) -> None:
    tree.run(r"""
        C: a LSUB "" "*"
        S: * LSUB () "/" "Work/Projects"
        S: a OK LSUB completed
        C: b LSUB "" "%"
        S: * LSUB (\Noselect) "/" "Work"
        S: b OK LSUB completed
        C: c UNSUBSCRIBE Work/Projects
        S: c OK UNSUBSCRIBE completed
        C: d LSUB "" "*"
        S: d OK LSUB completed
        C: e SUBSCRIBE Nowhere
        S: e NO [NONEXISTENT] Mailbox does not exist
    """)


def test_status_recent_counts_what_no_session_has_selected(root: Path) -> None:
    # RFC 3501 §6.3.10, §2.3.2: delivered, appended or copied in, not yet taken.
    t = authed(root)
    t.run("""
        C: a STATUS INBOX (RECENT)
        S: * STATUS "INBOX" (RECENT 3)
        S: a OK STATUS completed
    """)
    t.say("b SELECT INBOX")
    t.say("c CREATE Work")
    t.say("d COPY 1:2 Work")
    t.run("""
        C: e STATUS INBOX (RECENT)
        S: * STATUS "INBOX" (RECENT 0)
        S: e OK STATUS completed
        C: f STATUS Work (MESSAGES RECENT)
        S: * STATUS "Work" (MESSAGES 2 RECENT 2)
        S: f OK STATUS completed
    """)


def test_status(root: Path) -> None:
    v = uidvalidity(root)
    t = selected(root)
    t.say(r"a STORE 1 +FLAGS.SILENT (\Seen \Deleted)")
    # RECENT 0: this session's SELECT took the three as \Recent (RFC 3501 §2.3.2).
    counts = f"MESSAGES 3 UIDNEXT 4 UIDVALIDITY {v} UNSEEN 2 DELETED 1 SIZE 289 RECENT 0"
    t.run(f"""
        C: b STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY UNSEEN DELETED SIZE RECENT)
        S: * STATUS "INBOX" ({counts})
        S: b OK STATUS completed
        C: c STATUS Nowhere (MESSAGES)
        S: c NO [NONEXISTENT] Mailbox does not exist
        C: d STATUS INBOX (BOGUS)
        S: d BAD Unknown status item BOGUS
        C: e STATUS INBOX ()
        S: e BAD STATUS needs at least one item
    """)
