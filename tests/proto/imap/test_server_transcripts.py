"""The IMAP server over a real Maildir account, as C:/S: transcripts byte for byte.

``C:`` lines go to :class:`~mailstead.proto.imap.server.IMAPServer` in one
write per group; the ``S:`` lines after them are everything it answers.
The INBOX holds the three :data:`MESSAGES` (arrived 17, 18 and 19 July 1996);
``{V}`` in a transcript is the INBOX's UIDVALIDITY.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mailstead.limits import IMAPLimits
from tests.proto.imap.imap_transcript import (
    CAPS_AUTHED,
    CAPS_PLAIN,
    CAPS_TLS,
    HOST,
    MESSAGES,
    PLAIN,
    WHEN,
    IMAPTranscript,
    deliver,
)

GREETING_TLS = f"* OK [CAPABILITY {CAPS_TLS}] {HOST} IMAP4rev2 ready"
GREETING_PLAIN = f"* OK [CAPABILITY {CAPS_PLAIN}] {HOST} IMAP4rev2 ready"
LOGGED_IN = f"OK [CAPABILITY {CAPS_AUTHED}] Logged in"
# base64 of "\0alice@example.test\0alice-pw" and of a wrong password.
PLAIN_OK = "AGFsaWNlQGV4YW1wbGUudGVzdABhbGljZS1wdw=="
PLAIN_WRONG = "AGFsaWNlQGV4YW1wbGUudGVzdAB3cm9uZw=="
FLAGS = r"\Answered \Flagged \Deleted \Seen \Draft $Forwarded"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "Maildir"
    deliver(root, *MESSAGES, when=WHEN)
    return root


@pytest.fixture
def t(root: Path) -> IMAPTranscript:
    return IMAPTranscript(root)


def authed(root: Path) -> IMAPTranscript:
    return IMAPTranscript(root).login()


def selected(root: Path, *, rev2: bool = False) -> IMAPTranscript:
    return IMAPTranscript(root).login().select(enable_rev2=rev2)


def uidvalidity(root: Path, name: str = "INBOX") -> int:
    return IMAPTranscript(root).uidvalidity(name)


# -- greeting, CAPABILITY, TLS and login (RFC 9051 §6.1, §6.2) ---------------------


def test_capabilities_before_tls_offer_starttls_and_refuse_login(root: Path) -> None:
    t = IMAPTranscript(root, PLAIN)
    t.run(f"""
        S: {GREETING_PLAIN}
        C: a CAPABILITY
        S: * CAPABILITY {CAPS_PLAIN}
        S: a OK CAPABILITY completed
        C: b LOGIN alice@example.test alice-pw
        S: b NO [PRIVACYREQUIRED] LOGIN is disabled before STARTTLS
        C: c AUTHENTICATE PLAIN {PLAIN_OK}
        S: c NO [PRIVACYREQUIRED] Authentication needs TLS first
        C: d STARTTLS
        S: d OK Begin TLS negotiation now
        C: e CAPABILITY
        S: * CAPABILITY {CAPS_TLS}
        S: e OK CAPABILITY completed
        C: f STARTTLS
        S: f BAD TLS already active
        C: g LOGIN alice@example.test alice-pw
        S: g {LOGGED_IN}
        C: h CAPABILITY
        S: * CAPABILITY {CAPS_AUTHED}
        S: h OK CAPABILITY completed
    """)
    assert t.server.authenticated


def test_commands_pipelined_behind_starttls_are_discarded(root: Path) -> None:
    # RFC 9051 §6.2.1: anything after STARTTLS in the same write is dropped.
    t = IMAPTranscript(root, PLAIN)
    t.run(f"""
        S: {GREETING_PLAIN}
        C: a STARTTLS
        C: b LOGIN alice@example.test alice-pw
        S: a OK Begin TLS negotiation now
        C: c NOOP
        S: c OK NOOP completed
    """)
    assert not t.server.authenticated


def test_starttls_without_a_certificate_is_bad(root: Path) -> None:
    from mailstead.proto.imap.server import IMAPSettings

    t = IMAPTranscript(root, IMAPSettings(HOST))
    assert b"STARTTLS" not in t.output()
    t.run("""
        C: a STARTTLS
        S: a BAD TLS is not available
    """)


def test_authenticate_plain_with_initial_response(t: IMAPTranscript) -> None:
    t.run(f"""
        S: {GREETING_TLS}
        C: a AUTHENTICATE PLAIN {PLAIN_OK}
        S: a {LOGGED_IN}
        C: b LOGIN alice@example.test alice-pw
        S: b BAD Already logged in
    """)


def test_authenticate_plain_with_continuation(t: IMAPTranscript) -> None:
    t.run(f"""
        S: {GREETING_TLS}
        C: a AUTHENTICATE PLAIN
        S: +\x20
        C: {PLAIN_OK}
        S: a {LOGGED_IN}
    """)


def test_authenticate_login_mechanism(t: IMAPTranscript) -> None:
    t.run(f"""
        S: {GREETING_TLS}
        C: a AUTHENTICATE LOGIN
        S: + VXNlcm5hbWU6
        C: YWxpY2VAZXhhbXBsZS50ZXN0
        S: + UGFzc3dvcmQ6
        C: YWxpY2UtcHc=
        S: a {LOGGED_IN}
    """)


def test_authenticate_cancelled_with_star(t: IMAPTranscript) -> None:
    # RFC 9051 §6.2.2: "*" cancels; the server answers BAD.
    t.run(f"""
        S: {GREETING_TLS}
        C: a AUTHENTICATE PLAIN
        S: +\x20
        C: *
        S: a BAD Authentication cancelled
        C: b AUTHENTICATE CRAM-MD5
        S: b NO Unsupported authentication mechanism
        C: c LOGIN alice@example.test alice-pw
        S: c {LOGGED_IN}
    """)


def test_literal_login(t: IMAPTranscript) -> None:
    t.run(f"""
        S: {GREETING_TLS}
        C: a LOGIN {{18}}
        S: + Ready for literal data
        C: alice@example.test {{8+}}
        C: alice-pw
        S: a {LOGGED_IN}
    """)


def test_three_failed_logins_end_the_session(t: IMAPTranscript) -> None:
    t.run(f"""
        S: {GREETING_TLS}
        C: a LOGIN alice@example.test wrong
        S: a NO [AUTHENTICATIONFAILED] Authentication failed
        C: b AUTHENTICATE PLAIN {PLAIN_WRONG}
        S: b NO [AUTHENTICATIONFAILED] Authentication failed
        C: c LOGIN nobody@example.test alice-pw
        S: c NO [AUTHENTICATIONFAILED] Authentication failed
        S: * BYE Too many failed logins
    """)
    assert t.closed
    assert t.feed(b"d LOGIN alice@example.test alice-pw\r\n") == b""


def test_commands_before_login(t: IMAPTranscript) -> None:
    t.run(f"""
        S: {GREETING_TLS}
        C: a SELECT INBOX
        S: a BAD Log in first
        C: b ENABLE IMAP4rev2
        S: b BAD Log in first
        C: c FROB
        S: c BAD Unknown command FROB
        C: d NOOP
        S: d OK NOOP completed
        C: e ID NIL
        S: * ID ("name" "Mailstead")
        S: e OK ID completed
        C: f LOGOUT
        S: * BYE Logging out
        S: f OK LOGOUT completed
    """)
    assert t.closed


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
        S: * LIST () "/" "INBOX"
        S: b OK [READ-WRITE] SELECT completed
        C: c ENABLE IMAP4rev2
        S: * ENABLED
        S: c OK ENABLE completed
    """)


