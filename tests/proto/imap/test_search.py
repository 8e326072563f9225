"""SEARCH (RFC 9051 §6.4.4, RFC 4731 ESEARCH, RFC 5182 SAVE/$) as transcripts.

Each case reads ``C: SEARCH <keys>`` and checks which messages of a small
fake mailbox match, or which bytes the server answers.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import pytest

from mailstead.proto.errors import RemoteProtocolError
from mailstead.proto.imap import search_match
from mailstead.proto.imap.search import (
    BadCharset,
    SearchQuery,
    SearchSyntaxError,
    format_search,
    parse_search,
)
from mailstead.proto.imap.tokens import Atom, ParenList, String, Token

# --- a tiny tokenizer for the test transcripts (atoms, "quoted", parentheses) ------------

_LEX = re.compile(r'\s*(?:(\()|(\))|"((?:[^"\\]|\\.)*)"|([^\s()"]+))')


def tokens(line: str) -> tuple[Token, ...]:
    stack: list[list[Token]] = [[]]
    pos = 0
    line = line.strip()
    while pos < len(line):
        m = _LEX.match(line, pos)
        assert m is not None, line[pos:]
        pos = m.end()
        if m[1]:
            stack.append([])
        elif m[2]:
            items = stack.pop()
            stack[-1].append(ParenList(tuple(items)))
        elif m[3] is not None:
            stack[-1].append(String(re.sub(r"\\(.)", r"\1", m[3]).encode("utf-8")))
        else:
            stack[-1].append(Atom(m[4]))
    assert len(stack) == 1
    return tuple(stack[0])


# --- a fake mailbox ---------------------------------------------------------------------


def ts(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp()


@dataclass
class Msg:
    seq: int
    uid: int
    raw: bytes
    flags: Collection[str] = frozenset()
    internaldate: float = 0.0
    max_seq: int = 0
    max_uid: int = 0
    saved: frozenset[int] | None = None
    reads: list[str] = field(default_factory=list)

    @property
    def size(self) -> int:
        return len(self.raw)

    def header_bytes(self) -> bytes:
        self.reads.append("header")
        end = self.raw.find(b"\r\n\r\n")
        return self.raw if end < 0 else self.raw[: end + 4]

    def message_bytes(self) -> bytes:
        self.reads.append("message")
        return self.raw


def crlf(text: str, charset: str = "ascii") -> bytes:
    return text.replace("\n", "\r\n").encode(charset)


def b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


M1 = crlf(
    "From: Alice Example <alice@example.test>\n"
    "To: bob@example.test\n"
    "Cc: carol@example.test\n"
    "Subject: Hello world\n"
    "Date: Mon, 6 Jan 2020 23:30:00 -0800\n"
    "\n"
    "Lunch tomorrow?\n"
)
M2 = crlf(
    "From: =?iso-8859-1?Q?Andr=E9?= <andre@example.test>\n"
    "To: alice@example.test\n"
    f"Subject: =?UTF-8?B?{b64('Échantillon')}?=\n"
    "MIME-Version: 1.0\n"
    "Content-Type: text/plain; charset=utf-8\n"
    "Content-Transfer-Encoding: base64\n"
    "\n"
    f"{b64('Grüße aus Köln, STRASSE 5')}\n"
)
M3 = crlf(
    "From: dave@example.test\n"
    "To: alice@example.test\n"
    "Bcc: secret@example.test\n"
    "X-Priority: 1\n"
    "Subject: Quarterly\n"
    "  report\n"
    "Date: Wed, 1 Apr 2020 00:10:00 +0200\n"
    "MIME-Version: 1.0\n"
    'Content-Type: multipart/mixed; boundary="b1"\n'
    "\n"
    "--b1\n"
    "Content-Type: text/html; charset=utf-8\n"
    "Content-Transfer-Encoding: quoted-printable\n"
    "\n"
    "<p>Caf=C3=A9 revenue=\n"
    " is up</p>\n"
    "--b1\n"
    "Content-Type: application/octet-stream\n"
    "Content-Transfer-Encoding: base64\n"
    "\n"
    f"{base64.b64encode(b'abcdefgh' * 6).decode()}\n"
    "--b1--\n"
)
M4 = crlf(
    "From: erin@example.test\n"
    "To: bob@example.test\n"
    "Subject: Fa\xe7ade\n"
    "Date: garbage\n"
    "Content-Type: text/plain; charset=iso-8859-1\n"
    "\n"
    "Voil\xe0 la fa\xe7ade.\n",
    "latin-1",
)


def mailbox(saved: frozenset[int] | None = None) -> list[Msg]:
    msgs = [
        Msg(1, 10, M1, frozenset({"\\Seen"}), ts("2020-01-07 10:00:00")),
        Msg(2, 11, M2, ("\\Flagged", "\\Answered"), ts("2020-01-08 00:00:00")),
        Msg(
            3, 20, M3, frozenset({"\\Deleted", "\\Draft", "$Forwarded"}), ts("2020-03-31 23:59:59")
        ),
        Msg(4, 35, M4, frozenset({"\\Recent"}), ts("2020-04-01 00:00:00")),
    ]
    for m in msgs:
        m.max_seq, m.max_uid, m.saved = 4, 35, saved
    return msgs


def search(line: str, *, uid: bool = False, saved: frozenset[int] | None = None) -> list[int]:
    """``C: [UID] SEARCH <line>`` -> the sequence numbers that match."""
    query = parse_search(tokens(line), uid_mode=uid)
    return [m.seq for m in mailbox(saved) if query.matches(m)]


# --- every key --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "seqs"),
    [
        ("ALL", [1, 2, 3, 4]),
        ("ANSWERED", [2]),
        ("UNANSWERED", [1, 3, 4]),
        ("DELETED", [3]),
        ("UNDELETED", [1, 2, 4]),
        ("DRAFT", [3]),
        ("UNDRAFT", [1, 2, 4]),
        ("FLAGGED", [2]),
        ("UNFLAGGED", [1, 3, 4]),
        ("SEEN", [1]),
        ("UNSEEN", [2, 3, 4]),
        ("seen", [1]),  # keys are case-insensitive
        ("KEYWORD $Forwarded", [3]),
        ("KEYWORD $forwarded", [3]),  # flags too
        ("UNKEYWORD $Forwarded", [1, 2, 4]),
        ("KEYWORD $Junk", []),
        ("RECENT", [4]),
        ("NEW", [4]),
        ("OLD", [1, 2, 3]),
        ("FROM alice", [1]),
        ('FROM "ALICE EXAMPLE"', [1]),
        ("FROM andré", [2]),  # RFC 2047 Q word in the display name
        ("FROM ANDRÉ", [2]),
        ("TO alice@example.test", [2, 3]),
        ("CC carol", [1]),
        ("BCC secret", [3]),
        ("SUBJECT hello", [1]),
        ("SUBJECT échantillon", [2]),  # RFC 2047 B word, UTF-8
        ('SUBJECT "quarterly  report"', [3]),  # unfolded: CRLF removed, WSP kept
        ("SUBJECT façade", [4]),  # raw 8-bit (latin-1) header
        ("SUBJECT nothing", []),
        ("SUBJECT chantillon", [2]),  # ASCII, but only in the decoded B word
        ("SUBJECT alice", []),  # in the header, but not in Subject
        ('SUBJECT "report"', [3]),  # a folded field
        ("HEADER X-Priority 1", [3]),
        ('HEADER x-priority ""', [3]),  # empty string: has the field
        ('HEADER Subject ""', [1, 2, 3, 4]),
        ('HEADER Bcc ""', [3]),
        ("HEADER Date -0800", [1]),
        ("BODY lunch", [1]),
        ("BODY hello", []),  # only in the header
        ("TEXT hello", [1]),
        ("TEXT LUNCH", [1]),
        ("BODY köln", [2]),  # base64 text part, UTF-8
        ("BODY grüsse", [2]),  # casefold: ß ~ ss
        ("BODY straße", [2]),
        ("TEXT échantillon", [2]),  # header encoded word, via TEXT
        ("BODY café", [3]),  # quoted-printable text/html part
        ('BODY "revenue is"', [3]),  # soft line break removed
        ("BODY abcdefgh", []),  # inside a base64 attachment: not text
        ("BODY ywjjzgvm", []),  # raw base64 of it, lowercased: no false hit
        ("BODY voilà", [4]),  # latin-1 8-bit body
        ("TEXT example.test", [1, 2, 3, 4]),
        ('BODY ""', [1, 2, 3, 4]),
        ("LARGER 10", [1, 2, 3, 4]),
        (f"LARGER {len(M1)}", [2, 3]),
        (f"SMALLER {len(M1)}", [4]),
        (f"SMALLER {len(M1) + 1}", [1, 4]),
        ("1", [1]),
        ("2:3", [2, 3]),
        ("*", [4]),
        ("3:*", [3, 4]),
        ("9:*", [4]),  # "9:*" with 4 messages is "4:9"
        ("1,4", [1, 4]),
        ("UID 11", [2]),
        ("UID 12:34", [3]),
        ("UID *", [4]),
        ("UID 100:*", [4]),
        ("UID 1:10,35", [1, 4]),
    ],
)
def test_keys(line: str, seqs: list[int]) -> None:
    assert search(line) == seqs


@pytest.mark.parametrize(
    ("line", "seqs"),
    [
        # internal dates: 1 = 2020-01-07 10:00Z, 2 = 2020-01-08 00:00Z,
        # 3 = 2020-03-31 23:59:59Z, 4 = 2020-04-01 00:00Z (UTC calendar dates)
        ("ON 7-Jan-2020", [1]),
        ("ON 07-jan-2020", [1]),
        ('ON "8-JAN-2020"', [2]),
        ("BEFORE 8-Jan-2020", [1]),
        ("SINCE 8-Jan-2020", [2, 3, 4]),
        ("SINCE 31-Mar-2020", [3, 4]),
        ("BEFORE 1-Apr-2020", [1, 2, 3]),
        ("ON 1-Apr-2020", [4]),
        ("SINCE 2-Apr-2020", []),
        ("BEFORE 1-Jan-1970", []),
        # Date: fields in their own zone: 1 = 6-Jan-2020 (-0800), 3 = 1-Apr-2020 (+0200);
        # 2 has none and 4 an unparseable one: their internal date stands in.
        ("SENTON 6-Jan-2020", [1]),
        ("SENTBEFORE 7-Jan-2020", [1]),
        ("SENTSINCE 1-Apr-2020", [3, 4]),
        ("SENTON 8-Jan-2020", [2]),
        ("SENTBEFORE 1-Apr-2020", [1, 2]),
    ],
)
def test_dates(line: str, seqs: list[int]) -> None:
    assert search(line) == seqs


@pytest.mark.parametrize(
    ("line", "seqs"),
    [
        ("SEEN FLAGGED", []),
        ("OR SEEN FLAGGED", [1, 2]),
        ("NOT SEEN", [2, 3, 4]),
        ("NOT NOT SEEN", [1]),
        ("OR SEEN OR FLAGGED DELETED", [1, 2, 3]),
        ("OR (SEEN SUBJECT hello) (FLAGGED FROM nobody)", [1]),
        ("NOT (OR SEEN FLAGGED)", [3, 4]),
        ("NOT OR SEEN FLAGGED", [3, 4]),
        ("(((SEEN)))", [1]),
        ("UNSEEN TO alice BODY café", [3]),
        ("OR 1 UID 35", [1, 4]),
        ("NOT 2:*", [1]),
        ("OR NOT SEEN NOT UNSEEN", [1, 2, 3, 4]),
    ],
)
def test_boolean(line: str, seqs: list[int]) -> None:
    assert search(line) == seqs


def test_saved_result() -> None:
    # RFC 5182 §2.1: $ is the saved result, kept as UIDs.
    assert search("$", saved=frozenset({11, 35})) == [2, 4]
    assert search("UID $", saved=frozenset({11, 35})) == [2, 4]
    assert search("NOT $", saved=frozenset({11})) == [1, 3, 4]
    assert search("$") == []  # nothing saved: the empty set
    assert parse_search(tokens("$ SEEN"), uid_mode=False).uses_saved


def test_star_in_an_empty_mailbox() -> None:
    query = parse_search(tokens("1:*"), uid_mode=False)
    assert not query.matches(Msg(1, 1, M1, max_seq=0, max_uid=0))


def test_return_and_charset_prefix() -> None:
    q = parse_search(tokens("RETURN (MIN COUNT) CHARSET UTF-8 SEEN"), uid_mode=True)
    assert q.return_options == frozenset({"MIN", "COUNT"})
    assert q.charset == "UTF-8"
    assert q.uid_mode
    assert parse_search(tokens("RETURN () ALL"), uid_mode=False).return_options == frozenset(
        {"ALL"}
    )
    assert parse_search(
        tokens("return (save all) ALL"), uid_mode=False
    ).return_options == frozenset({"SAVE", "ALL"})
    assert parse_search(tokens("ALL"), uid_mode=False).return_options is None
    assert parse_search(tokens('CHARSET "us-ascii" ALL'), uid_mode=False).charset == "US-ASCII"
    assert parse_search(tokens("CHARSET utf-8 ALL"), uid_mode=False).charset == "UTF-8"


def test_literal_strings() -> None:
    q = parse_search(
        (Atom("CHARSET"), Atom("UTF-8"), Atom("SUBJECT"), String("ÉCHAN".encode(), literal=True)),
        uid_mode=False,
    )
    assert [m.seq for m in mailbox() if q.matches(m)] == [2]


@pytest.mark.parametrize("charset", ["ISO-8859-1", "KOI8-R", "utf8", "x"])
def test_bad_charset(charset: str) -> None:
    # S: a1 NO [BADCHARSET (UTF-8)] ...
    with pytest.raises(BadCharset) as info:
        parse_search(tokens(f"CHARSET {charset} SUBJECT x"), uid_mode=False)
    assert info.value.response_code == "BADCHARSET (UTF-8)"
    assert not isinstance(info.value, SearchSyntaxError)


@pytest.mark.parametrize(
    "line",
    [
        "",  # C: a1 SEARCH
        "OR SEEN",
        "OR A",
        "NOT",
        "BEFORE 32-Jan-2020",
        "BEFORE 29-Feb-2021",
        "BEFORE 1-Foo-2020",
        "BEFORE 1-Jan-20",
        "BEFORE 111-Jan-2020",
        "BEFORE 1/1/2020",
        "BEFORE",
        "ON ()",
        "LARGER x",
        "LARGER -1",
        "LARGER",
        "SMALLER 99999999999999999999",
        "FOO",
        "SEEN FOO",
        '"SEEN"',
        "()",
        "(SEEN) ()",
        "SUBJECT",
        "SUBJECT (x)",
        "HEADER Subject",
        "KEYWORD",
        "UID",
        "UID x",
        "UID 0",
        "0",
        "1:",
        "1,,2",
        "$,1",
        "RETURN",
        "RETURN ALL",
        "RETURN (FOO) ALL",
        "RETURN (MIN)",
        "CHARSET",
        "CHARSET UTF-8",
        "ALL RETURN (MIN)",  # RETURN must come first
        "ALL CHARSET UTF-8",
    ],
)
def test_syntax_errors(line: str) -> None:
    # S: a1 BAD ...
    with pytest.raises(SearchSyntaxError):
        parse_search(tokens(line), uid_mode=False)


def test_invalid_utf8_string() -> None:
    with pytest.raises(SearchSyntaxError):
        parse_search((Atom("SUBJECT"), String(b"\xff\xfe", literal=True)), uid_mode=False)


def test_error_kinds() -> None:
    assert issubclass(SearchSyntaxError, RemoteProtocolError)
    assert issubclass(BadCharset, RemoteProtocolError)


@pytest.mark.parametrize(
    "args",
    [
        (Atom("NOT"),) * 10_000 + (Atom("SEEN"),),
        (Atom("OR"),) * 10_000 + (Atom("SEEN"),) * 10_001,
        (Atom("SEEN"),) * 5_000,
    ],
    ids=["not-bomb", "or-bomb", "too-many-keys"],
)
def test_hostile_programs(args: tuple[Token, ...]) -> None:
    with pytest.raises(SearchSyntaxError):
        parse_search(args, uid_mode=False)


def test_paren_depth_bomb() -> None:
    token: Token = Atom("SEEN")
    for _ in range(5_000):
        token = ParenList((token,))
    with pytest.raises(SearchSyntaxError):
        parse_search((token,), uid_mode=False)


def test_moderate_nesting_is_fine() -> None:
    assert search("NOT " * 20 + "SEEN") == [1]


# --- what the server must read --------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "headers", "body", "sent"),
    [
        ("SEEN UNDELETED 1:* UID 5 LARGER 3 SINCE 1-Jan-2020 NOT KEYWORD x", False, False, False),
        ("SUBJECT x", True, False, False),
        ("OR SEEN HEADER X-A b", True, False, False),
        ("SENTON 1-Jan-2020", True, False, True),
        ("NOT BODY x", True, True, False),
        ("TEXT x", True, True, False),
    ],
)
def test_needs(line: str, headers: bool, body: bool, sent: bool) -> None:
    q = parse_search(tokens(line), uid_mode=False)
    assert (q.needs_headers, q.needs_body, q.needs_sent_date) == (headers, body, sent)


def test_flag_search_reads_no_file() -> None:
    q = parse_search(
        tokens("OR SEEN FLAGGED NOT DELETED SINCE 1-Jan-2000 SMALLER 100000"), uid_mode=False
    )
    box = mailbox()
    assert [m.seq for m in box if q.matches(m)] == [1, 2]
    assert all(m.reads == [] for m in box)


def test_cheap_keys_first() -> None:
    # Only the messages that pass the flag test are read.
    box = mailbox()
    q = parse_search(tokens("BODY lunch SEEN"), uid_mode=False)
    assert [m.seq for m in box if q.matches(m)] == [1]
    assert [m.seq for m in box if m.reads] == [1]


def test_header_and_body_read_once() -> None:
    box = mailbox()
    q = parse_search(tokens("SUBJECT hello TEXT world FROM alice BODY lunch"), uid_mode=False)
    assert q.matches(box[0])
    assert box[0].reads == ["message"]  # the header is taken from the message once read


def test_plain_text_search_takes_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(raw: bytes) -> tuple[str, str]:
        raise AssertionError("decoded a plain message")

    monkeypatch.setattr(search_match, "decode_message", boom)
    body = crlf("From: a@example.test\nSubject: note\n\n" + "Some plain text line.\n" * 200)
    box = [Msg(i, i, body + (b"needle\r\n" if i == 77 else b"")) for i in range(1, 20_001)]
    q = parse_search(tokens("TEXT NEEDLE"), uid_mode=False)
    start = time.perf_counter()
    hits = [m.seq for m in box if q.matches(m)]
    elapsed = time.perf_counter() - start
    assert hits == [77]
    assert elapsed < 5.0


# --- responses, byte for byte --------------------------------------------------------------


def q(line: str, uid: bool = False) -> SearchQuery:
    return parse_search(tokens(line), uid_mode=uid)


@pytest.mark.parametrize(
    ("line", "uid", "results", "expected"),
    [
        ("ALL", False, [2, 5, 9], b"* SEARCH 2 5 9\r\n"),
        ("ALL", True, [2, 5, 9], b"* SEARCH 2 5 9\r\n"),
        ("ALL", False, [], b"* SEARCH\r\n"),
        (
            "RETURN (MIN MAX COUNT ALL) ALL",
            True,
            [2, 5, 9],
            b'* ESEARCH (TAG "a1") UID MIN 2 MAX 9 COUNT 3 ALL 2,5,9\r\n',
        ),
        (
            "RETURN (ALL COUNT MAX MIN) ALL",
            False,
            [2, 3, 4, 9],
            b'* ESEARCH (TAG "a1") MIN 2 MAX 9 COUNT 4 ALL 2:4,9\r\n',
        ),
        ("RETURN () ALL", False, [1, 2, 3], b'* ESEARCH (TAG "a1") ALL 1:3\r\n'),
        ("RETURN (MIN MAX COUNT ALL) ALL", False, [], b'* ESEARCH (TAG "a1") COUNT 0\r\n'),
        ("RETURN (MIN MAX ALL) ALL", True, [], b'* ESEARCH (TAG "a1") UID\r\n'),
        ("RETURN (COUNT) ALL", True, [7], b'* ESEARCH (TAG "a1") UID COUNT 1\r\n'),
        ("RETURN (MIN) ALL", False, [7, 8], b'* ESEARCH (TAG "a1") MIN 7\r\n'),
        ("RETURN (SAVE MIN) ALL", False, [7, 8], b'* ESEARCH (TAG "a1") MIN 7\r\n'),
        ("RETURN (SAVE) ALL", False, [7, 8], b""),  # RFC 5182: no ESEARCH for SAVE alone
    ],
)
def test_format_search(line: str, uid: bool, results: list[int], expected: bytes) -> None:
    assert format_search(results, q(line, uid), tag="a1", uid_mode=uid) == expected


def test_format_search_rev2_session() -> None:
    # IMAP4rev2: a plain SEARCH is answered with ESEARCH ... ALL.
    assert (
        format_search([3, 4], q("ALL"), tag="A7", uid_mode=True, esearch=True)
        == b'* ESEARCH (TAG "A7") UID ALL 3:4\r\n'
    )


@pytest.mark.parametrize(
    ("options", "uids", "saved"),
    [
        ("SAVE", [3, 5, 9], [3, 5, 9]),
        ("SAVE MIN", [3, 5, 9], [3]),
        ("SAVE MAX", [3, 5, 9], [9]),
        ("SAVE MIN MAX", [3, 5, 9], [3, 9]),
        ("SAVE MIN MAX", [4], [4]),
        ("SAVE MIN COUNT", [3, 5, 9], [3, 5, 9]),
        ("SAVE MIN", [], []),
    ],
)
def test_to_save(options: str, uids: list[int], saved: list[int]) -> None:
    # RFC 5182 §2.4: SAVE with only MIN/MAX saves just those.
    query = q(f"RETURN ({options}) ALL")
    assert query.saves
    assert query.to_save(uids) == saved


def test_query_is_a_value() -> None:
    a, b = q("OR SEEN 1:3"), q("OR SEEN 1:3")
    assert a == b
    assert hash(a) == hash(b)
    assert replace(a, return_options=frozenset({"ALL"})).matches(mailbox()[0])
