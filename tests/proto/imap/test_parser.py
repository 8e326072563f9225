"""The IMAP command parser, transcript style: C: bytes in, the events that come out."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailstead.proto.errors import LocalProtocolError
from mailstead.proto.imap.parser import (
    NEED_DATA,
    BadCommand,
    Command,
    CommandParser,
    ContinuationNeeded,
    LineTooLong,
    LiteralTooBig,
    ParseEvent,
)
from mailstead.proto.imap.tokens import Atom, ParenList, String
from tests.fuzz.wire import watchdog


def drain(p: CommandParser) -> list[ParseEvent]:
    out: list[ParseEvent] = []
    while (event := p.next_event()) is not NEED_DATA:
        out.append(event)
    return out


def feed(p: CommandParser, data: bytes) -> list[ParseEvent]:
    p.receive_data(data)
    return drain(p)


def parse(data: bytes, **limits: int | bool) -> list[ParseEvent]:
    return feed(CommandParser(**limits), data)  # type: ignore[arg-type]


A = Atom


# -- commands ---------------------------------------------------------------------


def test_login_with_synchronising_literal() -> None:
    p = CommandParser()
    assert feed(p, b"a1 LOGIN {5}\r\n") == [ContinuationNeeded(5)]
    assert feed(p, b'alice "pw"\r\n') == [
        Command("a1", "LOGIN", (String(b"alice", literal=True), String(b"pw")))
    ]


def test_pipelined_commands_in_one_chunk() -> None:
    assert parse(b"a1 NOOP\r\na2 capability\r\na3 select INBOX\n") == [
        Command("a1", "NOOP", ()),
        Command("a2", "CAPABILITY", ()),
        Command("a3", "SELECT", (A("INBOX"),)),
    ]


def test_uid_fetch() -> None:
    assert parse(b"x UID FETCH 1:* (FLAGS)\r\n") == [
        Command("x", "FETCH", (A("1:*"), ParenList((A("FLAGS"),))), uid=True)
    ]


def test_fetch_section_with_header_list_and_partial_is_one_atom() -> None:
    line = b"a FETCH 1 (BODY.PEEK[HEADER.FIELDS (From To)]<0.100> FLAGS BINARY.PEEK[1]<0.10>)\r\n"
    assert parse(line) == [
        Command(
            "a",
            "FETCH",
            (
                A("1"),
                ParenList(
                    (
                        A("BODY.PEEK[HEADER.FIELDS (From To)]<0.100>"),
                        A("FLAGS"),
                        A("BINARY.PEEK[1]<0.10>"),
                    )
                ),
            ),
        )
    ]


@pytest.mark.parametrize(
    "atom",
    [
        "BODY[]",
        "BODY.PEEK[1.2.MIME]",
        'BODY[HEADER.FIELDS.NOT ("X-A" "X-]")]',
        "1:*,$",
        "INBOX.%",
        "\\Seen",
        "\\*",
        "NIL",
        "[Gmail]/%",
        "~bob",
    ],
)
def test_atoms(atom: str) -> None:
    assert parse(b"t STORE " + atom.encode() + b"\r\n") == [Command("t", "STORE", (A(atom),))]


def test_search_with_non_synchronising_literal_needs_no_continuation() -> None:
    assert parse(b"s SEARCH CHARSET UTF-8 SUBJECT {4+}\r\nabcd\r\n") == [
        Command(
            "s",
            "SEARCH",
            (A("CHARSET"), A("UTF-8"), A("SUBJECT"), String(b"abcd", literal=True)),
        )
    ]


def test_append_literal8_may_carry_nul() -> None:
    p = CommandParser(max_literal=100, authenticated=True)
    assert feed(p, b"a APPEND INBOX (\\Seen) ~{3}\r\n") == [ContinuationNeeded(3)]
    assert feed(p, b"\0\1\2\r\n") == [
        Command(
            "a",
            "APPEND",
            (A("INBOX"), ParenList((A("\\Seen"),)), String(b"\0\1\2", literal=True, binary=True)),
        )
    ]


def test_literal_inside_a_list_and_quoted_escapes_and_utf8() -> None:
    assert parse(b'a X ("q\\"\\\\" {2+}\r\nab ("\xc3\xa9"))\r\n') == [
        Command(
            "a",
            "X",
            (
                ParenList(
                    (
                        String(b'q"\\'),
                        String(b"ab", literal=True),
                        ParenList((String(b"\xc3\xa9"),)),
                    )
                ),
            ),
        )
    ]


def test_empty_lines_between_commands_are_ignored() -> None:
    assert parse(b"\r\n\na NOOP\r\n") == [Command("a", "NOOP", ())]


# -- bad commands: one line per hostile input ---------------------------------------------


@pytest.mark.parametrize(
    ("line", "bad"),
    [
        (b"a1\r\n", BadCommand("a1", "Missing command")),
        (b"a1 \r\n", BadCommand("a1", "Missing command")),
        (b"+a NOOP\r\n", BadCommand("*", "Invalid tag")),
        (b"a(b NOOP\r\n", BadCommand("*", "Invalid tag")),
        (b" NOOP\r\n", BadCommand("*", "Invalid tag")),
        (b"a N{OOP\r\n", BadCommand("a", "Invalid command name")),
        (b"a UID\r\n", BadCommand("a", "Missing command")),
        (b"a NO\0OP\r\n", BadCommand("a", "Invalid command name")),
        (b"a NOOP x\0\r\n", BadCommand("a", "NUL octet in command")),
        (b'a LOGIN "bob\r\n', BadCommand("a", "Unterminated quoted string")),
        (b'a LOGIN "b\\ob" x\r\n', BadCommand("a", "Invalid escape in quoted string")),
        (b'a LOGIN "\xff" x\r\n', BadCommand("a", "Invalid UTF-8 in quoted string")),
        (b"a FETCH 1 (FLAGS\r\n", BadCommand("a", "Missing )")),
        (b"a FETCH 1 FLAGS)\r\n", BadCommand("a", "Unexpected )")),
        (b"a FETCH 1(FLAGS)\r\n", BadCommand("a", "Missing space between arguments")),
        (b"a LOGIN {3} x\r\n", BadCommand("a", "A literal must end the line")),
        (b"a LOGIN b\x01b x\r\n", BadCommand("a", "Invalid character in command")),
        (b"a LOGIN b\xc3\xa9 x\r\n", BadCommand("a", "Invalid character in command")),
    ],
)
def test_bad_command_then_next_command_parses(line: bytes, bad: BadCommand) -> None:
    assert parse(line + b"b NOOP\r\n") == [bad, Command("b", "NOOP", ())]


def test_nesting_depth_limit() -> None:
    ok = b"a X " + b"(" * 3 + b")" * 3 + b"\r\n"
    assert isinstance(parse(ok, max_depth=3)[0], Command)
    deep = b"a X " + b"(" * 4 + b")" * 4 + b"\r\nb NOOP\r\n"
    assert parse(deep, max_depth=3) == [
        BadCommand("a", "Lists nested too deeply"),
        Command("b", "NOOP", ()),
    ]


def test_token_limit() -> None:
    assert parse(b"a X 1 2 3 4\r\nb X 1 2 3\r\n", max_tokens=3) == [
        BadCommand("a", "Too many arguments"),
        Command("b", "X", (A("1"), A("2"), A("3"))),
    ]


def test_line_too_long_then_next_command() -> None:
    p = CommandParser(max_line=20)
    assert feed(p, b"a1 SEARCH " + b"X" * 30) == [BadCommand("a1", "Line too long")]
    assert feed(p, b"Y" * 10_000) == []
    assert len(p._buf) == 0  # discarded, not buffered
    assert feed(p, b"Z\r\na2 NOOP\r\n") == [Command("a2", "NOOP", ())]


def test_line_too_long_counts_every_line_of_a_command() -> None:
    assert parse(b"a X {1+}\r\n1 " + b"y" * 20 + b"\r\nb NOOP\r\n", max_line=20) == [
        BadCommand("a", "Line too long"),
        Command("b", "NOOP", ()),
    ]


def test_nul_in_literal_is_bad_and_rest_of_command_skipped() -> None:
    assert parse(b"a LOGIN {3+}\r\na\0b {2+}\r\nxx\r\nb NOOP\r\n") == [
        BadCommand("a", "NUL octet in literal"),
        Command("b", "NOOP", ()),
    ]


def test_bad_line_ending_in_non_sync_literal_skips_the_literal() -> None:
    # The literal's bytes look like a command; they must never run as one.
    assert parse(b"a FETCH ) {13+}\r\nb DELETE INBOX\r\nc NOOP\r\n") == [
        BadCommand("a", "Unexpected )"),
        Command("c", "NOOP", ()),
    ]


def test_bad_line_ending_in_sync_literal_expects_no_data() -> None:
    assert parse(b"a FETCH ) {5}\r\nb NOOP\r\n") == [
        BadCommand("a", "Unexpected )"),
        Command("b", "NOOP", ()),
    ]


# -- literal limits ---------------------------------------------------------------


def test_huge_literal_before_authentication_is_fatal_before_any_continuation() -> None:
    p = CommandParser()
    assert feed(p, b"a1 LOGIN {4294967295}\r\n") == [
        BadCommand("a1", "Literal too large", fatal=True)
    ]
    assert feed(p, b"x" * 100_000) == []
    assert len(p._buf) == 0


def test_huge_non_sync_literal_before_authentication_is_fatal() -> None:
    assert parse(b"a1 LOGIN {9000+}\r\n" + b"x" * 50) == [
        BadCommand("a1", "Literal too large", fatal=True)
    ]


def test_literals_of_one_command_share_the_limit() -> None:
    p = CommandParser(max_literal=8)
    assert feed(p, b"a LOGIN {5}\r\n") == [ContinuationNeeded(5)]
    assert feed(p, b"alice {4}\r\n") == [BadCommand("a", "Literal too large", fatal=True)]


def test_append_over_limit_after_authentication_gives_too_big_without_continuation() -> None:
    p = CommandParser(max_literal=1000)
    p.authenticated = True
    assert feed(p, b"a APPEND INBOX {1001}\r\n") == [LiteralTooBig("a", "APPEND", 1001)]
    assert feed(p, b"b NOOP\r\n") == [Command("b", "NOOP", ())]


def test_non_sync_over_limit_is_swallowed_then_too_big_then_next_command() -> None:
    p = CommandParser(max_literal=10, authenticated=True)
    assert feed(p, b"a APPEND INBOX {30+}\r\n") == []
    assert feed(p, b"c DELETE INBOX\r\n") == []  # 16 of the 30 octets
    assert len(p._buf) == 0
    # The other 14, the end of the APPEND line, then the next command.
    assert feed(p, b"c DELETE INBOX\r\nb NOOP\r\n") == [
        LiteralTooBig("a", "APPEND", 30),
        Command("b", "NOOP", ()),
    ]


def test_limit_raised_at_login() -> None:
    p = CommandParser()
    assert feed(p, b"a LOGIN bob pw\r\n") == [Command("a", "LOGIN", (A("bob"), A("pw")))]
    p.authenticated, p.max_literal = True, 1 << 20
    assert feed(p, b"b APPEND INBOX {20000+}\r\n" + b"x" * 20000 + b"\r\n")[0] == Command(
        "b", "APPEND", (A("INBOX"), String(b"x" * 20000, literal=True))
    )


# -- raw lines: AUTHENTICATE and IDLE ---------------------------------------------


def test_authenticate_response_is_a_raw_line() -> None:
    p = CommandParser()
    p.receive_data(b"a AUTHENTICATE PLAIN\r\nAGJvYgBwdw==\r\nb NOOP\r\n")
    # The session handles each event before it pulls the next one.
    assert p.next_event() == Command("a", "AUTHENTICATE", (A("PLAIN"),))
    assert p.next_line() == b"AGJvYgBwdw=="
    assert drain(p) == [Command("b", "NOOP", ())]


def test_idle_reads_lines_until_done() -> None:
    p = CommandParser()
    assert feed(p, b"i IDLE\r\n") == [Command("i", "IDLE", ())]
    assert p.next_line() is NEED_DATA
    p.receive_data(b"DO")
    assert p.next_line() is NEED_DATA
    p.receive_data(b"NE\n")
    assert p.next_line() == b"DONE"


def test_raw_line_too_long_is_skipped() -> None:
    p = CommandParser()
    assert feed(p, b"a AUTHENTICATE PLAIN\r\n") != []
    p.receive_data(b"x" * 50)
    assert p.next_line(10) == LineTooLong(10)
    p.receive_data(b"y" * 50 + b"\r\n*\r\n")
    assert p.next_line(10) == b"*"


def test_raw_line_mid_command_is_a_bug() -> None:
    p = CommandParser()
    assert feed(p, b"a LOGIN {3}\r\n") == [ContinuationNeeded(3)]
    with pytest.raises(LocalProtocolError):
        p.next_line()


# -- properties -------------------------------------------------------------------

_SAMPLES = [
    b"a1 NOOP\r\n",
    b"a2 UID FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (FROM)]<0.5>)\r\n",
    b"a3 LOGIN {3+}\r\nbob {2+}\r\npw\r\n",
    b"a4 FETCH ) {5+}\r\nx NOO\r\n",
    b'a5 LOGIN "unterminated\r\n',
    b"a6 SEARCH " + b"X" * 80 + b"\r\n",
    b"a7 SEARCH " + b"X" * 80 + b" {4+}\r\nabcd\r\n",
    b"a8 APPEND INBOX {300+}\r\n" + b"y" * 300 + b"\r\n",
    b"a9 LOGIN {2}\r\nab c\r\n",
    b"\r\n",
    b"a\0b\r\n",
    b'a10 LOGIN "a\\"b" ((x) \\Seen)\n',
    b"a11 APPEND X ~{2}\r\n\0\n\r\n",
]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(_SAMPLES), max_size=8))
def test_byte_by_byte_gives_the_same_events(commands: list[bytes]) -> None:
    wire = b"".join(commands)
    whole = parse(wire, max_line=64, max_literal=100, authenticated=True)
    p = CommandParser(max_line=64, max_literal=100, authenticated=True)
    split = [e for i in range(len(wire)) for e in feed(p, wire[i : i + 1])]
    assert split == whole
    assert len([e for e in whole if not isinstance(e, ContinuationNeeded)]) == len(
        [c for c in commands if c != b"\r\n"]
    )


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_garbage_never_crashes_and_memory_stays_bounded(data: bytes) -> None:
    p = CommandParser(max_line=64, max_literal=32, authenticated=True)
    for i in range(0, len(data), 7):
        feed(p, data[i : i + 7])
        assert len(p._buf) <= 64 + 2 + 32


# -- "[" in an astring (RFC 9051 §9: ATOM-CHAR excludes "]" only as resp-special) -----

# Every ASTRING-CHAR that is not a letter, as in the test of a strict client.
ODD_NAME = b"!#$&'+,-.0123456789:;<=>?@^_`|[}"


@pytest.mark.parametrize(
    ("line", "args"),
    [
        (b"a SELECT " + ODD_NAME, (A(ODD_NAME.decode()),)),
        (b'a LIST "" ' + ODD_NAME + b"%*", (String(b""), A(ODD_NAME.decode() + "%*"))),
        (b"a SELECT x[ y", (A("x["), A("y"))),
        (b"a SELECT [[[", (A("[[["),)),
        (b"a SELECT a[b]c[d", (A("a[b]c[d"),)),
        # A section stays one atom, spaces and all; an unclosed one is FETCH's to refuse.
        (
            b"a FETCH 1 BODY[HEADER.FIELDS (A B)]<0.8>",
            (A("1"), A("BODY[HEADER.FIELDS (A B)]<0.8>")),
        ),
        (b"a FETCH 1 BODY[TEXT", (A("1"), A("BODY[TEXT"))),
        (b"a FETCH 1 (BODY[TEXT FLAGS)", (A("1"), ParenList((A("BODY[TEXT"), A("FLAGS"))))),
    ],
)
def test_open_bracket_is_an_atom_char(line: bytes, args: tuple[Atom | String, ...]) -> None:
    name = line.split(b" ")[1].decode()
    assert parse(line + b"\r\n") == [Command("a", name, args)]


@pytest.mark.parametrize(
    ("line", "bad"),
    [
        # The "[" ends where a section would have to go on: at a DQUOTE or "(".
        (b'a SELECT x["y"', BadCommand("a", "Missing space between arguments")),
        (b"a SELECT x[(", BadCommand("a", "Missing space between arguments")),
    ],
)
def test_open_bracket_then_a_special(line: bytes, bad: BadCommand) -> None:
    assert parse(line + b"\r\nb NOOP\r\n") == [bad, Command("b", "NOOP", ())]


_BRACKETY = st.lists(st.sampled_from([b"[", b"]", b" ", b'"', b"a", b"(", b")", b"\\", b"%"]))


@settings(max_examples=300, deadline=None)
@given(_BRACKETY)
def test_brackets_quotes_and_spaces_parse_or_are_refused(pieces: list[bytes]) -> None:
    # Any mix ends in one event for the command, and the next command parses.
    events = parse(b"a X " + b"".join(pieces) + b"\r\nb NOOP\r\n")
    assert len(events) == 2
    assert isinstance(events[0], Command | BadCommand)
    assert events[1] == Command("b", "NOOP", ())


# Shapes that would make the lone-"[" alternative of _ATOM quadratic if a failed
# section scan could restart inside the same run (tests/proto/test_regex_linear.py).
_LONG = 64 * 1024 - 100


@pytest.mark.parametrize(
    "args",
    [
        b"[" * _LONG,
        b"[a " * (_LONG // 3),
        b"a[" + b"b" * _LONG,
        b"[ " + b"x" * _LONG + b" [",
        b'[ "' + b"[" * _LONG,
        b"[" + b"a]" * (_LONG // 2),
    ],
)
def test_open_brackets_lex_in_linear_time(args: bytes) -> None:
    with watchdog(1.0):
        events = parse(b"a X " + args + b"\r\nb NOOP\r\n")
    assert events[-1] == Command("b", "NOOP", ())