def test_keywords_show_in_flags_after_use(root: Path) -> None:
    t = selected(root)
    t.run(rf"""
        C: a STORE 1 +FLAGS ($Label1)
        S: * 1 FETCH (FLAGS ($Label1))
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
        S: b OK [READ-ONLY] EXAMINE completed
    """)


# -- FETCH (RFC 9051 §6.4.5) -------------------------------------------------------


BOB = '(("Bob" NIL "bob" "example.test"))'
ENVELOPE_1 = (
    f'(ENVELOPE ("Wed, 17 Jul 1996 02:44:25 -0700" "one" {BOB} {BOB} {BOB}'
    ' ((NIL NIL "alice" "example.test")) NIL NIL NIL "<1@example.test>"))'
)


def test_fetch_variants(root: Path) -> None:
    selected(root).run(rf"""
        C: a FETCH 1:* (UID FLAGS INTERNALDATE RFC822.SIZE)
        S: * 1 FETCH (UID 1 FLAGS () INTERNALDATE "17-Jul-1996 09:44:25 +0000" RFC822.SIZE 151)
        S: * 2 FETCH (UID 2 FLAGS () INTERNALDATE "18-Jul-1996 09:44:25 +0000" RFC822.SIZE 50)
        S: * 3 FETCH (UID 3 FLAGS () INTERNALDATE "19-Jul-1996 09:44:25 +0000" RFC822.SIZE 88)
        S: a OK FETCH completed
        C: b FETCH 1 BODY.PEEK[HEADER.FIELDS (SUBJECT)]
        S: * 1 FETCH (BODY[HEADER.FIELDS (SUBJECT)] {{16}}
        S: Subject: one
        S:
        S: )
        S: b OK FETCH completed
        C: c FETCH 2 BODY[]
        S: * 2 FETCH (BODY[] {{50}}
        S: From: carol@example.test
        S: Subject: two
        S:
        S: second
        S:  FLAGS (\Seen))
        S: c OK FETCH completed
        C: d FETCH 2 BODY[]
        S: * 2 FETCH (BODY[] {{50}}
        S: From: carol@example.test
        S: Subject: two
        S:
        S: second
        S: )
        S: d OK FETCH completed
        C: e UID FETCH 3 (FLAGS)
        S: * 3 FETCH (UID 3 FLAGS ())
        S: e OK FETCH completed
        C: f UID FETCH 2:* FLAGS
        S: * 2 FETCH (UID 2 FLAGS (\Seen))
        S: * 3 FETCH (UID 3 FLAGS ())
        S: f OK FETCH completed
        C: g UID FETCH 9 FLAGS
        S: g OK FETCH completed
        C: h FETCH 1 ENVELOPE
        S: * 1 FETCH {ENVELOPE_1}
        S: h OK FETCH completed
        C: i FETCH 1 (BODY[TEXT] BODY.PEEK[HEADER.FIELDS (FROM)])
        S: * 1 FETCH (BODY[TEXT] {{12}}
        S: first body
        S:  BODY[HEADER.FIELDS (FROM)] {{32}}
        S: From: Bob <bob@example.test>
        S:
        S:  FLAGS (\Seen))
        S: i OK FETCH completed
        C: j FETCH 3 BODY[]<0.7>
        S: * 3 FETCH (BODY[]<0> "From: d" FLAGS (\Seen))
        S: j OK FETCH completed
    """)


