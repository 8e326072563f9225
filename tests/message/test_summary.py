"""The ``message.received`` view of a message: real-world shapes, the limits, hostile mail.

Messages are written with LF line ends for reading; ``crlf()`` gives the
stored form. Every result goes through ``checked()``: it serialises as
UTF-8 JSON, holds no control character but tab and newline, and stays
inside the bound the limits promise.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailstead.message.compose import Body, build_message
from mailstead.message.summary import message_summary
from mailstead.peertext import CONTROL_CHARS
from tests.fuzz.wire import watchdog

BOUND = 1.0  # seconds: a hang detector, not a benchmark
FORBIDDEN = set(CONTROL_CHARS) - {"\t", "\n"}


def crlf(message: bytes) -> bytes:
    return message.replace(b"\n", b"\r\n")


def strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (k, *strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return []


def checked(content: bytes, **limits: int) -> dict[str, Any]:
    """``message_summary(content)``, after checking what every result promises."""
    result = message_summary(content, **limits)
    body = limits.get("max_body_bytes", 256 * 1024)
    header = limits.get("max_header_bytes", 64 * 1024)
    encoded = json.dumps(result, ensure_ascii=False).encode()  # no surrogates
    payload = sum(len(s.encode()) for s in strings(result))
    assert payload <= 2 * body + header + 400, payload
    # JSON escaping doubles at most a string's bytes: controls are gone.
    assert len(encoded) <= 2 * (2 * body + header) + 1000
    for s in strings(result):
        assert not FORBIDDEN & set(s), s
    for name in ("text", "html"):
        if result[name] is not None:
            assert len(result[name].encode()) <= body
    assert len(result["attachments"]) <= limits.get("max_parts", 100)
    assert result["size"] == len(content)
    return result


# --- real-world shapes -----------------------------------------------------------

PLAIN = b"""\
From: Alice Example <alice@example.test>
To: bob@example.test, "Carol C." <carol@example.test>
Cc: Dave <dave@example.test>
Reply-To: lists@example.test
Subject: Lunch on Friday?
Date: Mon, 7 Dec 2026 14:00:00 +0100
Message-ID: <lunch.1@example.test>
In-Reply-To: <plan.0@example.test>
References: <start@example.test>
 <plan.0@example.test>

Shall we?
--
Alice
"""


def test_plain_message() -> None:
    result = checked(crlf(PLAIN))
    assert result == {
        "headers": {
            "from": [{"name": "Alice Example", "address": "alice@example.test"}],
            "to": [
                {"name": "", "address": "bob@example.test"},
                {"name": "Carol C.", "address": "carol@example.test"},
            ],
            "cc": [{"name": "Dave", "address": "dave@example.test"}],
            "reply_to": [{"name": "", "address": "lists@example.test"}],
            "subject": "Lunch on Friday?",
            "date": "2026-12-07T13:00:00Z",
            "date_raw": "Mon, 7 Dec 2026 14:00:00 +0100",
            "message_id": "<lunch.1@example.test>",
            "in_reply_to": "<plan.0@example.test>",
            "references": ["<start@example.test>", "<plan.0@example.test>"],
        },
        "headers_truncated": False,
        "text": "Shall we?\n--\nAlice\n",
        "text_truncated": False,
        "html": None,
        "html_truncated": False,
        "attachments": [],
        "attachments_truncated": False,
        "size": len(crlf(PLAIN)),
    }


def test_lf_and_crlf_read_alike() -> None:
    lf = checked(PLAIN)
    stored = checked(crlf(PLAIN))
    assert {**lf, "size": 0} == {**stored, "size": 0}


ALTERNATIVE = b"""\
From: shop@example.test
To: you@example.test
Subject: Your order
Content-Type: multipart/alternative; boundary="alt"

--alt
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: quoted-printable

Order =E2=84=96 42 is on its way.=
 Thank you!
--alt
Content-Type: text/html; charset="ISO-8859-1"
Content-Transfer-Encoding: base64

PHA+Q2Fm6TwvcD4=
--alt--
"""


def test_alternative_gives_text_and_html() -> None:
    result = checked(crlf(ALTERNATIVE))
    assert result["text"] == "Order № 42 is on its way. Thank you!"
    assert result["html"] == "<p>Café</p>"
    assert result["attachments"] == []


MIXED = b"""\
From: boss@example.test
To: team@example.test
Subject: Report
Content-Type: multipart/mixed; boundary="mix"

--mix
Content-Type: text/plain

