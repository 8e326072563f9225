"""ParsedMessage: MIME structure, sections, ENVELOPE, BODYSTRUCTURE, BINARY.

Expected strings are written out by hand in the RFC 9051 §7.5.2 format.
"""

from __future__ import annotations

import binascii
import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailstead.proto.imap.message import (
    MAX_DEPTH,
    ParsedMessage,
    Section,
    UnknownCTE,
    decode_qp,
)


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode()


PLAIN = crlf(
    "From: Alice <alice@example.test>\nTo: bob@example.test\nSubject: Hello\n\nHi Bob.\nBye.\n"
)

ALTERNATIVE = crlf(
    "From: Alice <alice@example.test>\n"
    "To: Bob <bob@example.test>\n"
    "Subject: Report\n"
    "Date: Wed, 17 Jul 1996 02:23:25 -0700\n"
    "Message-ID: <1@example.test>\n"
    "MIME-Version: 1.0\n"
    'Content-Type: multipart/mixed; boundary="outer"\n'
    "\n"
    "This is a multi-part message.\n"
    "--outer\n"
    "Content-Type: multipart/alternative; boundary=inner\n"
    "\n"
    "--inner\n"
    "Content-Type: text/plain; charset=UTF-8\n"
    "\n"
    "Hello Bob,\n"
    "see attached.\n"
    "--inner\n"
    "Content-Type: text/html; charset=UTF-8\n"
    "Content-Transfer-Encoding: quoted-printable\n"
    "\n"
    "<p>Hello Bob,<br>see attached.</p>\n"
    "--inner--\n"
    "\n"
    "--outer\n"
    'Content-Type: application/pdf; name="report.pdf"\n'
    "Content-Transfer-Encoding: base64\n"
    'Content-Disposition: attachment; filename="report.pdf"\n'
    "Content-ID: <pdf1@example.test>\n"
    "Content-Description: The report\n"
    "\n"
    "JVBERi0xLjQK\n"
    "--outer--\n"
)

FORWARD = crlf(
    "From: carol@example.test\n"
    "To: dave@example.test\n"
    "Subject: Fwd: hello\n"
    "Content-Type: multipart/mixed; boundary=b1\n"
    "\n"
    "--b1\n"
    "Content-Type: text/plain\n"
    "\n"
    "See below.\n"
    "--b1\n"
    "Content-Type: message/rfc822\n"
    "Content-Description: forwarded\n"
    "\n"
    "From: Eve <eve@example.test>\n"
    "Subject: hello\n"
    "Date: Thu, 1 Jan 2026 00:00:00 +0000\n"
    "\n"
    "Hi!\n"
    "--b1--\n"
)


def _part(ctype: str, body: str, extra: str = "") -> str:
    return f"Content-Type: {ctype}\n{extra}\n{body}"


def _multipart(boundary: str, *parts: str) -> str:
    inner = "".join(f"--{boundary}\n{p}\n" for p in parts)
    return f"{inner}--{boundary}--\n"


# The RFC 9051 §6.4.5 example message, part by part.
_INNER_42 = "Subject: 4.2\nContent-Type: multipart/mixed; boundary=d\n\n" + _multipart(
    "d",
    _part("text/plain", "4.2.1 text"),
    _part(
        "multipart/alternative; boundary=e",
        _multipart("e", _part("text/plain", "4.2.2.1 text"), _part("text/richtext", "4.2.2.2")),
    ),
)
_INNER_3 = "Subject: three\nContent-Type: multipart/mixed; boundary=c\n\n" + _multipart(
    "c", _part("text/plain", "3.1 text"), _part("application/octet-stream", "3.2 data")
)
RFC_EXAMPLE = crlf(
    "Subject: example\nContent-Type: multipart/mixed; boundary=a\n\n"
    + _multipart(
        "a",
        _part("text/plain", "1 text"),
        _part("application/octet-stream", "2 data"),
        _part("message/rfc822", _INNER_3),
        _part(
            "multipart/mixed; boundary=b",
            _multipart("b", _part("image/gif", "4.1 gif"), _part("message/rfc822", _INNER_42)),
        ),
    )
)


