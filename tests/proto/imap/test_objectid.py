"""OBJECTID (RFC 8474): MAILBOXID, EMAILID and THREADID, as transcripts."""

from __future__ import annotations

import re
from pathlib import Path

from tests.proto.imap.imap_transcript import authed, deliver, selected, uidvalidity


def _id(said: str, item: str) -> str:
    match = re.search(item + r" \(([A-Za-z0-9_-]{1,255})\)", said)
    assert match, said
    return match.group(1)


def test_mailboxid_in_select_status_and_create_survives_rename(root: Path) -> None:
    inbox = f"F{uidvalidity(root):08x}"
    t = authed(root)
    t.run(f"""
        C: a STATUS INBOX (MAILBOXID MESSAGES)
        S: * STATUS "INBOX" (MAILBOXID ({inbox}) MESSAGES 3)
        S: a OK STATUS completed
    """)
    said = t.say("b CREATE Work")
    work = _id(said, r"\[MAILBOXID")
    assert said == f"b OK [MAILBOXID ({work})] CREATE completed\r\n"
    assert work != inbox
    t.run(f"""
        C: c RENAME Work Play
        S: c OK RENAME completed
        C: d STATUS Play (MAILBOXID)
        S: * STATUS "Play" (MAILBOXID ({work}))
        S: d OK STATUS completed
        C: e DELETE Play
        S: e OK DELETE completed
    """)
    # A mailbox made again under an old name is another mailbox (RFC 8474 §4).
    assert _id(t.say("f CREATE Play"), r"\[MAILBOXID") != work
    assert f"* OK [MAILBOXID ({inbox})] Ok\r\n" in t.say("g EXAMINE INBOX")


def test_emailid_and_threadid_are_kept_by_copy(root: Path) -> None:
    t = selected(root)
    said = t.say("a FETCH 1:3 (EMAILID THREADID)")
    ids = re.findall(r"EMAILID \((M[0-9a-f]{24})\) THREADID \((T[0-9a-f]{24})\)", said)
    assert len(ids) == 3 and len({e for e, _ in ids}) == 3
    t.create("b", "Copies")
    t.say("c COPY 1:3 Copies")
    t.say("d SELECT Copies")
    again = t.say("e FETCH 1:3 (EMAILID THREADID)")
    # RFC 8474 §5.1: the copy keeps the EMAILID (and so its THREADID).
    assert re.findall(r"EMAILID \((M[0-9a-f]{24})\) THREADID \((T[0-9a-f]{24})\)", again) == ids


def test_a_reply_shares_the_threadid_of_its_root(tmp_path: Path) -> None:
    box = tmp_path / "Maildir"
    deliver(
        box,
        b"Message-ID: <root@x.test>\nSubject: q\n\nquestion\n",
        b"Message-ID: <r1@x.test>\nIn-Reply-To: <root@x.test>\nSubject: Re: q\n\nanswer\n",
        b"Message-ID: <r2@x.test>\nReferences: <root@x.test> <r1@x.test>\nSubject: Re: q\n\nmore\n",
        b"Message-ID: <other@x.test>\nSubject: q\n\nunrelated\n",
    )
    said = selected(box).say("a FETCH 1:4 (THREADID)")
    ids = re.findall(r"THREADID \((T[0-9a-f]{24})\)", said)
    assert ids[0] == ids[1] == ids[2] != ids[3]


def test_unknown_status_item_is_still_refused(root: Path) -> None:
    authed(root).run("""
        C: a STATUS INBOX (MAILBOXIDS)
        S: a BAD Unknown status item MAILBOXIDS
    """)
