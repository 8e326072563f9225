"""FETCH and STORE over the INBOX's three messages, as C:/S: transcripts byte for byte."""

from __future__ import annotations

from pathlib import Path

from tests.proto.imap.imap_transcript import authed, selected

# -- FETCH (RFC 9051 §6.4.5) -------------------------------------------------------


BOB = '(("Bob" NIL "bob" "example.test"))'
ENVELOPE_1 = (
    f'(ENVELOPE ("Wed, 17 Jul 1996 02:44:25 -0700" "one" {BOB} {BOB} {BOB}'
    ' ((NIL NIL "alice" "example.test")) NIL NIL NIL "<1@example.test>"))'
)


DATE_1, DATE_2, DATE_3 = (f'"{day}-Jul-1996 09:44:25 +0000"' for day in (17, 18, 19))


def test_fetch_variants(root: Path) -> None:
    # IMAP4rev1: this session selected the messages first, so they are
    # \Recent in it (RFC 3501 §2.3.2).
    selected(root).run(rf"""
        C: a FETCH 1:* (UID FLAGS INTERNALDATE RFC822.SIZE)
        S: * 1 FETCH (UID 1 FLAGS (\Recent) INTERNALDATE {DATE_1} RFC822.SIZE 151)
        S: * 2 FETCH (UID 2 FLAGS (\Recent) INTERNALDATE {DATE_2} RFC822.SIZE 50)
        S: * 3 FETCH (UID 3 FLAGS (\Recent) INTERNALDATE {DATE_3} RFC822.SIZE 88)
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
        S:  FLAGS (\Seen \Recent))
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
        S: * 3 FETCH (UID 3 FLAGS (\Recent))
        S: e OK FETCH completed
        C: f UID FETCH 2:* FLAGS
        S: * 2 FETCH (UID 2 FLAGS (\Seen \Recent))
        S: * 3 FETCH (UID 3 FLAGS (\Recent))
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
        S:  FLAGS (\Seen \Recent))
        S: i OK FETCH completed
        C: j FETCH 3 BODY[]<0.7>
        S: * 3 FETCH (BODY[]<0> "From: d" FLAGS (\Seen \Recent))
        S: j OK FETCH completed
    """)


def test_fetch_in_examine_sets_no_seen(root: Path) -> None:
    t = authed(root)
    t.feed(b"a EXAMINE INBOX\r\n")
    t.run(r"""
        C: b FETCH 2 BODY[TEXT]
        S: * 2 FETCH (BODY[TEXT] {8}
        S: second
        S: )
        S: b OK FETCH completed
        C: c FETCH 2 FLAGS
        S: * 2 FETCH (FLAGS (\Recent))
        S: c OK FETCH completed
    """)


# -- STORE (RFC 9051 §6.4.6) -------------------------------------------------------


def test_store_variants(root: Path) -> None:
    selected(root).run(r"""
        C: a STORE 1 +FLAGS (\Flagged \Seen)
        S: * 1 FETCH (FLAGS (\Flagged \Seen \Recent))
        S: a OK STORE completed
        C: b STORE 1 -FLAGS (\Flagged)
        S: * 1 FETCH (FLAGS (\Seen \Recent))
        S: b OK STORE completed
        C: c STORE 1:2 FLAGS.SILENT (\Deleted)
        S: c OK STORE completed
        C: d FETCH 1:2 FLAGS
        S: * 1 FETCH (FLAGS (\Deleted \Recent))
        S: * 2 FETCH (FLAGS (\Deleted \Recent))
        S: d OK FETCH completed
        C: e UID STORE 3 +FLAGS \Answered
        S: * 3 FETCH (UID 3 FLAGS (\Answered \Recent))
        S: e OK STORE completed
        C: f STORE 3 +FLAGS.SILENT ($Forwarded)
        S: f OK STORE completed
        C: g STORE 3 FLAGS ()
        S: * 3 FETCH (FLAGS (\Recent))
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
