"""PREVIEW (RFC 8970): the first words of the text, as transcripts and case by case."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailstead.proto.imap.message import ParsedMessage
from mailstead.proto.imap.preview import PREVIEW_CHARS, preview
from tests.proto.imap.imap_transcript import deliver, selected


def _preview(message: bytes) -> str:
    return preview(ParsedMessage(message.replace(b"\n", b"\r\n")))


def test_fetch_preview_and_lazy(root: Path) -> None:
    t = selected(root)
    t.run(r"""
        C: a FETCH 1:3 (PREVIEW)
        S: * 1 FETCH (PREVIEW "first body")
        S: * 2 FETCH (PREVIEW "second")
        S: * 3 FETCH (PREVIEW "third, with more text")
        S: a OK FETCH completed
        C: b UID FETCH 2 (FLAGS PREVIEW (LAZY))
        S: * 2 FETCH (UID 2 FLAGS (\Recent) PREVIEW "second")
        S: b OK FETCH completed
        C: c FETCH 1 (PREVIEW (EAGER))
        S: c BAD unknown PREVIEW modifier
        C: d FETCH 1 (PREVIEW ())
        S: d BAD unknown PREVIEW modifier
    """)


def test_non_ascii_preview_is_a_literal_unless_utf8_is_on(tmp_path: Path) -> None:
    box = tmp_path / "Maildir"
    deliver(
        box,
        b"Subject: x\nContent-Type: text/plain; charset=utf-8\n"
        b"Content-Transfer-Encoding: quoted-printable\n\nGr=C3=BC=C3=9Fe aus K=C3=B6ln\n",
    )
    t = selected(box)
    t.run("""
        C: a FETCH 1 (PREVIEW)
        S: * 1 FETCH (PREVIEW {17}
        S: Grüße aus Köln)
        S: a OK FETCH completed
        C: b ENABLE UTF8=ACCEPT
        S: * ENABLED UTF8=ACCEPT
        S: b OK ENABLE completed
        C: c FETCH 1 (PREVIEW)
        S: * 1 FETCH (PREVIEW "Grüße aus Köln")
        S: c OK FETCH completed
    """)


MULTIPART = b"""Subject: parts
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary=b1

--b1
Content-Type: multipart/alternative; boundary=b2

--b2
Content-Type: text/html

<html><head><title>T</title><style>p{}</style></head><body><p>Hi &amp; welcome</p></body></html>
--b2
Content-Type: text/plain

Plain text wins
--b2--
--b1
Content-Type: text/plain
Content-Disposition: attachment; filename=a.txt

not this
--b1--
"""


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (MULTIPART, "Plain text wins"),
        (MULTIPART.replace(b"text/plain\n\nPlain", b"text/x-other\n\nPlain"), "Hi & welcome"),
        (
            b"Subject: q\n\nOn Monday you wrote:\n> old\n>> older\nMy answer\n",
            "On Monday you wrote: My answer",
        ),
        (b"Subject: img\nContent-Type: image/png\n\nxxxx\n", ""),  # §3.1: empty, not NIL
        (b"Subject: b64\nContent-Transfer-Encoding: base64\n\nSGVsbG8gIHRoZXJl\n", "Hello there"),
        (b"Subject: ws\n\n  lots\n\n\tof   space  \n", "lots of space"),
    ],
)
def test_preview_text(message: bytes, expected: str) -> None:
    assert _preview(message) == expected


def test_preview_is_cut_at_a_word_within_the_limit() -> None:
    text = " ".join(["word"] * 100)
    got = _preview(b"Subject: long\n\n" + text.encode() + b"\n")
    assert len(got) <= PREVIEW_CHARS <= 256  # RFC 8970 §3.1: at most 256 characters
    assert got.endswith("word") and text.startswith(got)


def test_preview_is_kept_in_the_index(root: Path) -> None:
    selected(root).say("a FETCH 1 (PREVIEW)")
    for path in (root / "cur").iterdir():
        path.write_bytes(b"Subject: changed\n\nsomething else\n")
    assert '(PREVIEW "first body")' in selected(root).say("b FETCH 1 (PREVIEW)")
