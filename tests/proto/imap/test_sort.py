"""SORT and UID SORT (RFC 5256), SORT=DISPLAY (RFC 5957) and ESORT (RFC 5267), as transcripts.

The mailbox holds five messages chosen so that every key orders them
differently: Re/Fwd/[blob]/(fwd) subjects, an RFC 2047 display name, Date
fields in three zones, one missing and one broken (the internal date
stands in: RFC 5256 §2.2).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.proto.imap.imap_transcript import WHEN, IMAPTranscript, authed, deliver, selected

MAIL = (
    b"From: Zed <zed@example.test>\nTo: bob@example.test\nCc: amy@example.test\n"
    b"Subject: Re: Hello\nDate: Wed, 3 Jan 2024 10:00:00 +0000\n\nsee you\n",
    b"From: amy@example.test\nTo: Carl <carl@example.test>\nSubject: [list] apples\n"
    b"Date: Mon, 1 Jan 2024 12:00:00 +0100\n\nfresh apples, a whole crate of them today\n",
    b"From: Bob <bob@example.test>\nTo: amy@example.test\nCc: zed@example.test\n"
    b"Subject: hello (fwd)\nDate: Tue, 2 Jan 2024 09:00:00 -0500\n\nforwarded\n",
    b"From: =?UTF-8?Q?=C3=84rger?= <aerger@example.test>\nTo: zed@example.test\n"
    b"Subject: =?UTF-8?Q?Fwd:_=C3=84pfel?=\n\nno date here\n",
    b"From: carl@example.test\nSubject: bananas\nDate: the day after tomorrow\n\nb\n",
)


@pytest.fixture
def box(tmp_path: Path) -> Path:
    root = tmp_path / "Maildir"
    deliver(root, *MAIL, when=WHEN)  # arrived 17, 18, ... 21 July 1996
    return root


def test_every_sort_key(box: Path) -> None:
    # RFC 5256 §3: base subjects hello, apples, hello, äpfel, bananas; ties by number.
    selected(box).run("""
        C: a SORT (SUBJECT) UTF-8 ALL
        S: * SORT 2 4 5 1 3
        S: a OK SORT completed
        C: b SORT (DATE) UTF-8 ALL
        S: * SORT 4 5 2 3 1
        S: b OK SORT completed
        C: c SORT (ARRIVAL) UTF-8 ALL
        S: * SORT 1 2 3 4 5
        S: c OK SORT completed
        C: d SORT (FROM) UTF-8 ALL
        S: * SORT 4 2 3 5 1
        S: d OK SORT completed
        C: e SORT (TO) UTF-8 ALL
        S: * SORT 5 3 1 2 4
        S: e OK SORT completed
        C: f SORT (CC) UTF-8 ALL
        S: * SORT 2 4 5 1 3
        S: f OK SORT completed
        C: g SORT (SIZE) UTF-8 ALL
        S: * SORT 5 4 1 3 2
        S: g OK SORT completed
    """)


def test_display_keys_use_the_decoded_name_else_the_address(box: Path) -> None:
    # RFC 5957 §3: "amy@example.test" < "Ärger" (i;unicode-casemap) < "Bob" < "carl@..." < "Zed".
    selected(box).run("""
        C: a SORT (DISPLAYFROM) UTF-8 ALL
        S: * SORT 2 4 3 5 1
        S: a OK SORT completed
        C: b SORT (DISPLAYTO) UTF-8 ALL
        S: * SORT 5 3 1 2 4
        S: b OK SORT completed
    """)


def test_reverse_applies_to_the_next_key_only(box: Path) -> None:
    # Both "hello" messages tie on SUBJECT; REVERSE ARRIVAL puts the later first.
    selected(box).run("""
        C: a SORT (SUBJECT REVERSE ARRIVAL) UTF-8 ALL
        S: * SORT 2 4 5 3 1
        S: a OK SORT completed
        C: b SORT (REVERSE SUBJECT) UTF-8 ALL
        S: * SORT 1 3 5 4 2
        S: b OK SORT completed
        C: c SORT (REVERSE DATE) UTF-8 ALL
        S: * SORT 1 3 2 5 4
        S: c OK SORT completed
    """)


def test_search_criteria_and_uid_sort(box: Path) -> None:
    t = selected(box)
    t.run("""
        C: a STORE 2 +FLAGS.SILENT (\\Deleted)
        S: a OK STORE completed
        C: b EXPUNGE
        S: * 2 EXPUNGE
        S: b OK EXPUNGE completed
        C: c SORT (DATE) UTF-8 NOT CC amy
        S: * SORT 3 4 2
        S: c OK SORT completed
        C: d UID SORT (DATE) UTF-8 NOT CC amy
        S: * SORT 4 5 3
        S: d OK SORT completed
        C: e UID SORT (FROM) UTF-8 OR FROM bob SUBJECT bananas
        S: * SORT 3 5
        S: e OK SORT completed
        C: f SORT (SUBJECT) UTF-8 SUBJECT nothing-like-this
        S: * SORT
        S: f OK SORT completed
    """)


def test_esort_return_options(box: Path) -> None:
    # RFC 5267 §4.2: MIN and MAX are the first and last in sort order; ALL keeps it.
    selected(box).run("""
        C: a SORT RETURN (MIN MAX COUNT ALL) (DATE) UTF-8 ALL
        S: * ESEARCH (TAG "a") MIN 4 MAX 1 COUNT 5 ALL 4:5,2:3,1
        S: a OK SORT completed
        C: b UID SORT RETURN () (REVERSE ARRIVAL) UTF-8 ALL
        S: * ESEARCH (TAG "b") UID ALL 5,4,3,2,1
        S: b OK SORT completed
        C: c SORT RETURN (COUNT MIN) (SUBJECT) UTF-8 FROM nobody
        S: * ESEARCH (TAG "c") COUNT 0
        S: c OK SORT completed
        C: d SORT RETURN (SAVE) (DATE) UTF-8 FROM bob
        S: d OK SORT completed
        C: e FETCH $ (UID)
        S: * 3 FETCH (UID 3)
        S: e OK FETCH completed
    """)


def test_sort_keys_survive_in_the_index(box: Path) -> None:
    # A second process sorts from the index's summaries: the files are not read.
    selected(box).say("a SORT (SUBJECT) UTF-8 ALL")
    for path in (box / "cur").iterdir():
        path.write_bytes(b"Subject: changed behind our back\n\n")
    t = IMAPTranscript(box).login().select()
    t.run("""
        C: b SORT (SUBJECT) UTF-8 ALL
        S: * SORT 2 4 5 1 3
        S: b OK SORT completed
    """)


def test_sort_errors(box: Path) -> None:
    authed(box).run("""
        C: a SORT (DATE) UTF-8 ALL
        S: a BAD No mailbox selected
    """)
    selected(box).run("""
        C: b SORT (DATE) KOI8-R ALL
        S: b NO [BADCHARSET (UTF-8)] Only UTF-8 is supported
        C: c SORT DATE UTF-8 ALL
        S: c BAD SORT needs a parenthesized list of sort criteria
        C: d SORT () UTF-8 ALL
        S: d BAD SORT needs a parenthesized list of sort criteria
        C: e SORT (REVERSE) UTF-8 ALL
        S: e BAD REVERSE must be followed by a sort key
        C: f SORT (REVERSE REVERSE DATE) UTF-8 ALL
        S: f BAD Unknown sort criterion
        C: g SORT (HEIGHT) UTF-8 ALL
        S: g BAD Unknown sort criterion
        C: h SORT (DATE) UTF-8
        S: h BAD Missing search key
        C: i SORT (DATE)
        S: i BAD Missing charset
        C: j SORT RETURN (BEST) (DATE) UTF-8 ALL
        S: j BAD Unknown search return option
    """)