See the attachment.
--mix
Content-Type: application/pdf; name="ignored.pdf"
Content-Disposition: attachment; filename="Q4 report.pdf"
Content-Transfer-Encoding: base64

JVBERi0xLjQg
ZmFrZQ==
--mix
Content-Type: text/plain; name="notes.txt"
Content-Disposition: attachment

raw notes
--mix--
"""


def test_mixed_with_attachments() -> None:
    result = checked(crlf(MIXED))
    assert result["text"] == "See the attachment."
    assert result["attachments"] == [
        {
            "filename": "Q4 report.pdf",
            "content_type": "application/pdf",
            "size": 13,
            "content_id": None,
            "disposition": "attachment",
        },
        {
            "filename": "notes.txt",
            "content_type": "text/plain",
            "size": 9,
            "content_id": None,
            "disposition": "attachment",
        },
    ]


RELATED = b"""\
From: news@example.test
To: reader@example.test
Subject: Newsletter
Content-Type: multipart/mixed; boundary="outer"

--outer
Content-Type: multipart/alternative; boundary="alt"

--alt
Content-Type: text/plain

Read it in HTML.
--alt
Content-Type: multipart/related; boundary="rel"

--rel
Content-Type: text/html

<img src="cid:logo@example.test">
--rel
Content-Type: image/png
Content-ID: <logo@example.test>
Content-Disposition: inline
Content-Transfer-Encoding: base64

iVBORw0KGgpJTUc=
--rel--
--alt--
--outer
Content-Type: text/calendar; method=REQUEST
Content-Disposition: attachment; filename="invite.ics"

BEGIN:VCALENDAR
--outer--
"""


def test_related_with_inline_image() -> None:
    result = checked(crlf(RELATED))
    assert result["text"] == "Read it in HTML."
    assert result["html"] == '<img src="cid:logo@example.test">'
    assert result["attachments"] == [
        {
            "filename": None,
            "content_type": "image/png",
            "size": 11,
            "content_id": "logo@example.test",
            "disposition": "inline",
        },
        {
            "filename": "invite.ics",
            "content_type": "text/calendar",
            "size": 15,
            "content_id": None,
            "disposition": "attachment",
        },
    ]


def test_later_text_parts_and_messages_are_attachments() -> None:
    message = b"""\
Content-Type: multipart/mixed; boundary=b

--b

first
--b
Content-Type: message/rfc822

Subject: forwarded
Content-Type: text/html

<p>not the body</p>
--b

