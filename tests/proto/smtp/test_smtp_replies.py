"""Reply parsing (RFC 5321 §4.2): what a hostile host can send, and round trips."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailstead.proto.errors import RemoteProtocolError
from mailstead.proto.smtp.replies import Reply, ReplyParser


def parse_all(data: bytes, **kw: int) -> list[Reply]:
    parser = ReplyParser(**kw)
    parser.feed(data)
    out = []
    while (reply := parser.next_reply()) is not None:
        out.append(reply)
    return out


def test_multiline_reply_with_enhanced_codes() -> None:
    data = b"250-2.0.0 first\r\n250-2.0.0 second\r\n250 2.0.0 third\r\n"
    assert parse_all(data) == [Reply(250, "2.0.0", ("first", "second", "third"))]


def test_ehlo_reply_has_no_enhanced_code() -> None:
    data = b"250-mx.example greets you\r\n250-8BITMIME\r\n250 SIZE 1000\r\n"
    assert parse_all(data) == [Reply(250, "", ("mx.example greets you", "8BITMIME", "SIZE 1000"))]


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        (b"250\r\n", Reply(250, "", "")),
        (b"250 \r\n", Reply(250, "", "")),
        (b"550 5.1.1\r\n", Reply(550, "5.1.1", "")),
        (b"550 2.1.1 class must match\r\n", Reply(550, "", "2.1.1 class must match")),
        (b"451 4.3.0 bare LF is taken\n", Reply(451, "4.3.0", "bare LF is taken")),
        (b"250 caf\xc3\xa9 \xff\x01\ttab\r\n", Reply(250, "", "café \ufffd? tab")),
        (b"250 4.5.6.7 not enhanced\r\n", Reply(250, "", "4.5.6.7 not enhanced")),
    ],
)
def test_single_lines(line: bytes, reply: Reply) -> None:
    assert parse_all(line) == [reply]


def test_replies_arrive_in_pieces() -> None:
    parser = ReplyParser()
    data = b"220-hello\r\n220 there\r\n250 ok\r\n"
    got = []
    for i in range(len(data)):
        parser.feed(data[i : i + 1])
        while (reply := parser.next_reply()) is not None:
            got.append(reply)
        assert parser.pending == (i + 1 not in (len(data) - 8, len(data)))
    assert got == [Reply(220, "", ("hello", "there")), Reply(250, "", "ok")]


@pytest.mark.parametrize(
    "data",
    [
        b"2" * 4096,  # no line end within the limit
        b"250 " + b"x" * 4092 + b"\r\n",  # 4097 octets with CRLF
        b"250-x\r\n" * 100 + b"250 x\r\n",  # 101 lines
        b"2x0 nope\r\n",
        b"99 nope\r\n",
        b"600 nope\r\n",
        b"250_nope\r\n",
        b"250-a\r\n251 b\r\n",
        b"\r\n",
    ],
)
def test_hostile_replies_raise(data: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_all(data)


def test_limits_are_inclusive() -> None:
    assert parse_all(b"250 " + b"x" * 4090 + b"\r\n")[0].code == 250
    assert len(parse_all(b"250-x\r\n" * 99 + b"250 x\r\n")[0].lines) == 100
    with pytest.raises(RemoteProtocolError):
        parse_all(b"250 " + b"x" * 507 + b"\r\n", max_line=512)


_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30).filter(
    lambda t: t == t.strip() or not t.startswith(tuple("2345"))
)


@settings(max_examples=200, deadline=None)
@given(
    code=st.sampled_from([220, 221, 250, 251, 354, 421, 450, 451, 452, 550, 552, 554]),
    detail=st.sampled_from(["", "0.0", "1.5", "7.1", "3.4"]),
    lines=st.lists(_text.filter(lambda t: not t[:1].isdigit()), min_size=1, max_size=5),
)
def test_encode_then_parse_round_trips(code: int, detail: str, lines: list[str]) -> None:
    enhanced = f"{str(code)[0]}.{detail}" if detail and code != 354 else ""
    text: str | tuple[str, ...] = lines[0] if len(lines) == 1 else tuple(lines)
    reply = Reply(code, enhanced, text)
    assert parse_all(reply.encode()) == [reply]
