"""Properties: whatever the body and however TCP splits it, one exact message comes out."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.proto.smtp.transcript import Transcript

# Text lines without CR or LF, often starting with dots or looking like commands.
_line = st.one_of(
    st.text(st.characters(exclude_characters="\r\n", codec="utf-8"), max_size=40),
    st.sampled_from([".", "..", "...", ".x", "MAIL FROM:<evil@bad.example>", "QUIT", ""]),
    st.text(alphabet=".\t x", max_size=5).map(lambda s: "." + s),
)


def _stuff(lines: list[bytes]) -> bytes:
    """What a client sends after 354 (RFC 5321 §4.5.2)."""
    return b"".join((b"." + x if x.startswith(b".") else x) + b"\r\n" for x in lines) + b".\r\n"


@settings(max_examples=300, deadline=None)
@given(lines=st.lists(_line, max_size=30), cuts=st.lists(st.integers(0, 2000), max_size=10))
def test_dot_stuffed_body_in_any_chunks_is_one_exact_message(
    lines: list[str], cuts: list[int]
) -> None:
    t = Transcript().handshake()
    t.feed(b"MAIL FROM:<carol@remote.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n")
    encoded = [x.encode() for x in lines]
    wire = _stuff(encoded) + b"NOOP\r\n"
    said = t.feed_split(wire, cuts)
    assert said == b"250 2.0.0 Queued as M1\r\n250 2.0.0 OK\r\n"
    assert [m.content for m in t.messages] == [b"".join(x + b"\r\n" for x in encoded)]


@settings(max_examples=100, deadline=None)
@given(body=st.binary(max_size=300), cuts=st.lists(st.integers(0, 400), max_size=6))
def test_bdat_chunks_in_any_reads_reassemble_exactly(body: bytes, cuts: list[int]) -> None:
    t = Transcript().handshake()
    t.feed(b"MAIL FROM:<carol@remote.test>\r\nRCPT TO:<alice@example.test>\r\n")
    wire = b"BDAT %d LAST\r\n" % len(body) + body + b"NOOP\r\n"
    said = t.feed_split(wire, cuts)
    crs = body.count(b"\r")
    if crs != body.count(b"\r\n"):
        assert said == b"550 5.6.0 Message contains a bare CR (RFC 5321 section 2.3.8)\r\n" + (
            b"250 2.0.0 OK\r\n"
        )
        assert t.messages == []
    else:
        assert said == b"250 2.0.0 Queued as M1\r\n250 2.0.0 OK\r\n"
        # Bare LF becomes CRLF (docs/quirks.md); everything else is kept.
        assert [m.content for m in t.messages] == [
            body.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        ]


@settings(max_examples=200, deadline=None)
@given(junk=st.binary(max_size=200))
def test_arbitrary_bytes_never_raise_and_every_reply_is_well_formed(junk: bytes) -> None:
    t = Transcript().handshake()
    said = t.feed(junk) + t.feed(b"\r\n")
    for line in said.split(b"\r\n")[:-1]:
        assert line[:3].isdigit() and line[3:4] in (b" ", b"-")
        assert b"\r" not in line and b"\n" not in line