# --- header and body ------------------------------------------------------------


def test_header_and_text() -> None:
    msg = ParsedMessage(PLAIN)
    assert msg.header_bytes() == crlf(
        "From: Alice <alice@example.test>\nTo: bob@example.test\nSubject: Hello\n\n"
    )
    assert msg.text_bytes() == b"Hi Bob.\r\nBye.\r\n"
    assert msg.size == len(PLAIN)


@pytest.mark.parametrize(
    ("data", "header", "text"),
    [
        (b"Subject: x\r\nFrom: y", b"Subject: x\r\nFrom: y", b""),  # no blank line
        (b"\r\nbody only", b"\r\n", b"body only"),  # empty header
        (b"Subject: x\n\nbare LF", b"Subject: x\n\n", b"bare LF"),
        (b"", b"", b""),
        (b"Subject: x\r\n\r\n", b"Subject: x\r\n\r\n", b""),
    ],
)
def test_header_boundary_edge_cases(data: bytes, header: bytes, text: bytes) -> None:
    msg = ParsedMessage(data)
    assert (msg.header_bytes(), msg.text_bytes()) == (header, text)


def test_header_values_are_unfolded_not_decoded() -> None:
    msg = ParsedMessage(crlf("Subject: =?utf-8?q?caf=C3=A9?=\n\tand more\nX: 1\nx: 2\n\n"))
    assert msg.header_values(b"SUBJECT") == [b"=?utf-8?q?caf=C3=A9?=\tand more"]
    assert msg.header_values(b"x") == [b"1", b"2"]


# --- sections (RFC 9051 §6.4.5) -------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("1", b"1 text"),
        ("2", b"2 data"),
        ("3.1", b"3.1 text"),
        ("3.2", b"3.2 data"),
        ("4.1", b"4.1 gif"),
        ("4.1.MIME", b"Content-Type: image/gif\r\n\r\n"),
        ("4.2.HEADER", b"Subject: 4.2\r\nContent-Type: multipart/mixed; boundary=d\r\n\r\n"),
        ("4.2.1", b"4.2.1 text"),
        ("4.2.2.1", b"4.2.2.1 text"),
        ("4.2.2.2", b"4.2.2.2"),
        ("4.2.2.2.MIME", b"Content-Type: text/richtext\r\n\r\n"),
        ("3.HEADER.FIELDS", b"Subject: three\r\n\r\n"),
    ],
)
def test_rfc_example_part_numbers(spec: str, expected: bytes) -> None:
    msg = ParsedMessage(RFC_EXAMPLE)
    numbers, text = _spec(spec)
    assert msg.section(Section(numbers, text, (b"subject",))) == expected


def _spec(spec: str) -> tuple[tuple[int, ...], str]:
    nums: list[int] = []
    rest = spec.split(".")
    while rest and rest[0].isdigit():
        nums.append(int(rest.pop(0)))
    return tuple(nums), ".".join(rest)


def test_message_rfc822_part_is_the_whole_enclosed_message() -> None:
    msg = ParsedMessage(RFC_EXAMPLE)
    whole = msg.section(Section((3,)))
    assert whole is not None and whole.startswith(b"Subject: three\r\n")
    assert msg.section(Section((3,), "TEXT")) == whole[whole.index(b"\r\n\r\n") + 4 :]
    assert msg.section(Section((3,), "MIME")) == b"Content-Type: message/rfc822\r\n\r\n"


@pytest.mark.parametrize(
    "spec",
    ["5", "1.1", "2.HEADER", "4.3", "4.1.1", "3.3", "4.2.2.3", "1.TEXT", "4.HEADER"],
)
def test_missing_sections_are_none(spec: str) -> None:
    numbers, text = _spec(spec)
    assert ParsedMessage(RFC_EXAMPLE).section(Section(numbers, text)) is None


