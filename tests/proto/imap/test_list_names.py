"""Mailbox names as arguments, LIST-EXTENDED and LSUB, as C:/S: transcripts byte for byte.

The tree of the LIST-EXTENDED cases is the one a strict conformance client
builds (names under ``t/``): parents made by their children do not exist.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.proto.imap.imap_transcript import IMAPTranscript, authed, created

# Every ASTRING-CHAR that is not a letter (RFC 9051 §9), "[" and "}" included.
ODD = "!#$&'+,-.0123456789:;<=>?@^_`|[}"


def test_odd_astring_parses_and_names_no_mailbox(root: Path) -> None:
    # Before UTF8=ACCEPT the "&" starts modified UTF-7 (RFC 3501 §5.1.3), which
    # "&'+,-" is not: no mailbox can have the name. In a UTF-8 session it is
    # a plain name that does not exist. LIST with it answers, empty.
    authed(root).run(f"""
        C: a SELECT {ODD}
        S: a NO [CANNOT] Mailbox name is not valid modified UTF-7
        C: b LIST "" {ODD}%*
        S: b OK LIST completed
        C: c ENABLE IMAP4rev2
        S: * ENABLED IMAP4rev2
        S: c OK ENABLE completed
        C: d SELECT {ODD}
        S: d NO [NONEXISTENT] Mailbox does not exist
        C: e LIST "" {ODD}%*
        S: e OK LIST completed
        C: f EXAMINE "{ODD}"
        S: f NO [NONEXISTENT] Mailbox does not exist
    """)


def test_modified_utf7_names_list_back_exactly(root: Path) -> None:
    # RFC 3501 §5.1.3: patterns are matched as the client spells names, so a
    # wildcard may stand inside an encoded run; RFC 6855 §3 / RFC 9051 §5.1:
    # once UTF8=ACCEPT is on the same mailboxes are listed in UTF-8.
    authed(root).create("a", "p&AOQA5A-").create("b", "a&-b").run(r"""
        C: c LIST "" *
        S: * LIST (\HasNoChildren) "/" "INBOX"
        S: * LIST (\HasNoChildren) "/" "a&-b"
        S: * LIST (\HasNoChildren) "/" "p&AOQA5A-"
        S: c OK LIST completed
        C: d LIST "" p&AOQA5A-
        S: * LIST (\HasNoChildren) "/" "p&AOQA5A-"
        S: d OK LIST completed
        C: e LIST "" p&AOQ*
        S: * LIST (\HasNoChildren) "/" "p&AOQA5A-"
        S: e OK LIST completed
        C: f LIST "" *&-*
        S: * LIST (\HasNoChildren) "/" "a&-b"
        S: f OK LIST completed
        C: g ENABLE UTF8=ACCEPT
        S: * ENABLED UTF8=ACCEPT
        S: g OK ENABLE completed
        C: h LIST "" *
        S: * LIST (\HasNoChildren) "/" "INBOX"
        S: * LIST (\HasNoChildren) "/" "a&b"
        S: * LIST (\HasNoChildren) "/" "pää"
        S: h OK LIST completed
        C: i LIST "" "pä*"
        S: * LIST (\HasNoChildren) "/" "pää"
        S: i OK LIST completed
        C: j LIST "" p&AOQ*
        S: j OK LIST completed
        C: k STATUS "pää" (MESSAGES)
        S: * STATUS "pää" (MESSAGES 0)
        S: k OK STATUS completed
    """)


@pytest.fixture
def tree(root: Path) -> IMAPTranscript:
    t = authed(root)
    names = ("test1", "test2/", "test2/test1", "test3", "test4/test5", "test4/test52")
    names += ("test6", "test7/test7", "test8/test8", "test8/test9")
    for name in names:
        assert created(t.say(f"c CREATE t/{name}"), "c")
    for name in ("test1", "test2/test1", "test6", "test7/test7", "test8/test8", "test8/test9"):
        assert t.say(f"s SUBSCRIBE t/{name}") == "s OK SUBSCRIBE completed\r\n"
    assert t.say("d DELETE t/test6") == "d OK DELETE completed\r\n"
    return t


def test_list_extended_errors(tree: IMAPTranscript) -> None:
    # RFC 5258 §3: RECURSIVEMATCH alone or only with REMOTE is BAD; unknown
    # options are BAD; REMOTE alone lists as usual.
    tree.run(r"""
        C: a LIST (RECURSIVEMATCH) "" ""
        S: a BAD RECURSIVEMATCH needs another selection option
        C: b LIST (RECURSIVEMATCH REMOTE) "" ""
        S: b BAD RECURSIVEMATCH needs another selection option
        C: c LIST (REMOTE RECURSIVEMATCH RECURSIVEMATCH) "" "%"
        S: c BAD RECURSIVEMATCH needs another selection option
        C: d LIST (IMAPTEST) "" ""
        S: d BAD Unknown selection option IMAPTEST
        C: e LIST "" "" RETURN (IMAPTEST)
        S: e BAD Unknown return option IMAPTEST
        C: f LIST (REMOTE) "" %
        S: * LIST (\HasNoChildren) "/" "INBOX"
        S: * LIST (\NonExistent \HasChildren) "/" "t"
        S: f OK LIST completed
    """)


def test_list_extended_multiple_patterns_and_subscribed(tree: IMAPTranscript) -> None:
    # RFC 5258 §3 (patterns in parentheses), §3.4 / §5.3 (a subscribed name
    # that is gone is \NonExistent \Subscribed, never \Noselect).
    tree.run(r"""
        C: a LIST "" (t/*2 t/test3)
        S: * LIST (\HasChildren) "/" "t/test2"
        S: * LIST (\HasNoChildren) "/" "t/test3"
        S: * LIST (\HasNoChildren) "/" "t/test4/test52"
        S: a OK LIST completed
        C: b LIST (SUBSCRIBED) "" t/*
        S: * LIST (\HasNoChildren \Subscribed) "/" "t/test1"
        S: * LIST (\HasNoChildren \Subscribed) "/" "t/test2/test1"
        S: * LIST (\NonExistent \Subscribed) "/" "t/test6"
        S: * LIST (\HasNoChildren \Subscribed) "/" "t/test7/test7"
        S: * LIST (\HasNoChildren \Subscribed) "/" "t/test8/test8"
        S: * LIST (\HasNoChildren \Subscribed) "/" "t/test8/test9"
        S: b OK LIST completed
        C: c LIST "" t/% RETURN (CHILDREN SUBSCRIBED)
        S: * LIST (\HasNoChildren \Subscribed) "/" "t/test1"
        S: * LIST (\HasChildren) "/" "t/test2"
        S: * LIST (\HasNoChildren) "/" "t/test3"
        S: * LIST (\NonExistent \HasChildren) "/" "t/test4"
        S: * LIST (\NonExistent \HasChildren) "/" "t/test7"
        S: * LIST (\NonExistent \HasChildren) "/" "t/test8"
        S: c OK LIST completed
    """)


def test_childinfo_only_for_a_subscribed_child_no_pattern_reaches(tree: IMAPTranscript) -> None:
    # RFC 5258 §3.5: CHILDINFO reports a descendant that meets the selection
    # but is not itself listed. t/test7's one subscribed child matches
    # *test7, so t/test7 is not listed; t/test8/test9 does not match *test8.
    tree.run(r"""
        C: a LIST (SUBSCRIBED RECURSIVEMATCH) "" t/test2% RETURN (CHILDREN)
        S: * LIST (\HasChildren) "/" "t/test2" ("CHILDINFO" ("SUBSCRIBED"))
        S: a OK LIST completed
        C: b LIST (SUBSCRIBED RECURSIVEMATCH) "" *test7
        S: * LIST (\HasNoChildren \Subscribed) "/" "t/test7/test7"
        S: b OK LIST completed
        C: c LIST (SUBSCRIBED RECURSIVEMATCH) "" *test8
        S: * LIST (\NonExistent \HasChildren) "/" "t/test8" ("CHILDINFO" ("SUBSCRIBED"))
        S: * LIST (\HasNoChildren \Subscribed) "/" "t/test8/test8"
        S: c OK LIST completed
        C: d LIST (SUBSCRIBED RECURSIVEMATCH) "" (t/test2)
        S: * LIST (\HasChildren) "/" "t/test2" ("CHILDINFO" ("SUBSCRIBED"))
        S: d OK LIST completed
        C: e LIST (SUBSCRIBED RECURSIVEMATCH) "" (t/test2 t/test2/test1)
        S: * LIST (\HasNoChildren \Subscribed) "/" "t/test2/test1"
        S: e OK LIST completed
    """)


def test_childinfo_for_a_subscribed_parent_too(tree: IMAPTranscript) -> None:
    # RFC 5258 §3.5: CHILDINFO is about the children, whatever the parent is.
    tree.say("s SUBSCRIBE t/test2")
    tree.run(r"""
        C: a LIST (SUBSCRIBED RECURSIVEMATCH) "" t/%
        S: * LIST (\HasNoChildren \Subscribed) "/" "t/test1"
        S: * LIST (\HasChildren \Subscribed) "/" "t/test2" ("CHILDINFO" ("SUBSCRIBED"))
        S: * LIST (\NonExistent \Subscribed) "/" "t/test6"
        S: * LIST (\NonExistent \HasChildren) "/" "t/test7" ("CHILDINFO" ("SUBSCRIBED"))
        S: * LIST (\NonExistent \HasChildren) "/" "t/test8" ("CHILDINFO" ("SUBSCRIBED"))
        S: a OK LIST completed
    """)


def test_lsub_noselect_only_for_a_parent_that_percent_stops_at(tree: IMAPTranscript) -> None:
    # RFC 3501 §6.3.9: "%" lists an unsubscribed parent of subscribed names it
    # does not reach, with \Noselect; a subscribed name that is gone is listed
    # as it is (LSUB attributes need not be accurate); "*" reaches the children.
    tree.run(r"""
        C: a LSUB "" t/%
        S: * LSUB () "/" "t/test1"
        S: * LSUB (\Noselect) "/" "t/test2"
        S: * LSUB () "/" "t/test6"
        S: * LSUB (\Noselect) "/" "t/test7"
        S: * LSUB (\Noselect) "/" "t/test8"
        S: a OK LSUB completed
        C: b LSUB "" %
        S: * LSUB (\Noselect) "/" "t"
        S: b OK LSUB completed
        C: c LSUB "" *test1
        S: * LSUB () "/" "t/test1"
        S: * LSUB () "/" "t/test2/test1"
        S: c OK LSUB completed
        C: d LSUB "" t/test4/%
        S: d OK LSUB completed
    """)


def test_lsub_ignores_parents_of_unsubscribed_mailboxes(root: Path) -> None:
    # Work/Projects exists but nobody subscribed it: Work is no LSUB parent.
    authed(root).create("a", "Work/Projects").run(r"""
        C: b LSUB "" %
        S: b OK LSUB completed
        C: c SUBSCRIBE INBOX
        S: c OK SUBSCRIBE completed
        C: d LSUB "" %
        S: * LSUB () "/" "INBOX"
        S: d OK LSUB completed
    """)
