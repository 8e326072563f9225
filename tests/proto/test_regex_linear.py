"""Every regular expression that reads peer input runs in linear time.

Each case feeds one pattern about 64 KB shaped for a backtracking engine: a
long run of the repeated unit, then an octet that makes the match fail, so a
pattern with nested or overlapping quantifiers would retry every way of
splitting the run (2^n ways for ``(a+|b)*``). A case must end within
``BOUND`` seconds: a hang detector, not a benchmark; linear cases take
milliseconds, a backtracking one would take longer than the universe has.

Patterns are driven through the function that uses them, so the answer is
checked too: a clean protocol error, and the parser or session still works.
Where the caller bounds the input first (a path is at most 256 octets), the
pattern itself gets the 64 KB.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TypeVar

import pytest

from mailstead.limits import SMTPLimits
from mailstead.mta import dsn, notices
from mailstead.proto.errors import RemoteProtocolError
from mailstead.proto.imap.context import ArgumentError
from mailstead.proto.imap.mailbox_commands import parse_date_time
from mailstead.proto.imap.parser import (
    NEED_DATA,
    BadCommand,
    Command,
    CommandParser,
    ParseEvent,
)
from mailstead.proto.imap.search_match import decode_header_value
from mailstead.proto.imap.sequence import SequenceSet, SequenceSetError
from mailstead.proto.imap.tokens import Atom, String
from mailstead.proto.imap.utf7 import decode_mutf7
from mailstead.proto.smtp import address
from mailstead.proto.smtp.address import PathError, decode_xtext, parse_params, validate_mailbox
from mailstead.proto.smtp.dotstuff import canonical
from mailstead.proto.smtp.replies import Reply, ReplyParser
from mailstead.store import mbox, mbox_format
from mailstead.store.maildir import crlf_size
from tests.fuzz.wire import watchdog
from tests.proto.imap.imap_transcript import MESSAGES, WHEN, IMAPTranscript, deliver
from tests.proto.smtp.transcript import Transcript

T = TypeVar("T")

BOUND = 1.0  # seconds; generous, see the module docstring
K64 = 64 * 1024
LINE = K64 - 100  # an IMAP command line just under the 64 KiB limit


def hang_detector() -> AbstractContextManager[None]:
    """Fail when the block runs over ``BOUND`` (re checks signals while it backtracks)."""
    return watchdog(BOUND)


def linear(call: Callable[[], T]) -> T:
    """``call()``, which must return within ``BOUND``."""
    with hang_detector():
        return call()


def raises(error: type[Exception], call: Callable[[], object]) -> str:
    """The message of the ``error`` that ``call`` must raise, in bounded time."""
    with hang_detector(), pytest.raises(error) as exc:
        call()
    return str(exc.value)


# -- IMAP: the command parser (proto/imap/parser.py) --------------------------------


def lex(line: bytes) -> list[ParseEvent]:
    """``line`` and then ``a2 NOOP`` through a fresh parser: all the events."""
    p = CommandParser()
    events: list[ParseEvent] = []
    with hang_detector():
        p.receive_data(line + b"\r\na2 NOOP\r\n")
        while (event := p.next_event()) is not NEED_DATA:
            events.append(event)
    return events


NOOP = Command("a2", "NOOP", ())
RUN = b"a" * LINE


# Each line is refused (or parsed) and the parser reads the next command.
@pytest.mark.parametrize(
    ("line", "first"),
    [
        # _QUOTED: an unterminated quote; a bad escape at the end; inside a list
        (b'a1 LOGIN "' + RUN, BadCommand("a1", "Unterminated quoted string")),
        (b'a1 LOGIN "' + RUN + b"\\x", BadCommand("a1", "Invalid escape in quoted string")),
        (b'a1 LOGIN "' + b'\\"' * (LINE // 2), BadCommand("a1", "Unterminated quoted string")),
        (b'a1 ID ("' + RUN, BadCommand("a1", "Unterminated quoted string")),
        (b'a1 ID ("x" "' + RUN, BadCommand("a1", "Unterminated quoted string")),
        # _UNESCAPE: a long run of escapes in a good quoted string
        (
            b'a1 X "' + b"\\\\" * (LINE // 2) + b'"',
            Command("a1", "X", (String(b"\\" * (LINE // 2)),)),
        ),
        # _ATOM and its _SECTION: unterminated [, a quote or escapes inside it.
        # An unclosed "[" is an ATOM-CHAR (RFC 9051 §9): the atom goes on, or
        # ends where a section would have to continue (DQUOTE, SP, "(").
        (b"a1 X BODY[" + RUN, Command("a1", "X", (Atom("BODY[" + RUN.decode()),))),
        (b'a1 X BODY["' + RUN, BadCommand("a1", "Missing space between arguments")),
        (b'a1 X BODY[HEADER.FIELDS ("' + RUN, BadCommand("a1", "Unterminated quoted string")),
        (b'a1 X BODY[x "' + b'\\"' * (LINE // 2), BadCommand("a1", "Unterminated quoted string")),
        (
            b"a1 X BODY[" + b"a]" * (LINE // 2) + b"[",
            Command("a1", "X", (Atom("BODY[" + "a]" * (LINE // 2) + "["),)),
        ),
        (
            b"a1 X " + b"a[]" * (LINE // 3) + b"[",
            Command("a1", "X", (Atom("a[]" * (LINE // 3) + "["),)),
        ),
        (b"a1 X " + b"[" * LINE, Command("a1", "X", (Atom("[" * LINE),))),
        (b"a1 X " + b"[a " * (LINE // 3), Command("a1", "X", (Atom("[a"),) * (LINE // 3))),
        (b'a1 X [ "' + b"[" * LINE, BadCommand("a1", "Unterminated quoted string")),
        (b"a1 X " + RUN + b"{", BadCommand("a1", "Missing space between arguments")),
        (b"a1 X " + RUN, Command("a1", "X", (Atom(RUN.decode()),))),
        # _TAG and _NAME: a long run, then a character they do not allow
        (RUN + b"(", BadCommand("*", "Invalid tag")),
        (b"a1 " + b"A" * LINE + b"(", BadCommand("a1", "Invalid command name")),
        # _LITERAL: a long number, many openings
        (b"a1 X {" + b"1" * LINE + b"}", BadCommand("a1", "Invalid character in command")),
        (b"a1 X " + b"{1" * (LINE // 2), BadCommand("a1", "Invalid character in command")),
        (b"a1 X " + b"~{1" * (LINE // 3), BadCommand("a1", "Missing space between arguments")),
        # _NONSYNC_AT_END: a refused line full of almost-literals
        (b"a1 X ) " + b"~{1111111111111111111" * (LINE // 22), BadCommand("a1", "Unexpected )")),
    ],
)
def test_imap_parser_refuses_or_parses_in_linear_time(line: bytes, first: ParseEvent) -> None:
    assert lex(line) == [first, NOOP]


def test_imap_parser_tag_of_an_overlong_line_in_linear_time() -> None:
    # _TAG also reads the tag of a line refused as too long.
    assert lex(b"a" * (K64 + 10) + b"(") == [BadCommand("*", "Line too long"), NOOP]


# -- IMAP: the three reported inputs, end to end through the server ----------------


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "home" / "Maildir"
    deliver(root, *MESSAGES, when=WHEN)
    return root


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        (b'a1 LOGIN "' + RUN, b"a1 BAD Unterminated quoted string\r\n"),
        (b'a1 X BODY["' + RUN, b"a1 BAD Missing space between arguments\r\n"),
        (b'a1 ID ("' + RUN, b"a1 BAD Unterminated quoted string\r\n"),
    ],
)
def test_imap_server_answers_bad_and_goes_on(root: Path, line: bytes, reply: bytes) -> None:
    t = IMAPTranscript(root)
    assert t.output().startswith(b"* OK [CAPABILITY ")
    with hang_detector():
        assert t.feed(line + b"\r\n") == reply
    assert t.feed(b"a2 NOOP\r\n") == b"a2 OK NOOP completed\r\n"
    assert not t.closed


# -- IMAP: arguments, headers, names -------------------------------------------------


# _ELEMENT (proto/imap/sequence.py)
@pytest.mark.parametrize(
    "text",
    [
        "1" * K64 + "x",
        "1:" + "1" * K64 + "x",
        "1" * K64 + ":",
        "*:" + "1" * K64 + ":*",
        "1:" * (K64 // 2),
        "1:2," * 9999 + "1" * 25000 + "x",
    ],
)
def test_sequence_set_refused_in_linear_time(text: str) -> None:
    assert raises(SequenceSetError, lambda: SequenceSet.parse(text)) == "Invalid sequence set"


# _ENCODED_WORD and _Q_HEX (proto/imap/search_match.py): broken words stay text.
@pytest.mark.parametrize(
    "value",
    [
        b"=?" + b"a" * K64,
        b"=?a?Q?" + b"a" * K64,
        b"=?a?Q?x" * (K64 // 7),
        b"=?" * (K64 // 2),
        b"=?a?" * (K64 // 4),
        b"=?a?Q?" + b"=4" * (K64 // 2) + b"?",
        b"=?a?Q?" + b"a" * K64 + b" ?=",
    ],
)
def test_header_value_with_broken_encoded_words_in_linear_time(value: bytes) -> None:
    assert linear(lambda: decode_header_value(value)) == value.decode()


def test_header_value_with_a_long_q_word_in_linear_time() -> None:
    value = b"=?us-ascii?Q?" + b"=41" * (K64 // 3) + b"?="
    assert linear(lambda: decode_header_value(value)) == "A" * (K64 // 3)


# _BASE64 (proto/imap/utf7.py)
@pytest.mark.parametrize("name", ["&" + "A" * K64 + "!-", "&" + "A," * (K64 // 2) + "=-"])
def test_modified_utf7_refused_in_linear_time(name: str) -> None:
    error = raises(ValueError, lambda: decode_mutf7(name))
    assert error == "bad modified BASE64 in modified UTF-7"


# _DATE_TIME (proto/imap/mailbox_commands.py), the APPEND date
@pytest.mark.parametrize(
    "value", ["1" * K64, " 1-Jan-" + "1" * K64, "17-Jul-1996 02:44:25 " * 3000]
)
def test_append_date_time_refused_in_linear_time(value: str) -> None:
    assert raises(ArgumentError, lambda: parse_date_time(value)) == "Invalid date-time"


# -- SMTP: commands, paths, parameters (proto/smtp) ---------------------------------


def smtp(line: str) -> bytes:
    """``line`` after EHLO on a server that takes 80 KB lines; everything it said."""
    t = Transcript(limits=SMTPLimits(command_line=80 * 1024)).handshake()
    with hang_detector():
        said = t.feed(line.encode() + b"\r\n")
    assert t.feed(b"NOOP\r\n") == b"250 2.0.0 OK\r\n"
    return said


# _KEYWORD, _VALUE and _XTEXT_HEX through MAIL FROM parameters; a long path is
# refused before _LOCAL_* and _DOMAIN_* see it.
@pytest.mark.parametrize(
    ("line", "reply"),
    [
        ("MAIL FROM:<a@b.test> " + "A-" * (K64 // 2) + "_", b"501 5.5.4 Bad parameter syntax\r\n"),
        ("MAIL FROM:<a@b.test> X=" + "a" * K64 + "\x7f", b"501 5.5.4 Bad parameter syntax\r\n"),
        ("MAIL FROM:<a@b.test> ENVID=" + "+4" * (K64 // 2), b"501 5.5.4 Bad xtext encoding\r\n"),
        ("MAIL FROM:<a@b.test> ENVID=" + "+41" * (K64 // 3), b"501 5.5.4 Bad ENVID value\r\n"),
        ("MAIL FROM:<" + "a." * (K64 // 2) + ">", b"501 5.1.7 Path too long\r\n"),
    ],
)
def test_smtp_mail_from_refused_in_linear_time(line: str, reply: bytes) -> None:
    assert smtp(line) == reply


@pytest.mark.parametrize("value", ["+" * K64, "+4" * (K64 // 2), "+4G" * (K64 // 3)])
def test_xtext_refused_in_linear_time(value: str) -> None:
    assert raises(PathError, lambda: decode_xtext(value)) == "Bad xtext encoding"


@pytest.mark.parametrize(
    "text", ["A" * K64 + "_", "A-" * (K64 // 2) + "=", "A=" + "a" * K64 + "=", "A=" + "a=" * K64]
)
def test_params_refused_in_linear_time(text: str) -> None:
    assert raises(PathError, lambda: parse_params(text)) == "Bad parameter syntax"


# _LOCAL_* and _DOMAIN_* through validate_mailbox (parse_path bounds paths to 256
# octets first; local submission does not).
MAILBOXES = [
    ("a." * (K64 // 2) + "@example.test", "Bad local part syntax"),
    ("a" * K64 + "..b@example.test", "Bad local part syntax"),
    ('"' + "a" * K64 + "@example.test", "Bad local part syntax"),
    ('"' + "\\a" * (K64 // 2) + "@example.test", "Bad local part syntax"),
    ('"' + "a" * K64 + '"x@example.test', "Bad local part syntax"),
    ("a@" + "a" * K64 + "-", "Bad domain syntax"),
    ("a@" + "a-" * (K64 // 2), "Bad domain syntax"),
    ("a@" + "a." * (K64 // 2), "Bad domain syntax"),
    ("a@" + "a.a-" * (K64 // 4), "Bad domain syntax"),
    ("a@" + "a" * K64 + "_", "Bad domain syntax"),
    ("a@[" + "1." * (K64 // 2), "Bad domain syntax"),
    ("a@[IPv6:" + "1:" * (K64 // 2), "Bad domain syntax"),
]


@pytest.mark.parametrize("utf8", [False, True])
@pytest.mark.parametrize(("mailbox", "error"), MAILBOXES)
def test_mailbox_refused_in_linear_time(mailbox: str, error: str, utf8: bool) -> None:
    check = lambda: validate_mailbox(mailbox, utf8=utf8, enhanced="5.1.3")  # noqa: E731
    assert raises(PathError, check) == error


def test_long_domain_is_refused_by_length_not_by_time() -> None:
    mailbox = "a@" + "a." * (K64 // 2) + "a"
    check = lambda: validate_mailbox(mailbox, utf8=True, enhanced="5.1.3")  # noqa: E731
    assert raises(PathError, check) == "Bad domain syntax"


# _SOURCE_ROUTE: parse_path refuses paths over 256 octets before it, so the pattern.
@pytest.mark.parametrize(
    "inner",
    ["@" + "a" * K64, "@a," * (K64 // 3), "@" + "a@" * (K64 // 2) + ",", "@a,@" * (K64 // 4)],
)
def test_source_route_in_linear_time(inner: str) -> None:
    assert linear(lambda: address._SOURCE_ROUTE.match(inner)) is None


# _LINE_END (proto/smtp/dotstuff.py)
@pytest.mark.parametrize("content", [b"\r" * K64, b"\n" * K64, b"\r\r\n" * (K64 // 3)])
def test_line_ends_made_canonical_in_linear_time(content: bytes) -> None:
    out = linear(lambda: canonical(content))
    assert isinstance(out, bytes) and out.count(b"\r") == out.count(b"\n") == out.count(b"\r\n")


# _REPLY_CODE and _ENHANCED (proto/smtp/replies.py): what a remote server says
@pytest.mark.parametrize(
    ("line", "enhanced"),
    [
        (b"250 " + b"2." * (K64 // 2), ""),
        (b"250 2.1." + b"1" * K64, ""),
        (b"250 2.1.1" + b"1" * K64, ""),
        (b"550 5.1.1 " + b"5.1.1 " * (K64 // 6), "5.1.1"),
    ],
)
def test_smtp_reply_in_linear_time(line: bytes, enhanced: str) -> None:
    parser = ReplyParser(max_line=2 * K64)
    parser.feed(line + b"\r\n")
    reply = linear(parser.next_reply)
    assert isinstance(reply, Reply) and reply.enhanced == enhanced


def test_smtp_reply_code_refused_in_linear_time() -> None:
    parser = ReplyParser(max_line=2 * K64)
    parser.feed(b"2" * K64 + b"\r\n")
    assert raises(RemoteProtocolError, parser.next_reply) == "malformed reply line"


# -- DSN and queue errors (mta/dsn.py, mta/notices.py) ------------------------------


@pytest.mark.parametrize("enhanced", ["5." + "1" * K64, "5.1." * (K64 // 4), "5.1.1" + " " * K64])
def test_dsn_status_of_a_remote_code_in_linear_time(enhanced: str) -> None:
    assert linear(lambda: dsn.status_from_reply(Reply(550, enhanced, "x"))) == "5.0.0"


@pytest.mark.parametrize(
    "text", ["\x01" * K64 + "x", "a\r\n" * (K64 // 3), "\x7f \x00" * (K64 // 3)]
)
def test_dsn_of_hostile_remote_text_in_linear_time(text: str) -> None:
    # peertext.header_text cleans every field value taken from the remote reply.
    report = dsn.RecipientReport(
        "bob@example.test",
        "failed",
        "5.1.1",
        remote_mta=text,
        diagnostic_code=dsn.smtp_diagnostic(Reply(550, "5.1.1", text)),
    )
    env = dsn.OriginalEnvelope("alice@example.test", "0123456789ABCDEF01234567", WHEN)
    raw = linear(
        lambda: dsn.build_dsn(
            "failed",
            reporting_mta="mx.example.test",
            original_envelope=env,
            recipients=[report],
            original_message=b"Subject: x\r\n\r\nbody\r\n",
            now=WHEN,
        )
    )
    assert isinstance(raw, bytes) and not any(c in raw for c in b"\x00\x01\x7f")


# notices._ERROR reads back "[host said: ]code enhanced text" built from a reply.
@pytest.mark.parametrize(
    ("error", "code"),
    [
        ("mx said: " * (K64 // 9) + "250 2.0.0 ok", 250),
        ("mx said: 250 2.0.0 " * (K64 // 19) + "\x00", 250),
        ("mx said: 250 " * (K64 // 13), 451),
        ("250 2.0.0 " + "x" * K64 + "\n", 250),
        # Without DOTALL each " said: " was retried with ".*" running to the LF:
        # quadratic, and a stored error may be 400 KB (100 lines of 4 KB).
        ("mx said: 250 2.0.0 " * (4 * K64 // 19) + "\n", 250),
    ],
)
def test_stored_last_error_read_back_in_linear_time(error: str, code: int) -> None:
    reply, _ = linear(lambda: notices.last_reply(error))
    assert reply.code == code


# -- mbox storage of peer messages (store/mbox.py, store/mbox_format.py) ------------


# Each holds "From " (else the functions return early), never at a line start.
@pytest.mark.parametrize(
    "message",
    [
        b">" * K64 + b"Frox From ",
        b">>>>>>>>Fro\n" * (K64 // 12) + b"x From ",
        b"\n>" * (K64 // 2) + b"Frm From ",
    ],
)
def test_mboxrd_escaping_in_linear_time(message: bytes) -> None:
    stored = b">From \n" + message
    assert linear(lambda: mbox.escape_mboxrd(message)) == message
    assert linear(lambda: mbox_format.unescape_mboxrd(stored)) == b"From \n" + message
    assert linear(lambda: mbox_format.message_size(stored)) == crlf_size([stored]) - 1


def test_mbox_from_line_of_a_hostile_sender_in_linear_time() -> None:
    line = linear(lambda: mbox.from_line("\x00 " * (K64 // 2), WHEN))
    assert line.startswith(b"From " + b"_" * K64 + b" ")


@pytest.mark.parametrize(
    "line",
    [
        b"From x Jan" + b" " * K64 + b"1",
        b"From x" + b" Jan 1 1:00" * (K64 // 11),
        b"From x Jan 1 1:00:00 ABCDE" + b" 1" * (K64 // 2),
        b"From x" + b" Jan  1 00:00:00 +0000 197" * (K64 // 26),
    ],
)
def test_mbox_from_line_date_in_linear_time(line: bytes) -> None:
    assert linear(lambda: mbox_format.from_line_date(line)) is None


@pytest.mark.parametrize(
    ("header", "flags"),
    [
        (b"Status:" + b" " * K64 + b"1", ""),
        (b"X-Status: " + b"A" * K64, "\\Answered"),
        (b"\nX-X-Status:" * (K64 // 12), ""),
    ],
)
def test_mbox_status_header_in_linear_time(header: bytes, flags: str) -> None:
    assert linear(lambda: mbox_format.status_flags(header + b"\n\nbody")) == flags