def test_non_multipart_part_one_is_the_body() -> None:
    msg = ParsedMessage(PLAIN)
    assert msg.section(Section((1,))) == msg.text_bytes()
    assert msg.section(Section((1,), "MIME")) == msg.header_bytes()
    assert msg.section(Section((2,))) is None
    assert msg.section(Section((1, 1))) is None
    assert msg.section(Section()) == PLAIN


def test_enclosed_non_multipart_message_part_one_is_its_body() -> None:
    msg = ParsedMessage(FORWARD)
    assert msg.section(Section((2, 1))) == b"Hi!"
    assert msg.section(Section((2, 2))) is None
    assert msg.section(Section((2,), "HEADER.FIELDS", (b"SUBJECT",))) == (b"Subject: hello\r\n\r\n")


def test_header_fields_case_insensitive_and_not() -> None:
    data = crlf("From: a@b\nsubject: one\n two\nTo: c@d\nX-Empty:\n\nbody\n")
    msg = ParsedMessage(data)
    fields = Section((), "HEADER.FIELDS", (b"SUBJECT", b"x-EMPTY", b"Nope"))
    assert msg.section(fields) == b"subject: one\r\n two\r\nX-Empty:\r\n\r\n"
    negated = Section((), "HEADER.FIELDS.NOT", (b"Subject", b"from"))
    assert msg.section(negated) == b"To: c@d\r\nX-Empty:\r\n\r\n"


def test_header_fields_without_blank_line_adds_none() -> None:
    msg = ParsedMessage(b"From: a@b\r\nTo: c@d\r\n")
    assert msg.section(Section((), "HEADER.FIELDS", (b"to",))) == b"To: c@d\r\n"


# --- ENVELOPE (RFC 9051 §7.5.2) -----------------------------------------------


def test_envelope_plain() -> None:
    assert ParsedMessage(ALTERNATIVE).envelope() == (
        b'("Wed, 17 Jul 1996 02:23:25 -0700" "Report" (("Alice" NIL "alice" "example.test"))'
        b' (("Alice" NIL "alice" "example.test")) (("Alice" NIL "alice" "example.test"))'
        b' (("Bob" NIL "bob" "example.test")) NIL NIL NIL "<1@example.test>")'
    )


def test_envelope_missing_fields_are_nil() -> None:
    assert ParsedMessage(b"X-Nothing: here\r\n\r\nbody").envelope() == (
        b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)"
    )


def test_envelope_groups_quoted_names_and_comments() -> None:
    data = crlf(
        'From: "Doe, John" <john@example.test>\n'
        "Sender: (the bot) bot@example.test\n"
        "Reply-To:\n"
        "To: undisclosed-recipients:;\n"
        "Cc: Team: ann@example.test, Bo Z <bo@example.test>;, last@example.test (Last One)\n"
        "Bcc: <@relay.test,@r2.test:route@example.test>, nodomain, Jo <jo@>\n"
        "In-Reply-To: <0@example.test>\n"
        "\n"
    )
    assert ParsedMessage(data).envelope() == (
        b"(NIL NIL"
        b' (("Doe, John" NIL "john" "example.test"))'
        b' (("the bot" NIL "bot" "example.test"))'
        # Reply-To present but empty: the From address stands in.
        b' (("Doe, John" NIL "john" "example.test"))'
        b' ((NIL NIL "undisclosed-recipients" NIL)(NIL NIL NIL NIL))'
        b' ((NIL NIL "Team" NIL)(NIL NIL "ann" "example.test")("Bo Z" NIL "bo" "example.test")'
        b'(NIL NIL NIL NIL)("Last One" NIL "last" "example.test"))'
        b' ((NIL "@relay.test,@r2.test" "route" "example.test")'
        b'(NIL NIL "nodomain" ".MISSING-HOST-NAME.")("Jo" NIL "jo" ".MISSING-HOST-NAME."))'
        b' "<0@example.test>" NIL)'
    )


def test_envelope_keeps_encoded_words_and_escapes_quotes() -> None:
    data = crlf('Subject: =?UTF-8?B?w6k=?= "quoted"\nFrom: "A \\"B\\" C" <a@b.test>\n\n')
    env = ParsedMessage(data).envelope()
    assert env.startswith(
        b'(NIL "=?UTF-8?B?w6k=?= \\"quoted\\"" (("A \\"B\\" C" NIL "a" "b.test"))'
    )