def test_fetch_in_examine_sets_no_seen(root: Path) -> None:
    t = authed(root)
    t.feed(b"a EXAMINE INBOX\r\n")
    t.run("""
        C: b FETCH 2 BODY[TEXT]
        S: * 2 FETCH (BODY[TEXT] {8}
        S: second
        S: )
        S: b OK FETCH completed
        C: c FETCH 2 FLAGS
        S: * 2 FETCH (FLAGS ())
        S: c OK FETCH completed
    """)


# -- STORE (RFC 9051 §6.4.6) -------------------------------------------------------


def test_store_variants(root: Path) -> None:
    selected(root).run(r"""
        C: a STORE 1 +FLAGS (\Flagged \Seen)
        S: * 1 FETCH (FLAGS (\Flagged \Seen))
        S: a OK STORE completed
        C: b STORE 1 -FLAGS (\Flagged)
        S: * 1 FETCH (FLAGS (\Seen))
        S: b OK STORE completed
        C: c STORE 1:2 FLAGS.SILENT (\Deleted)
        S: c OK STORE completed
        C: d FETCH 1:2 FLAGS
        S: * 1 FETCH (FLAGS (\Deleted))
        S: * 2 FETCH (FLAGS (\Deleted))
        S: d OK FETCH completed
        C: e UID STORE 3 +FLAGS \Answered
        S: * 3 FETCH (UID 3 FLAGS (\Answered))
        S: e OK STORE completed
        C: f STORE 3 +FLAGS.SILENT ($Forwarded)
        S: f OK STORE completed
        C: g STORE 3 FLAGS ()
        S: * 3 FETCH (FLAGS ())
        S: g OK STORE completed
        C: h STORE 1 +FLAGS (\Recent)
        S: h BAD Unknown system flag \Recent
        C: i STORE 1 BOGUS (\Seen)
        S: i BAD Unknown STORE item BOGUS
    """)


