"""THREAD=ORDEREDSUBJECT and THREAD=REFERENCES (RFC 5256 §3), as transcripts and fuzzed."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailstead.proto.imap.summary import Summary
from mailstead.proto.imap.thread import Item, ordered_subject, references
from tests.proto.imap.imap_transcript import WHEN, deliver, selected


def _mail(mid: str, subject: str, day: int, refs: str = "", reply_to: str = "") -> bytes:
    head = f"From: a@example.test\nSubject: {subject}\nDate: {day} Jan 2024 10:00:00 +0000\n"
    if mid:
        head += f"Message-ID: <{mid}@example.test>\n"
    if refs:
        head += "References: " + " ".join(f"<{r}@example.test>" for r in refs.split()) + "\n"
    if reply_to:
        head += f"In-Reply-To: <{reply_to}@example.test>\n"
    return (head + "\nbody\n").encode()


# 1-4 one conversation (In-Reply-To and References); 5 and 8 joined by subject
# alone (step 5); 6 and 7 answer a message we do not have (a dummy kept at the
# top, step 3); 9 has no Message-ID and the earliest date.
MAIL = (
    _mail("a", "meeting", 1),
    _mail("b", "Re: meeting", 2, reply_to="a"),
    _mail("c", "Re: meeting", 3, refs="a b"),
    _mail("d", "Re: meeting", 4, refs="a"),
    _mail("e", "lost parent", 5, refs="gone"),
    _mail("f", "x1", 6, refs="gone2"),
    _mail("g", "x2", 7, refs="gone2"),
    _mail("h", "Re: lost parent", 8),
    _mail("", "solo", 1).replace(b"1 Jan 2024", b"31 Dec 2023"),
)


@pytest.fixture
def box(tmp_path: Path) -> Path:
    root = tmp_path / "Maildir"
    deliver(root, *MAIL, when=WHEN)
    return root


def test_thread_references(box: Path) -> None:
    selected(box).run("""
        C: a THREAD REFERENCES UTF-8 ALL
        S: * THREAD (9)(1 (2 3)(4))(5 8)((6)(7))
        S: a OK THREAD completed
        C: b THREAD REFERENCES UTF-8 NOT SUBJECT meeting
        S: * THREAD (9)(5 8)((6)(7))
        S: b OK THREAD completed
        C: c THREAD REFERENCES UTF-8 SUBJECT nothing-like-this
        S: * THREAD
        S: c OK THREAD completed
    """)


def test_thread_ordered_subject(box: Path) -> None:
    selected(box).run("""
        C: a THREAD ORDEREDSUBJECT UTF-8 ALL
        S: * THREAD (9)(1 (2)(3)(4))(5 8)(6)(7)
        S: a OK THREAD completed
    """)


def test_uid_thread_answers_uids(box: Path) -> None:
    selected(box).run("""
        C: a STORE 1 +FLAGS.SILENT (\\Deleted)
        S: a OK STORE completed
        C: b EXPUNGE
        S: * 1 EXPUNGE
        S: b OK EXPUNGE completed
        C: c UID THREAD REFERENCES UTF-8 SUBJECT meeting
        S: * THREAD ((2 3)(4))
        S: c OK THREAD completed
        C: d THREAD REFERENCES UTF-8 SUBJECT meeting
        S: * THREAD ((1 2)(3))
        S: d OK THREAD completed
    """)


def test_thread_errors(box: Path) -> None:
    selected(box).run("""
        C: a THREAD SUBJECT UTF-8 ALL
        S: a BAD Unknown threading algorithm
        C: b THREAD REFERENCES KOI8-R ALL
        S: b NO [BADCHARSET (UTF-8)] Only UTF-8 is supported
        C: c THREAD REFERENCES UTF-8
        S: c BAD Missing search key
        C: d THREAD
        S: d BAD THREAD needs an algorithm
    """)


# -- the algorithms alone --------------------------------------------------------------


def _item(n: int, mid: str, parents: str = "", subject: str = "s", reply: bool = False) -> Item:
    summary = Summary(
        float(n), subject, reply, "", "", "", "", "", mid, tuple(parents.split()), f"M{n}"
    )
    return Item(n, n, summary)


def test_references_never_makes_a_loop() -> None:
    # a says b is its parent and b says a is: the second link is refused.
    items = [_item(1, "a", "b", "x"), _item(2, "b", "a", "y")]
    assert references(items) == b"(2 1)"


def test_references_duplicate_message_ids_get_their_own() -> None:
    items = [_item(1, "a", "", "x"), _item(2, "a", "", "y"), _item(3, "c", "a", "z")]
    assert references(items) == b"(1 3)(2)"


def test_later_message_corrects_a_parent_guessed_from_references() -> None:
    # 1's References guess c's parent is b; c itself says a (step 1B wins).
    items = [_item(1, "x", "b c", "p"), _item(2, "c", "a", "q"), _item(3, "a", "", "r")]
    assert references(items) == b"(3 2 1)"


def test_a_deep_chain_is_linear_and_needs_no_recursion() -> None:
    n = 20_000
    items = [_item(1, "m0")] + [
        _item(i + 1, f"m{i}", " ".join(f"m{j}" for j in range(max(0, i - 100), i)))
        for i in range(1, n)
    ]
    started = time.perf_counter()
    body = references(items)
    assert time.perf_counter() - started < 10
    assert body == b"(" + b" ".join(b"%d" % i for i in range(1, n + 1)) + b")"


_IDS = st.sampled_from(["a", "b", "c", "d", "e", "f"])


@st.composite
def _items(draw: st.DrawFn) -> list[Item]:
    count = draw(st.integers(0, 25))
    return [
        Item(
            n,
            n,
            Summary(
                draw(st.floats(0, 10, allow_nan=False)),
                draw(st.sampled_from(["", "x", "y", "z"])),
                draw(st.booleans()),
                "",
                "",
                "",
                "",
                "",
                draw(st.one_of(st.just(""), _IDS)),
                tuple(draw(st.lists(_IDS, max_size=4))),
                f"M{n}",
            ),
        )
        for n in range(1, count + 1)
    ]


@settings(max_examples=300, deadline=None)
@given(_items())
def test_fuzz_every_message_once_in_a_well_formed_answer(items: list[Item]) -> None:
    for algorithm in (references, ordered_subject):
        body = algorithm(items).decode()
        assert sorted(int(n) for n in re.findall(r"\d+", body)) == [i.number for i in items]
        depth = 0
        for char in body:
            depth += {"(": 1, ")": -1}.get(char, 0)
            assert depth >= 0
        assert depth == 0
        assert "()" not in body