def test_envelope_8bit_subject_literal_or_utf8_quoted() -> None:
    data = "Subject: Grüße\r\nFrom: Jörg <j@example.test>\r\n\r\n".encode()
    raw = ParsedMessage(data)
    assert raw.envelope().startswith(b"(NIL {7}\r\nGr\xc3\xbc\xc3\x9fe (({5}\r\nJ\xc3\xb6rg NIL")
    assert raw.envelope(utf8=True).startswith(
        b'(NIL "Gr\xc3\xbc\xc3\x9fe" (("J\xc3\xb6rg" NIL "j" "example.test"))'
    )


# --- BODYSTRUCTURE (RFC 9051 §7.5.2) ------------------------------------------


def test_bodystructure_default_text_plain() -> None:
    msg = ParsedMessage(PLAIN)
    assert msg.bodystructure(extended=False) == (
        b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 15 2)'
    )
    assert msg.bodystructure(extended=True) == (
        b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 15 2 NIL NIL NIL NIL)'
    )


def test_bodystructure_alternative_and_attachment() -> None:
    msg = ParsedMessage(ALTERNATIVE)
    assert msg.bodystructure(extended=True) == (
        b'((("text" "plain" ("charset" "UTF-8") NIL NIL "7BIT" 25 2 NIL NIL NIL NIL)'
        b'("text" "html" ("charset" "UTF-8") NIL NIL "quoted-printable" 34 1 NIL NIL NIL NIL)'
        b' "alternative" ("boundary" "inner") NIL NIL NIL)'
        b'("application" "pdf" ("name" "report.pdf") "<pdf1@example.test>" "The report"'
        b' "base64" 12 NIL ("attachment" ("filename" "report.pdf")) NIL NIL)'
        b' "mixed" ("boundary" "outer") NIL NIL NIL)'
    )
    assert msg.bodystructure(extended=False) == (
        b'((("text" "plain" ("charset" "UTF-8") NIL NIL "7BIT" 25 2)'
        b'("text" "html" ("charset" "UTF-8") NIL NIL "quoted-printable" 34 1) "alternative")'
        b'("application" "pdf" ("name" "report.pdf") "<pdf1@example.test>" "The report"'
        b' "base64" 12) "mixed")'
    )


def test_bodystructure_message_rfc822() -> None:
    assert ParsedMessage(FORWARD).bodystructure(extended=True) == (
        b'(("text" "plain" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 10 1 NIL NIL NIL NIL)'
        b'("message" "rfc822" NIL NIL "forwarded" "7BIT" 89'
        b' ("Thu, 1 Jan 2026 00:00:00 +0000" "hello" (("Eve" NIL "eve" "example.test"))'
        b' (("Eve" NIL "eve" "example.test")) (("Eve" NIL "eve" "example.test"))'
        b" NIL NIL NIL NIL NIL)"
        b' ("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 3 1 NIL NIL NIL NIL)'
        b" 5 NIL NIL NIL NIL)"
        b' "mixed" ("boundary" "b1") NIL NIL NIL)'
    )


def test_bodystructure_language_location_md5() -> None:
    data = crlf(
        "Content-Type: text/plain; charset=us-ascii; format=flowed\n"
        "Content-Language: en, de\n"
        "Content-Location: http://example.test/x\n"
        "Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==\n"
        "Content-Disposition: inline\n"
        "\n"
        "x"
    )
    assert ParsedMessage(data).bodystructure(extended=True) == (
        b'("text" "plain" ("charset" "us-ascii" "format" "flowed") NIL NIL "7BIT" 1 1'
        b' "Q2hlY2sgSW50ZWdyaXR5IQ==" ("inline" NIL) ("en" "de") "http://example.test/x")'
    )


