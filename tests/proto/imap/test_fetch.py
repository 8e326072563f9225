"""FETCH: item parsing (RFC 9051 §6.4.5, §9) and response rendering (§7.5.2), byte for byte.

Each case reads as ``C: a FETCH 1 <items>`` / ``S: * 1 FETCH (...)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailstead.proto.imap.fetch import (
    FetchRequest,
    FetchSyntaxError,
    UnknownCTE,
    internaldate,
    parse_fetch,
    render_fetch,
)
from mailstead.proto.imap.message import ParsedMessage
from mailstead.proto.imap.tokens import Atom, ParenList, String, Token

from .test_message import ALTERNATIVE, FORWARD, PLAIN, RFC_EXAMPLE, crlf

# 17-Jul-1996 09:44:25 UTC, the RFC 9051 example date.
WHEN = 837596665.0


@dataclass
class FakeSource:
    """A stored message; counts how often the message had to be loaded."""

    data: bytes
    uid: int = 42
    flags: Sequence[str] = ("\\Seen", "$Forwarded")
    internaldate: float = WHEN
    internaldate_offset: int = -420
    loads: int = 0
    cache: dict[str, bytes] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return len(self.data)

    def message(self) -> ParsedMessage:
        self.loads += 1
        return ParsedMessage(self.data)

    def cached(self, item: str) -> bytes | None:
        return self.cache.get(item)

    def remember(self, item: str, value: bytes) -> None:
        self.cache[item] = value


def items(*names: str) -> tuple[Token, ...]:
    """The FETCH argument for ``(name name ...)``."""
    return (ParenList(tuple(Atom(n) for n in names)),)


def fetch(
    data: bytes,
    *names: str,
    uid: bool = False,
    add_flags: bool = False,
    utf8: bool = False,
    source: FakeSource | None = None,
) -> bytes:
    src = source or FakeSource(data)
    args = items(*names) if len(names) != 1 else (Atom(names[0]),)
    request = parse_fetch(args)
    return render_fetch(request, src, seq=1, include_uid=uid, add_flags=add_flags, utf8=utf8)


# --- simple items -------------------------------------------------------------


def test_flags_uid_size_never_load_the_message() -> None:
    src = FakeSource(PLAIN)
    # C: a FETCH 1 (FLAGS UID RFC822.SIZE)
    assert fetch(PLAIN, "FLAGS", "UID", "RFC822.SIZE", source=src) == (
        b"* 1 FETCH (FLAGS (\\Seen $Forwarded) UID 42 RFC822.SIZE 89)\r\n"
    )
    assert len(PLAIN) == 89
    assert src.loads == 0


def test_fast_macro_and_internaldate() -> None:
    # C: a FETCH 1 FAST
    assert fetch(PLAIN, "FAST") == (
        b'* 1 FETCH (FLAGS (\\Seen $Forwarded) INTERNALDATE "17-Jul-1996 02:44:25 -0700"'
        b" RFC822.SIZE 89)\r\n"
    )


@pytest.mark.parametrize(
    ("ts", "offset", "expected"),
    [
        (0.0, 0, b'"01-Jan-1970 00:00:00 +0000"'),
        (WHEN, 330, b'"17-Jul-1996 15:14:25 +0530"'),
        (1e20, 0, b'"01-Jan-1970 00:00:00 +0000"'),  # out of range: the epoch
    ],
)
def test_internaldate(ts: float, offset: int, expected: bytes) -> None:
    assert internaldate(ts, offset) == expected


def test_uid_fetch_reports_uid_first_and_once() -> None:
    # C: a UID FETCH 42 FLAGS
    assert fetch(PLAIN, "FLAGS", uid=True) == b"* 1 FETCH (UID 42 FLAGS (\\Seen $Forwarded))\r\n"
    # C: a UID FETCH 42 (FLAGS UID)
    assert fetch(PLAIN, "FLAGS", "UID", uid=True) == (
        b"* 1 FETCH (FLAGS (\\Seen $Forwarded) UID 42)\r\n"
    )


def test_add_flags_after_implicit_seen() -> None:
    # C: a FETCH 1 BODY[TEXT]   (\Seen set, so FLAGS follows unasked)
    assert fetch(PLAIN, "BODY[TEXT]", add_flags=True) == (
        b"* 1 FETCH (BODY[TEXT] {15}\r\nHi Bob.\r\nBye.\r\n FLAGS (\\Seen $Forwarded))\r\n"
    )
    assert fetch(PLAIN, "FLAGS", add_flags=True) == b"* 1 FETCH (FLAGS (\\Seen $Forwarded))\r\n"


def test_empty_flags() -> None:
    src = FakeSource(PLAIN, flags=())
    assert fetch(PLAIN, "FLAGS", source=src) == b"* 1 FETCH (FLAGS ())\r\n"


# --- bodies -------------------------------------------------------------------


def test_body_whole_and_rfc822_forms() -> None:
    literal = b"{89}\r\n" + PLAIN
    assert fetch(PLAIN, "BODY.PEEK[]") == b"* 1 FETCH (BODY[] " + literal + b")\r\n"
    assert fetch(PLAIN, "RFC822") == b"* 1 FETCH (RFC822 " + literal + b")\r\n"
    header = b"From: Alice <alice@example.test>\r\nTo: bob@example.test\r\nSubject: Hello\r\n\r\n"
    assert fetch(PLAIN, "RFC822.HEADER") == (
        b"* 1 FETCH (RFC822.HEADER {74}\r\n" + header + b")\r\n"
    )
    assert fetch(PLAIN, "rfc822.text") == b"* 1 FETCH (RFC822.TEXT {15}\r\nHi Bob.\r\nBye.\r\n)\r\n"


def test_body_one_of_non_multipart_and_missing_part_two() -> None:
    assert fetch(PLAIN, "BODY.PEEK[1]", "BODY.PEEK[2]", "BODY.PEEK[1.1]") == (
        b'* 1 FETCH (BODY[1] {15}\r\nHi Bob.\r\nBye.\r\n BODY[2] "" BODY[1.1] "")\r\n'
    )


def test_body_short_part_is_quoted() -> None:
    assert fetch(ALTERNATIVE, "BODY[2]") == b'* 1 FETCH (BODY[2] "JVBERi0xLjQK")\r\n'


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("BODY.PEEK[]<0.10>", b'BODY[]<0> "From: Alic"'),
        ("BODY.PEEK[TEXT]<9.100>", b"BODY[TEXT]<9> {6}\r\nBye.\r\n"),
        ("BODY.PEEK[]<89.10>", b'BODY[]<89> ""'),  # at the end
        ("BODY.PEEK[]<1000.10>", b'BODY[]<1000> ""'),  # beyond the end
        ("BODY.PEEK[1]<0.4>", b'BODY[1]<0> "Hi B"'),
    ],
)
def test_partials(item: str, expected: bytes) -> None:
    assert fetch(PLAIN, item) == b"* 1 FETCH (" + expected + b")\r\n"


def test_header_fields_echo_names_as_sent() -> None:
    # C: a FETCH 1 (BODY.PEEK[header.fields (from "To" x-missing)])
    assert fetch(ALTERNATIVE, 'body.peek[header.fields (from "To" x-missing)]') == (
        b"* 1 FETCH (BODY[HEADER.FIELDS (from To x-missing)] {64}\r\n"
        b"From: Alice <alice@example.test>\r\nTo: Bob <bob@example.test>\r\n\r\n)\r\n"
    )
    assert fetch(PLAIN, "BODY.PEEK[HEADER.FIELDS.NOT (SUBJECT to)]") == (
        b"* 1 FETCH (BODY[HEADER.FIELDS.NOT (SUBJECT to)] {36}\r\n"
        b"From: Alice <alice@example.test>\r\n\r\n)\r\n"
    )


def test_nested_mime_and_message_sections() -> None:
    assert fetch(RFC_EXAMPLE, "BODY.PEEK[4.2.2.1.MIME]", "BODY.PEEK[4.1]") == (
        b"* 1 FETCH (BODY[4.2.2.1.MIME] {28}\r\nContent-Type: text/plain\r\n\r\n"
        b' BODY[4.1] "4.1 gif")\r\n'
    )
    assert fetch(FORWARD, "BODY.PEEK[2.HEADER]", "BODY.PEEK[2.1]") == (
        b"* 1 FETCH (BODY[2.HEADER] {86}\r\nFrom: Eve <eve@example.test>\r\nSubject: hello\r\n"
        b'Date: Thu, 1 Jan 2026 00:00:00 +0000\r\n\r\n BODY[2.1] "Hi!")\r\n'
    )


def test_multipart_alternative_section_two_one_mime() -> None:
    data = crlf(
        "Content-Type: multipart/mixed; boundary=o\n\n"
        "--o\n\nfirst\n"
        "--o\nContent-Type: multipart/alternative; boundary=i\n\n"
        "--i\nContent-Type: text/plain; charset=utf-8\n\nplain\n--i--\n"
        "--o--\n"
    )
    assert fetch(data, "BODY.PEEK[2.1.MIME]") == (
        b"* 1 FETCH (BODY[2.1.MIME] {43}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n)\r\n"
    )


# --- BINARY (RFC 3516) --------------------------------------------------------


def test_binary_base64_with_nul_is_literal8() -> None:
    data = crlf(
        "Content-Type: multipart/mixed; boundary=k\n\n"
        "--k\nContent-Transfer-Encoding: base64\n\nAAECAw==\n"
        "--k\nContent-Transfer-Encoding: quoted-printable\n\ncaf=C3=A9\n"
        "--k--\n"
    )
    assert fetch(data, "BINARY.PEEK[1]", "BINARY.SIZE[1]", "BINARY[2]", "BINARY.SIZE[2]") == (
        b"* 1 FETCH (BINARY[1] ~{4}\r\n\x00\x01\x02\x03 BINARY.SIZE[1] 4"
        b" BINARY[2] {5}\r\ncaf\xc3\xa9 BINARY.SIZE[2] 5)\r\n"
    )


def test_binary_text_and_partial_and_missing() -> None:
    # RFC 3516 §4.2: a partial BINARY answer names its origin, as BODY's does.
    assert fetch(ALTERNATIVE, "BINARY.PEEK[2]<1.3>", "BINARY.PEEK[1.2]", "BINARY.SIZE[9]") == (
        b'* 1 FETCH (BINARY[2]<1> "PDF" BINARY[1.2] "<p>Hello Bob,<br>see attached.</p>"'
        b" BINARY.SIZE[9] 0)\r\n"
    )
    assert fetch(ALTERNATIVE, "BINARY.PEEK[3]") == b'* 1 FETCH (BINARY[3] "")\r\n'


def test_binary_unknown_cte() -> None:
    data = crlf("Content-Transfer-Encoding: x-uue\n\nbegin\n")
    with pytest.raises(UnknownCTE):
        fetch(data, "BINARY[1]")
    assert fetch(data, "BINARY.PEEK[]") == b"* 1 FETCH (BINARY[] {43}\r\n" + data + b")\r\n"
    assert len(data) == 43


# --- ENVELOPE / BODYSTRUCTURE and the cache -------------------------------------


def test_envelope_and_body_and_cache() -> None:
    src = FakeSource(PLAIN)
    first = fetch(PLAIN, "ENVELOPE", "BODY", source=src)
    assert first == (
        b'* 1 FETCH (ENVELOPE (NIL "Hello" (("Alice" NIL "alice" "example.test"))'
        b' (("Alice" NIL "alice" "example.test")) (("Alice" NIL "alice" "example.test"))'
        b' ((NIL NIL "bob" "example.test")) NIL NIL NIL NIL)'
        b' BODY ("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 15 2))\r\n'
    )
    assert src.loads == 1
    assert set(src.cache) == {"ENVELOPE", "BODY"}
    assert fetch(PLAIN, "ENVELOPE", "BODY", source=src) == first
    assert src.loads == 1  # served from the cache


def test_8bit_envelope_is_not_cached_and_follows_utf8() -> None:
    data = "Subject: Grüße\r\n\r\nx".encode()
    src = FakeSource(data)
    assert fetch(data, "ENVELOPE", source=src).startswith(
        b"* 1 FETCH (ENVELOPE (NIL {7}\r\nGr\xc3\xbc\xc3\x9fe NIL"
    )
    assert fetch(data, "ENVELOPE", source=src, utf8=True).startswith(
        b'* 1 FETCH (ENVELOPE (NIL "Gr\xc3\xbc\xc3\x9fe" NIL'
    )
    assert src.cache == {}


def test_full_macro() -> None:
    got = fetch(ALTERNATIVE, "FULL")
    assert got.startswith(b'* 1 FETCH (FLAGS (\\Seen $Forwarded) INTERNALDATE "17-Jul-1996')
    assert b' ENVELOPE ("Wed, 17 Jul 1996 02:23:25 -0700" "Report" ' in got
    assert got.endswith(b' "base64" 12) "mixed"))\r\n')


# --- the request --------------------------------------------------------------


def test_request_properties() -> None:
    req = parse_fetch(items("UID", "FLAGS"))
    assert (req.needs_message, req.sets_seen, req.wants_uid, req.cacheable) == (
        False,
        False,
        True,
        (),
    )
    req = parse_fetch(items("ENVELOPE", "BODYSTRUCTURE"))
    assert (req.needs_message, req.needs_content, req.cacheable) == (
        True,
        False,
        ("ENVELOPE", "BODYSTRUCTURE"),
    )
    for seen in ["BODY[]", "BINARY[1]", "RFC822", "RFC822.TEXT", "body[text]<0.1>"]:
        assert parse_fetch((Atom(seen),)).sets_seen, seen
    for peek in ["BODY.PEEK[]", "BINARY.PEEK[1]", "BINARY.SIZE[1]", "RFC822.HEADER", "BODY"]:
        assert not parse_fetch((Atom(peek),)).sets_seen, peek
    assert [i.name for i in parse_fetch((Atom("ALL"),)).items] == [
        "FLAGS",
        "INTERNALDATE",
        "RFC822.SIZE",
        "ENVELOPE",
    ]


def test_peek_then_non_peek_still_sets_seen() -> None:
    req = parse_fetch(items("BODY.PEEK[]", "BODY[]"))
    assert [i.name for i in req.items] == ["BODY[]"]
    assert req.sets_seen


def test_item_list_left_as_one_atom_and_duplicates() -> None:
    req = parse_fetch((Atom("(uid BODY.PEEK[HEADER.FIELDS (A B)]<0.5> uid)"),))
    assert [i.name for i in req.items] == ["UID", "BODY[HEADER.FIELDS (A B)]<0>"]
    assert isinstance(req, FetchRequest)


@pytest.mark.parametrize(
    "args",
    [
        (Atom("BODY[HEADER.FIELDS ()]"),),
        (Atom("BODY[HEADER.FIELDS]"),),
        (Atom("BODY[0]"),),
        (Atom("BODY[1.0]"),),
        (Atom("BODY[01]"),),
        (Atom("BODY[1.MIME.TEXT]"),),
        (Atom("BODY[MIME]"),),
        (Atom("BODY[1.]"),),
        (Atom("BODY[HEADER"),),
        (Atom("BODY[TEXT]]"),),
        (Atom("BODY[HEADER.FIELDS (From]"),),
        (Atom('BODY[HEADER.FIELDS ("From)]'),),
        (Atom("BODY[]<0>"),),
        (Atom("BODY[]<0.0>"),),
        (Atom("BODY[]<1.2"),),
        (Atom("BODY[]<x.2>"),),
        (Atom("BODY[]<99999999999999999999.1>"),),
        (Atom("BODY[4294967296]"),),
        (Atom("BODY.PEEK"),),
        (Atom("BODY<0.1>"),),
        (Atom("BINARY[1.MIME]"),),
        (Atom("BINARY[TEXT]"),),
        (Atom("BINARY.SIZE[1]<0.1>"),),
        (Atom("BINARY"),),
        (Atom("NOPE"),),
        (Atom("(FLAGS UID"),),
        (Atom("(BODY[TEXT)"),),
        (ParenList(()),),
        (ParenList((Atom("FAST"),)),),
        (ParenList((Atom("FLAGS"), ParenList((Atom("UID"),)))),),
        (ParenList((String(b"FLAGS"),)),),
        (String(b"FLAGS"),),
        (Atom("FLAGS"), Atom("UID")),
        (),
        (Atom("BODY[" + ".".join(["1"] * 40) + "]"),),
        (Atom("BODY[HEADER.FIELDS (" + " ".join(["X"] * 300) + ")]"),),
    ],
)
def test_syntax_errors(args: tuple[Token, ...]) -> None:
    with pytest.raises(FetchSyntaxError):
        parse_fetch(args)


# --- properties -----------------------------------------------------------------


_ITEM_ALPHABET = st.sampled_from(
    [*list('BODYPEKHADRFILSNTXMU[]<>().0123456789 "'), "BODY", "[", "HEADER.FIELDS", ".PEEK"]
)


@settings(max_examples=500, deadline=None)
@given(st.lists(_ITEM_ALPHABET, max_size=30).map("".join))
def test_random_items_parse_or_raise_syntax_error(text: str) -> None:
    try:
        request = parse_fetch((Atom(text),))
    except FetchSyntaxError:
        return
    render_fetch(
        request, FakeSource(RFC_EXAMPLE), seq=1, include_uid=False, add_flags=False, utf8=False
    )


def _read_string(response: bytes, prefix: bytes) -> bytes:
    assert response.startswith(prefix)
    rest = response[len(prefix) :]
    if rest.startswith(b'"'):
        end = rest.rindex(b'"')
        return rest[1:end].replace(b'\\"', b'"').replace(b"\\\\", b"\\")
    header, _, body = rest.partition(b"}\r\n")
    n = int(header[1:])
    assert body[n:] == b")\r\n"
    return body[:n]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=3000))
def test_body_round_trips(data: bytes) -> None:
    got = fetch(data, "BODY.PEEK[]")
    # RFC 9051 §9: no NUL in a literal; it comes back as 0x80.
    assert _read_string(got, b"* 1 FETCH (BODY[] ") == data.replace(b"\0", b"\x80")
    assert fetch(data, "RFC822.SIZE") == b"* 1 FETCH (RFC822.SIZE %d)\r\n" % len(data)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=1000), st.integers(0, 1200), st.integers(1, 1200))
def test_partial_round_trips(data: bytes, origin: int, octets: int) -> None:
    got = fetch(data, f"BODY.PEEK[]<{origin}.{octets}>")
    prefix = b"* 1 FETCH (BODY[]<%d> " % origin
    # RFC 9051 §9: no NUL in a literal; it comes back as 0x80.
    assert _read_string(got, prefix) == data[origin : origin + octets].replace(b"\0", b"\x80")