def test_store_flags_survive_in_file_names(root: Path) -> None:
    selected(root).say(r"a STORE 2 +FLAGS (\Seen \Answered)")
    names = sorted(p.name for p in (root / "cur").iterdir())
    assert [n.rsplit(",", 1)[-1] for n in names] == ["", "RS", ""]


# -- SEARCH (RFC 9051 §6.4.4, RFC 4731 ESEARCH) ---------------------------------------


def test_search_classic_and_esearch(root: Path) -> None:
    selected(root).run(r"""
        C: a SEARCH ALL
        S: * SEARCH 1 2 3
        S: a OK SEARCH completed
        C: b SEARCH SUBJECT two
        S: * SEARCH 2
        S: b OK SEARCH completed
        C: c SEARCH RETURN (MIN MAX COUNT ALL) ALL
        S: * ESEARCH (TAG "c") MIN 1 MAX 3 COUNT 3 ALL 1:3
        S: c OK SEARCH completed
        C: d UID SEARCH RETURN (COUNT) UNSEEN
        S: * ESEARCH (TAG "d") UID COUNT 3
        S: d OK SEARCH completed
        C: e SEARCH SUBJECT nothing-like-this
        S: * SEARCH
        S: e OK SEARCH completed
        C: f SEARCH RETURN (MIN) SUBJECT nothing-like-this
        S: * ESEARCH (TAG "f")
        S: f OK SEARCH completed
        C: g SEARCH CHARSET KOI8-R SUBJECT x
        S: g NO [BADCHARSET (UTF-8)] Only UTF-8 is supported
    """)


def test_search_in_imap4rev2_answers_esearch(root: Path) -> None:
    # RFC 9051 §6.4.4: IMAP4rev2 has no SEARCH response; no RETURN means ALL.
    t = selected(root)
    t.run("""
        C: a ENABLE IMAP4rev2
        S: * ENABLED IMAP4rev2
        S: a OK ENABLE completed
        C: b SEARCH SUBJECT o
        S: * ESEARCH (TAG "b") ALL 1:2
        S: b OK SEARCH completed
        C: c UID SEARCH FROM nobody-here
        S: * ESEARCH (TAG "c") UID
        S: c OK SEARCH completed
    """)


def test_search_save_with_min_keeps_only_the_minimum(root: Path) -> None:
    # RFC 5182 §2.4: SAVE with MIN (and no ALL/COUNT) saves just the minimum.
    selected(root).run("""
        C: a SEARCH RETURN (SAVE MIN) ALL
        S: * ESEARCH (TAG "a") MIN 1
        S: a OK SEARCH completed
        C: b FETCH $ (UID)
        S: * 1 FETCH (UID 1)
        S: b OK FETCH completed
    """)


def test_header_search_answers_the_same_from_remembered_fields(root: Path) -> None:
    t = selected(root)
    for tag in "ab":
        t.run(f"""
            C: {tag} SEARCH OR SUBJECT gr FROM carol
            S: * SEARCH 2 3
            S: {tag} OK SEARCH completed
        """)
    # A field outside the remembered ones still reads the message.
    t.run("""
        C: c SEARCH HEADER Message-ID 1@example
        S: * SEARCH 1
        S: c OK SEARCH completed
    """)


def test_search_charset_utf8(root: Path) -> None:
    t = selected(root)
    assert t.feed(b'a SEARCH CHARSET UTF-8 SUBJECT "gr\xc3\xbc\xc3\x9fe"\r\n') == (
        b"* SEARCH 3\r\na OK SEARCH completed\r\n"
    )
    t.run("""
        C: b SEARCH CHARSET UTF-8 SUBJECT {6}
        S: + Ready for literal data
    """)
    assert t.feed(b"gr\xc3\xbc\xc3\x9f\r\n") == b"* SEARCH 3\r\nb OK SEARCH completed\r\n"


# -- COPY / MOVE (RFC 9051 §6.4.7, §6.4.8, RFC 6851, RFC 4315) ----------------------------