@pytest.mark.parametrize(
    "ctype",
    ["garbage", "text/", "/plain", 'te"xt/plain', ""],
)
def test_bodystructure_invalid_content_type_defaults(ctype: str) -> None:
    data = crlf(f"Content-Type: {ctype}\n\nx")
    assert ParsedMessage(data).bodystructure(extended=False) == (
        b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 1 1)'
    )


def test_digest_parts_default_to_message_rfc822() -> None:
    data = crlf(
        "Content-Type: multipart/digest; boundary=z\n\n--z\n\nSubject: in digest\n\nhi\n--z--\n"
    )
    msg = ParsedMessage(data)
    assert msg.section(Section((1,), "HEADER")) == b"Subject: in digest\r\n\r\n"
    assert msg.bodystructure(extended=False).startswith(b'(("MESSAGE" "RFC822" NIL NIL NIL')


# --- robustness -----------------------------------------------------------------


def test_unterminated_multipart_last_part_runs_to_the_end() -> None:
    data = crlf("Content-Type: multipart/mixed; boundary=q\n\n--q\n\none\n--q\n\ntwo\n")
    msg = ParsedMessage(data)
    assert msg.section(Section((1,))) == b"one"
    assert msg.section(Section((2,))) == b"two\r\n"


@pytest.mark.parametrize(
    "ctype",
    ["multipart/mixed", "multipart/mixed; boundary=nothere", 'multipart/mixed; boundary=""'],
)
def test_multipart_without_delimiters_has_one_empty_part(ctype: str) -> None:
    msg = ParsedMessage(crlf(f"Content-Type: {ctype}\n\nstray text\n"))
    assert msg.bodystructure(extended=False) == (
        b'(("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 0 0) "mixed")'
    )
    assert msg.section(Section((1,))) == b""


def test_boundary_prefix_is_not_a_delimiter() -> None:
    data = crlf("Content-Type: multipart/mixed; boundary=b\n\n--b\n\nx\n--bb\ny\n--b--\n")
    assert ParsedMessage(data).section(Section((1,))) == b"x\r\n--bb\r\ny"


def test_deep_nesting_is_bounded() -> None:
    body = "leaf"
    for depth in range(MAX_DEPTH + 20):
        body = (
            f"Content-Type: multipart/mixed; boundary=n{depth}\n\n--n{depth}\n{body}\n--n{depth}--"
        )
    msg = ParsedMessage(crlf(body))
    structure = msg.bodystructure(extended=True)
    assert structure.count(b'"mixed"') == MAX_DEPTH
    assert b'"APPLICATION" "OCTET-STREAM"' in structure


def test_part_count_is_bounded() -> None:
    data = crlf("Content-Type: multipart/mixed; boundary=p\n\n" + "--p\n\nx\n" * 12_000)
    msg = ParsedMessage(data)
    assert msg.section(Section((10_000,))) == b"x"
    assert msg.section(Section((10_001,))) is None
    assert msg.bodystructure(extended=False).count(b'"TEXT"') == 10_000


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_random_bytes_never_raise(data: bytes) -> None:
    _exercise(data)


_MIME_WORDS = [
    b"Content-Type: multipart/mixed; boundary=x\r\n",
    b"Content-Type: message/rfc822\r\n",
    b"Content-Type: text/plain\r\n",
    b"Content-Transfer-Encoding: base64\r\n",
    b"Content-Transfer-Encoding: quoted-printable\r\n",
    b'Content-Disposition: attachment; filename="a\r\n',
    b'From: "a, <b@c>\r\n',
    b"To: g: a@b, (c <d@e>;\r\n",
    b"--x\r\n",
    b"--x--\r\n",
    b"\r\n",
    b"\n",
    b"=\r\n",
    b"QUJD\r\n",
    b" folded\r\n",
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_MIME_WORDS) | st.binary(max_size=8), max_size=40))
def test_mime_like_garbage_never_raises(chunks: list[bytes]) -> None:
    _exercise(b"".join(chunks))