second
--b--
"""
    result = checked(message)
    assert result["text"] == "first"
    assert result["html"] is None
    assert [(a["content_type"], a["disposition"]) for a in result["attachments"]] == [
        ("message/rfc822", None),
        ("text/plain", None),
    ]


def test_a_message_build_message_composed() -> None:
    content = build_message(
        "zoe@example.test",
        ["bob@example.test", "ann@example.test"],
        "Grüße aus Köln",
        Body(text="Hallo Bob,\nschöne Grüße.\n", html="<p>Hallo Bob, schöne Grüße.</p>\n"),
        now=1_765_112_400.0,
    )
    result = checked(content)
    headers = result["headers"]
    assert headers["subject"] == "Grüße aus Köln"
    assert headers["from"] == [{"name": "", "address": "zoe@example.test"}]
    assert [a["address"] for a in headers["to"]] == ["bob@example.test", "ann@example.test"]
    assert headers["date"] == "2025-12-07T13:00:00Z"
    assert headers["message_id"].endswith("@example.test>")
    assert result["text"] == "Hallo Bob,\nschöne Grüße.\n"
    assert result["html"] == "<p>Hallo Bob, schöne Grüße.</p>\n"
    assert result["attachments"] == []


# --- header decoding -------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "subject"),
    [
        (b"=?UTF-8?B?R3LDvMOfZQ==?=", "Grüße"),
        (b"=?ISO-8859-1?Q?Caf=E9_cr=E8me?=", "Café crème"),
        (b"=?iso-8859-1?q?5_=80?=", "5 €"),  # read as windows-1252 (WHATWG)
        (b"=?Shift_JIS?B?k/qWe4zqgsyMj5a8?=", "日本語の件名"),
        (b"=?utf-8?B?44GT44KT4w==?= =?utf-8?B?gavjgaHjga8=?=", "こんにちは"),  # split character
        (b"=?utf-8?q?a?=  \t =?utf-8?q?b?= c", "ab c"),  # RFC 2047 §6.2
        (b"=?utf-8*en?q?hi?=", "hi"),  # RFC 2231 §5 language
        (b"=?x-unknown?q?caf=E9?=", "caf\ufffd"),
        (b"=?base64?q?abc?=", "abc"),  # not a text codec
        (b"=?unicode-escape?q?=5Cud800?=", "\\ud800"),
        (b"=?utf-7?q?+2D8-?=", "\ufffd"),  # a lone surrogate
        (b"=?utf-8?b?/w?= =?utf-8?b?!!w6k?=", "\ufffd\u00e9"),  # junk skipped, padding forgiven
        ("Grüße, raw UTF-8".encode(), "Grüße, raw UTF-8"),  # RFC 6532
        (b"caf\xe9 \xff", "caf\ufffd \ufffd"),
        (b"a\x00b\x1b[31mc\x7f\xc2\x85d\te", "ab[31mcd\te"),
        (b"=?utf-8?q?line=0Abreak=0D=00?=", "line\nbreak"),
        (b"=?utf-8?q?unterminated", "=?utf-8?q?unterminated"),
    ],
)
def test_subject(raw: bytes, subject: str) -> None:
    assert checked(b"Subject: " + raw + b"\n\n")["headers"]["subject"] == subject


def test_folded_subject() -> None:
    # RFC 5322 §2.2.3: unfolding removes the line break, not the white space.
    message = b"Subject: =?utf-8?q?one?=\r\n =?utf-8?q?_two?=\r\n\tthree\r\n\r\n"
    assert checked(message)["headers"]["subject"] == "one two\tthree"


@pytest.mark.parametrize(
    ("raw", "addresses"),
    [
        (b'"Doe, John" <john@example.test>', [("Doe, John", "john@example.test")]),
        (
            b'"Say \\"hi\\"" <hi@example.test>, plain@example.test',
            [('Say "hi"', "hi@example.test"), ("", "plain@example.test")],
        ),
        (
            b"=?ISO-8859-1?Q?Andr=E9?= Pirard <PIRARD@vm1.ulg.ac.be>",
            [("André Pirard", "PIRARD@vm1.ulg.ac.be")],
        ),
        (b'"=?utf-8?q?Zo=C3=AB?=" <zoe@example.test>', [("Zoë", "zoe@example.test")]),
        (b"bob@example.test (Bob Smith)", [("Bob Smith", "bob@example.test")]),
        (
            b"Team: a@example.test, B <b@example.test>;, undisclosed-recipients:;",
            [("", "a@example.test"), ("B", "b@example.test")],
        ),
        ("Jörg <jörg@exämple.test>".encode(), [("Jörg", "jörg@exämple.test")]),
        (b"<@relay.test:user@example.test>", [("", "user@example.test")]),
        (b"localonly", [("", "localonly")]),
        (b'"Only a name" <>', [("Only a name", "")]),
        (b"", []),
    ],
)
def test_addresses(raw: bytes, addresses: list[tuple[str, str]]) -> None:
    result = checked(b"To: " + raw + b"\n\n")["headers"]["to"]
    assert [(a["name"], a["address"]) for a in result] == addresses


@pytest.mark.parametrize(
    ("raw", "iso"),
    [
        (b"Mon, 7 Dec 2026 14:00:00 +0100", "2026-12-07T13:00:00Z"),
        (b"7 Dec 2026 09:30 -0500", "2026-12-07T14:30:00Z"),
        (b"Mon, 7 Dec 2026 14:00:00 -0000", "2026-12-07T14:00:00Z"),  # RFC 5322 §3.3
        (b"Mon, 7 Dec 2026 14:00:00 GMT", "2026-12-07T14:00:00Z"),
        (b"Mon, 7 Dec 26 14:00:00 +0000", "2026-12-07T14:00:00Z"),
        (b"31 Dec 9999 23:59:59 -1400", None),  # past datetime's range in UTC
        (b"yesterday", None),
        (b"", None),
    ],
)
def test_date(raw: bytes, iso: str | None) -> None:
    headers = checked(b"Date: " + raw + b"\n\n")["headers"]
    assert (headers["date"], headers["date_raw"]) == (iso, raw.decode())


def test_absent_headers_are_null_or_empty() -> None:
    headers = checked(b"\nonly a body\n")["headers"]
    assert headers == {
        **{key: [] for key in ("from", "to", "cc", "reply_to", "references")},
        **dict.fromkeys(("subject", "date", "date_raw", "message_id", "in_reply_to")),
    }


def test_message_ids() -> None:
    message = (
        b"Message-ID: <a@example.test> (comment)\n"
        b"In-Reply-To: <b@example.test> <c@example.test>\n"
        b"References: <x@example.test>,<y@example.test>\tbroken <>\n\n"
    )
    headers = checked(message)["headers"]
    assert headers["message_id"] == "<a@example.test>"
    assert headers["in_reply_to"] == "<b@example.test>"
    assert headers["references"] == ["<x@example.test>", "<y@example.test>"]
    assert checked(b"Message-ID: no-brackets@example.test\n\n")["headers"]["message_id"] == (
        "no-brackets@example.test"
    )


@pytest.mark.parametrize(
    ("params", "filename"),
    [
        (b'attachment; filename="Q4.pdf"', "Q4.pdf"),
        (b"attachment; filename*=UTF-8''%E2%82%AC%20rates.pdf", "€ rates.pdf"),
        (b"attachment; filename*=iso-8859-1'fr'caf%E9.txt", "café.txt"),
        (
            b"attachment; filename*0*=UTF-8''Gr%C3; filename*1*=%BC%C3%9Fe; filename*2=.txt",
            "Grüße.txt",
        ),
        (b"attachment; filename*3=gap; filename*1=.txt; filename*0=one", "one.txt"),
        (b'attachment; filename="=?UTF-8?B?R3LDvMOfZQ==?=.txt"', "Grüße.txt"),
        (b'attachment; filename="evil\\r\\n\x01.txt"', "evilrn.txt"),
        (b"attachment", "from-type.bin"),
        (b"inline; filename=" + b"x" * 1000, "x" * 255),
    ],
)
def test_attachment_filenames(params: bytes, filename: str) -> None:
    message = (
        b"Content-Type: multipart/mixed; boundary=b\n\n--b\n\ntext\n--b\n"
        b"Content-Type: application/octet-stream; name=from-type.bin\n"
        b"Content-Disposition: " + params + b"\n\ndata\n--b--\n"
    )
    assert checked(message)["attachments"][0]["filename"] == filename


# --- bodies ----------------------------------------------------------------------


def text_message(
    body: bytes, ctype: bytes = b"text/plain; charset=utf-8", cte: bytes = b""
) -> bytes:
    header = b"Content-Type: " + ctype + b"\n"
    if cte:
        header += b"Content-Transfer-Encoding: " + cte + b"\n"
    return header + b"\n" + body


@pytest.mark.parametrize(
    ("body", "ctype", "text"),
    [
        (b"caf\xe9", b"text/plain; charset=iso-8859-1", "café"),
        (b"caf\xe9", b"text/plain; charset=utf-8", "caf\ufffd"),
        (b"caf\xe9", b"text/plain; charset=x-klingon", "caf\ufffd"),
        (b"caf\xc3\xa9", b"text/plain", "café"),  # no charset: UTF-8, which ASCII is a subset of
        (b"caf\xc3\xa9", b"text/plain; charset=us-ascii", "café"),
        (b"\x93\xfa\x96\x7b", b"text/plain; charset=shift_jis", "日本"),
        (b"\xff\xfeh\x00i\x00", b"text/plain; charset=utf-16", "hi"),
        (b"a\r\nb\rc\nd\x00e\x1bf\tg", b"text/plain", "a\nb\nc\ndef\tg"),
        (b"\xed\xa0\x80", b"text/plain; charset=utf-8", "\ufffd\ufffd\ufffd"),  # surrogate
    ],
)
def test_body_charsets(body: bytes, ctype: bytes, text: str) -> None:
    assert checked(text_message(body, ctype))["text"] == text


def test_unknown_transfer_encoding_is_read_as_stored() -> None:
    result = checked(text_message(b"begin 644 x\n", cte=b"x-uuencode"))
    assert result["text"] == "begin 644 x\n"


def test_missing_boundary_reads_as_plain_text() -> None:
    # RFC 2046 §5.1.1 requires the boundary; RFC 2045 §5.2 makes it text/plain.
    result = checked(b"Content-Type: multipart/mixed\n\n--x\nhello\n--x--\n")
    assert result["text"] == "--x\nhello\n--x--\n"
    assert result["attachments"] == []


@pytest.mark.parametrize(
    ("body", "limit", "text", "cut"),
    [
        (b"abcd", 4, "abcd", False),  # exactly the limit
        (b"abcde", 4, "abcd", True),
        ("abcé".encode(), 4, "abc", True),  # é would straddle the limit
        ("abcé".encode(), 5, "abcé", False),
        ("ab€".encode(), 4, "ab", True),
        ("ab€".encode(), 5, "ab€", False),
        ("😀".encode(), 3, "", True),
        (b"", 4, "", False),
    ],
)
def test_body_truncation(body: bytes, limit: int, text: str, cut: bool) -> None:
    result = checked(text_message(body), max_body_bytes=limit)
    assert (result["text"], result["text_truncated"]) == (text, cut)


def test_truncation_counts_decoded_utf8() -> None:
    # 4 octets of Latin-1 are 8 of UTF-8; base64 input is longer still.
    message = text_message(b"6enp6Q==", b"text/html; charset=iso-8859-1", b"base64")
    result = checked(message, max_body_bytes=5)
    assert (result["html"], result["html_truncated"]) == ("éé", True)
    assert (result["text"], result["text_truncated"]) == (None, False)


def test_attachment_count_is_bounded() -> None:
    parts = b"".join(b"--b\nContent-Type: image/gif\n\nGIF\n" for _ in range(5))
    message = b"Content-Type: multipart/mixed; boundary=b\n\n" + parts + b"--b--\n"
    result = checked(message, max_parts=3)
    assert len(result["attachments"]) == 3
    assert result["attachments_truncated"] is True
    assert checked(message, max_parts=5)["attachments_truncated"] is False


def test_address_count_is_bounded() -> None:
    message = b"From: a@x.test\nTo: b@x.test, c@x.test\nCc: d@x.test\n\n"
    headers = checked(message, max_addresses=2)
    assert [a["address"] for a in headers["headers"]["from"] + headers["headers"]["to"]] == [
        "a@x.test",
        "b@x.test",
    ]
    assert headers["headers"]["cc"] == []
    assert headers["headers_truncated"] is True


def test_header_budget_serves_the_subject_before_recipients() -> None:
    # Each address costs its JSON framing too, so 800 octets of To: overflow 1 KiB.
    to = b", ".join(b"u%d@x.io" % i for i in range(100))
    message = b"To: " + to + b"\nSubject: still here\n\n"
    result = checked(message, max_header_bytes=1024)
    assert result["headers"]["subject"] == "still here"
    assert 0 < len(result["headers"]["to"]) < 100
    assert result["headers_truncated"] is True


# --- hostile mail ----------------------------------------------------------------


def nested(depth: int) -> bytes:
    opens = b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\n\n--b%d\n' % (i, i) for i in range(depth)
    )
    return opens + b"\nleaf\n"


HOSTILE = {
    "10,000 recipients": b"To: " + b", ".join(b"u%d@example.test" % i for i in range(10_000)),
    "10 MB header line": b"Subject: " + b"x" * 10_000_000 + b"\n\nbody\n",
    "10 MB body line": b"Subject: a\n\n" + b"x" * 10_000_000,
    "5,000 nested multiparts": nested(5_000),
    "5,000 nested, one boundary": b"Content-Type: multipart/mixed; boundary=b\n\n--b\n" * 5_000,
    "100,000 parts": b"Content-Type: multipart/mixed; boundary=b\n\n" + b"--b\n\nx\n" * 100_000,
    "invalid UTF-8 everywhere": bytes(range(256)) * 4_000,
    "invalid UTF-8 headers": b"From: \xff\xfe <\xc0@\xff>\nSubject: \x80\xbf\n\n\xff\n" * 1_000,
    "missing boundary": b"Content-Type: multipart/alternative\n\n" + b"--x\nhi\n" * 100_000,
    "empty boundary": b'Content-Type: multipart/mixed; boundary=""\n\n--\n\n--\n',
    "unterminated multipart": b"Content-Type: multipart/mixed; boundary=b\n\n--b\n\n"
    + b"y" * 10**6,
    "encoded words": b"Subject: " + b"=?utf-8?q?a?= " * 500_000 + b"\n\n",
    "half encoded words": b"Subject: " + b"=?a?q?" * 500_000 + b"\n\n",
    "unknown charsets": b"Subject: " + b"".join(b"=?x-%d?q?a?=" % i for i in range(50_000)),
    "punycode body": text_message(b"a-" + b"9" * 10**6, b"text/plain; charset=punycode"),
    "references": b"References: " + b"<a@b> " * 1_000_000 + b"\n\n",
    "quoted names": b"To: " + b'"' * 1_000_000,
    "comments": b"To: " + b"(" * 1_000_000 + b"a@b",
    "controls": b"\n" + b"\x00\r" * 2_000_000,
    "base64 UTF-32": text_message(b"QUFB\n" * 2_000_000, b"text/plain; charset=utf-32", b"base64"),
    "qp soft breaks": text_message(b"=\n" * 2_000_000, cte=b"quoted-printable"),
    "RFC 2231 sections": b"Content-Type: multipart/mixed; boundary=b\n\n--b\n"
    b"Content-Disposition: attachment; filename*0*=utf-8''a"
    + b"".join(b"; filename*%d*=%%C3%%A9" % i for i in range(1, 50_000))
    + b"\n\nx\n--b--\n",
    "long parameter": b"Content-Type: image/png; name=" + b"n" * 10**7 + b"\n\n",
    "bare CRs": b"Subject: a\r" * 1_000_000,
    "no header end": b"X: " + b"a\n " * 3_000_000,
    "10 MB of header lines": b"X: a\n" * 2_000_000 + b"\nbody\n",
    "10 MB of part header lines": b"Content-Type: multipart/mixed; boundary=b\n\n--b\n"
    + b"X: a\n" * 2_000_000
    + b"\nbody\n--b--\n",
    "200 parts of long headers": b"Content-Type: multipart/mixed; boundary=b\n\n"
    + (b"--b\n" + b"X: a\n" * 12_000 + b"\nbody\n") * 200,
    "empty": b"",
}


@pytest.mark.parametrize("content", list(HOSTILE.values()), ids=list(HOSTILE))
def test_hostile_mail_is_bounded_and_quick(content: bytes) -> None:
    with watchdog(BOUND):
        message_summary(content)
    checked(content)


def test_hostile_results() -> None:
    assert len(checked(HOSTILE["10,000 recipients"])["headers"]["to"]) < 10_000
    assert checked(HOSTILE["10 MB header line"])["headers_truncated"] is True
    assert checked(HOSTILE["10 MB body line"])["text_truncated"] is True
    # Past the splitter's nesting bound, the rest is one opaque attachment.
    deep = checked(nested(5_000))
    assert [a["content_type"] for a in deep["attachments"]] == ["application/octet-stream"]
    assert checked(HOSTILE["100,000 parts"])["attachments_truncated"] is True
    # A part whose header is past what is read is reported, not read.
    unread = checked(HOSTILE["10 MB of part header lines"])
    assert unread["attachments"] == [
        {
            "filename": None,
            "content_type": "application/octet-stream",
            "size": 4,
            "content_id": None,
            "disposition": None,
        }
    ]
    assert unread["attachments_truncated"] is True


# --- any input -------------------------------------------------------------------

_FRAGMENTS = [
    b"\r\n",
    b"\n",
    b"\n\n",
    b"--b\n",
    b"--b--\n",
    b"Content-Type: multipart/mixed; boundary=b\n",
    b"Content-Type: multipart/alternative; boundary=b\n",
    b"Content-Type: text/html; charset=utf-16\n",
    b"Content-Type: text/plain; charset=shift_jis\n",
    b"Content-Type: message/rfc822\n",
    b"Content-Transfer-Encoding: base64\n",
    b"Content-Transfer-Encoding: quoted-printable\n",
    b"Content-Disposition: attachment; filename*0*=utf-8''%C3; filename*1*=%A9\n",
    b"Content-ID: <x>\n",
    b"Subject: =?utf-8?b?w6k=?= =?utf-7?q?+2D8-?=\n",
    b'From: "a, b" <a@b>, g: c@d;\n',
    b"To: (c) d <e@f>\n",
    b"Date: Mon, 7 Dec 2026 14:00:00 +0100\n",
    b"References: <a@b> <c@d>\n",
    b"\xff\xfe\xed\xa0\x80",
    b"=?",
    b"?=",
    b"=E9",
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    content=st.lists(
        st.one_of(st.sampled_from(_FRAGMENTS), st.binary(max_size=40)), max_size=40
    ).map(b"".join),
    body=st.integers(0, 64),
    header=st.integers(0, 256),
    parts=st.integers(0, 4),
)
def test_any_bytes(content: bytes, body: int, header: int, parts: int) -> None:
    checked(content, max_body_bytes=body, max_header_bytes=header, max_parts=parts, max_addresses=3)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000))
def test_any_bytes_default_limits(content: bytes) -> None:
    checked(content)