def test_copy_and_move_with_copyuid(root: Path) -> None:
    t = selected(root)
    assert t.say("c CREATE Archive") == "c OK CREATE completed\r\n"
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
        C: c CREATE Trash
        S: c OK CREATE completed
    """)
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
        S: * 3 RECENT
        S: * OK [UNSEEN 1] First unseen
        S: * OK [UIDVALIDITY {v}] UIDs valid
        S: * OK [UIDNEXT 6] Predicted next UID
        S: c OK [READ-WRITE] SELECT completed
        C: d FETCH 4 (UID FLAGS INTERNALDATE RFC822.SIZE)
        S: * 4 FETCH (UID 4 FLAGS ($Label \Seen) INTERNALDATE "{JAN_1}" RFC822.SIZE 12)
        S: d OK FETCH completed
        C: e FETCH 5 (UID FLAGS RFC822.SIZE)
        S: * 5 FETCH (UID 5 FLAGS () RFC822.SIZE 10)
        S: e OK FETCH completed
    """)


def test_append_to_the_selected_mailbox_announces_exists(root: Path) -> None:
    v = uidvalidity(root)
    selected(root).run(f"""
        C: a APPEND INBOX {{10+}}
        C: Subject: y
        S: * 4 EXISTS
        S: * 3 RECENT
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


# -- LIST / LSUB / STATUS (RFC 9051 §6.3.9-§6.3.11, RFC 5258, RFC 6154, RFC 5819) --------


@pytest.fixture
def tree(root: Path) -> IMAPTranscript:
    t = authed(root)
    for command in ("a CREATE Work/Projects/", "b CREATE Trash", "c SUBSCRIBE Work/Projects"):
        assert t.say(command).endswith("OK " + command.split()[1] + " completed\r\n")
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


def test_status(root: Path) -> None:
    v = uidvalidity(root)
    t = selected(root)
    t.say(r"a STORE 1 +FLAGS.SILENT (\Seen \Deleted)")
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


# -- CREATE / DELETE / RENAME (RFC 9051 §6.3.4-§6.3.6) -----------------------------------


def test_create_delete_rename(root: Path) -> None:
    authed(root).run(r"""
        C: a CREATE Work/Projects
        S: a OK CREATE completed
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
        C: g CREATE Other
        S: g OK CREATE completed
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


# -- NAMESPACE, ID, ENABLE, IDLE, NOOP, LOGOUT, UID misuse -------------------------------


def test_session_commands(root: Path) -> None:
    authed(root).run("""
        C: a NAMESPACE
        S: * NAMESPACE (("" "/")) NIL NIL
        S: a OK NAMESPACE completed
        C: b ID ("name" "test-client" "version" "1")
        S: * ID ("name" "Mailstead")
        S: b OK ID completed
        C: c ENABLE UTF8=ACCEPT X-UNKNOWN
        S: * ENABLED UTF8=ACCEPT
        S: c OK ENABLE completed
        C: d NOOP
        S: d OK NOOP completed
        C: e CHECK
        S: e BAD No mailbox selected
        C: f UID NOOP
        S: f BAD UID NOOP is not a command
        C: g UID SELECT INBOX
        S: g BAD UID SELECT is not a command
        C: h LOGOUT
        S: * BYE Logging out
        S: h OK LOGOUT completed
    """)


def test_idle_and_done(root: Path) -> None:
    t = selected(root)
    t.run("""
        C: a IDLE
        S: + idling
        C: DONE
        S: a OK IDLE terminated
        C: b IDLE
        S: + idling
        C: nonsense
        S: b BAD Expected DONE
        C: c NOOP
        S: c OK NOOP completed
    """)
    assert not t.server.idling


def test_idle_reports_a_delivery_on_poll(root: Path) -> None:
    # The session polls every idle_poll_interval; 0 makes every poll look.
    t = IMAPTranscript(root, limits=IMAPLimits(idle_poll_interval=0.0)).login()
    t.select(enable_rev2=True)
    t.run("""
        C: a IDLE
        S: + idling
    """)
    assert t.server.idling
    deliver(root, b"Subject: new\n\nhi\n")
    t.server.poll()
    assert t.server.data_to_send() == b"* 4 EXISTS\r\n"
    t.server.poll()
    assert t.server.data_to_send() == b""
    t.run("""
        C: DONE
        S: a OK IDLE terminated
    """)


def test_timeout_says_bye(root: Path) -> None:
    t = selected(root)
    t.server.timeout()
    assert t.output() == b"* BYE Autologout; idle for too long\r\n"
    assert t.closed