def _exercise(data: bytes) -> None:
    msg = ParsedMessage(data)
    msg.envelope()
    msg.envelope(utf8=True)
    msg.bodystructure(extended=True)
    msg.bodystructure(extended=False)
    for numbers in [(), (1,), (2,), (1, 1), (1, 2), (2, 1, 1)]:
        for text in ["", "MIME", "HEADER", "TEXT", "HEADER.FIELDS", "HEADER.FIELDS.NOT"]:
            if text == "MIME" and not numbers:
                continue
            msg.section(Section(numbers, text, (b"from", b"to")))
        with contextlib.suppress(UnknownCTE):
            msg.binary(numbers)


# --- BINARY (RFC 3516) --------------------------------------------------------


def test_binary_base64_and_quoted_printable() -> None:
    msg = ParsedMessage(ALTERNATIVE)
    assert msg.binary((2,)) == b"%PDF-1.4\n"
    assert msg.binary_size((2,)) == 9
    assert msg.binary((1, 2)) == b"<p>Hello Bob,<br>see attached.</p>"
    assert msg.binary((1, 1)) == b"Hello Bob,\r\nsee attached."
    assert msg.binary((3,)) is None
    assert msg.binary_size((3,)) is None
    assert msg.binary(()) == ALTERNATIVE


def test_binary_lenient_base64_and_qp() -> None:
    data = crlf(
        "Content-Type: multipart/mixed; boundary=k\n\n"
        "--k\nContent-Transfer-Encoding: BASE64\n\nAAEC\nAw\n"  # missing padding
        "--k\nContent-Transfer-Encoding: Quoted-Printable\n\ncaf=C3=A9 =\nsoft\n"
        "--k--\n"
    )
    msg = ParsedMessage(data)
    assert msg.binary((1,)) == b"\x00\x01\x02\x03"
    assert msg.binary((2,)) == "café soft".encode()


def test_binary_unknown_encoding() -> None:
    data = crlf("Content-Transfer-Encoding: x-uuencode\n\nbegin 644 x\n")
    with pytest.raises(UnknownCTE):
        ParsedMessage(data).binary((1,))


# RFC 2045 §6.7, one case a line: what the encoded body decodes to.
@pytest.mark.parametrize(
    ("encoded", "decoded"),
    [
        (b"soft=\r\nbreak", b"softbreak"),
        (b"padded soft= \t\r\nbreak", b"padded softbreak"),  # rule 5 with padding
        (b"trailing \t \r\nspace", b"trailing\r\nspace"),  # rule 3
        (b"bare\nLF\n", b"bare\r\nLF\r\n"),  # a line break is CRLF (rule 4)
        (b"a=3Db=3db", b"a=b=b"),  # lower-case hex read too (note 1)
        (b"a=zz b=4", b"a=zz b=4"),  # "=" before non-hex stays (note 2)
        (b"x==\r\n41", b"x=41"),  # no escape is completed across a line break
        (b"end=", b"end"),
        (b"=\r\n", b""),
        (b"", b""),
    ],
)
def test_quoted_printable_cases(encoded: bytes, decoded: bytes) -> None:
    assert decode_qp(encoded) == decoded


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400).map(lambda b: b.replace(b"\r", b"")))
def test_quoted_printable_undoes_the_encoder(data: bytes) -> None:
    # The standard library's encoder escapes trailing white space and keeps
    # line breaks; decoded, every line break is CRLF.
    assert decode_qp(binascii.b2a_qp(data, istext=True)) == data.replace(b"\n", b"\r\n")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_quoted_printable_round_trips_binary_octets(data: bytes) -> None:
    # Encoded as binary, every CR and LF is an escape: only soft breaks remain.
    encoded = binascii.b2a_qp(data, istext=False).replace(b"\n", b"\r\n")
    assert decode_qp(encoded) == data


def test_binary_size_counts_decoded_quoted_printable() -> None:
    # The case of issue 16: padding and soft breaks made BINARY.SIZE the encoded size.
    body = b"line one   \r\nline= \r\n two=09\r\n"
    data = b"Content-Transfer-Encoding: quoted-printable\r\n\r\n" + body
    assert ParsedMessage(data).binary((1,)) == b"line one\r\nline two\t\r\n"
    assert ParsedMessage(data).binary_size((1,)) == 21
