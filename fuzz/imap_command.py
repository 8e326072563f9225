"""Fuzz target: the IMAP command parser and the argument grammars behind it.

Owns :class:`mailstead.proto.imap.parser.CommandParser` (bytes in random
chunks, events drained with ``next_event``, raw lines after AUTHENTICATE and
IDLE with ``next_line``), then what a session does with a parsed command:
sequence sets, FETCH items (rendered against a fixed message) and SEARCH
programs (matched against it). Oracles: the events do not depend on how the
bytes were chunked, every event keeps the parser's documented promises, and
every FETCH response parses as RFC 9051 says. ``RemoteProtocolError`` from an
argument parser is the expected answer to a bad command; anything else
raised is a defect.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fuzz._harness import chunks, fuzz, instrumented
from fuzz._imapsyntax import check_fetch_response

with instrumented(__name__):
    from mailstead.proto.errors import RemoteProtocolError
    from mailstead.proto.imap.fetch import UnknownCTE, parse_fetch, render_fetch
    from mailstead.proto.imap.message import ParsedMessage
    from mailstead.proto.imap.parser import (
        NEED_DATA,
        BadCommand,
        Command,
        CommandParser,
        ContinuationNeeded,
        LineTooLong,
        LiteralTooBig,
    )
    from mailstead.proto.imap.search import parse_search
    from mailstead.proto.imap.sequence import SequenceSet
    from mailstead.proto.imap.tokens import Atom, ParenList, String, Token

# Two parser set-ups: the defaults before login, and tight limits after it,
# so that the line, literal, depth and token limits are reachable with short inputs.
_SETUPS: tuple[dict[str, int | bool], ...] = (
    {},
    {"max_line": 300, "max_literal": 200, "max_depth": 3, "max_tokens": 40, "authenticated": True},
)
_RAW_LINE_MAX = 100

_MESSAGE = ParsedMessage(
    b"From: =?utf-8?q?Gr=C3=BC=C3=9Fe?= <alice@example.test>\r\n"
    b"To: bob@example.test, Undisclosed:;\r\n"
    b"Subject: =?iso-8859-1?b?SGVsbG8g5A==?=\r\n"
    b"Date: Wed, 17 Jul 1996 02:44:25 -0700\r\n"
    b"Message-ID: <1@example.test>\r\n"
    b'Content-Type: multipart/mixed; boundary="b1"\r\n'
    b"\r\n"
    b"--b1\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n"
    b"\r\n"
    b"caf=C3=A9 au lait=\r\n"
    b"\r\n"
    b"--b1\r\n"
    b"Content-Type: application/octet-stream\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    b"AAECAwQ=\r\n"
    b"--b1\r\n"
    b"Content-Type: message/rfc822\r\n"
    b"\r\n"
    b"Subject: inner\r\n"
    b"\r\n"
    b"inner body\r\n"
    b"--b1--\r\n"
)


@dataclass
class _Source:
    """The message a FETCH is rendered from (``FetchSource``) and searched in (``SearchTarget``)."""

    msg: ParsedMessage = _MESSAGE
    uid: int = 7
    seq: int = 3
    max_seq: int = 5
    max_uid: int = 9
    flags: tuple[str, ...] = ("\\Seen", "$Forwarded")
    internaldate: float = 837596665.0
    internaldate_offset: int = -420
    saved: frozenset[int] | None = frozenset({7})
    _cache: dict[str, bytes] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return self.msg.size

    def message(self) -> ParsedMessage:
        return self.msg

    def cached(self, item: str) -> bytes | None:
        return self._cache.get(item)

    def remember(self, item: str, value: bytes) -> None:
        self._cache[item] = value

    def header_bytes(self) -> bytes:
        return self.msg.header_bytes()

    def message_bytes(self) -> bytes:
        return self.msg.data


# -- driving the parser as the IMAP session does -------------------------------------


def _check_token(token: Token) -> None:
    if isinstance(token, Atom):
        assert token.value, "empty atom"
        assert token.value.isascii(), f"non-ASCII atom {token!r}"
    elif isinstance(token, String):
        if not token.literal:
            assert not set(token.value) & set(b"\r\n\0"), f"CR, LF or NUL in quoted {token!r}"
        elif not token.binary:
            assert b"\0" not in token.value, f"NUL in a literal {token!r}"
    else:
        assert isinstance(token, ParenList)
        for item in token.items:
            _check_token(item)


def _check_event(event: object, setup: dict[str, int | bool]) -> None:
    max_literal = int(setup.get("max_literal", 8 * 1024))
    if isinstance(event, Command):
        assert event.tag and " " not in event.tag and "+" not in event.tag, event
        assert event.name and event.name == event.name.upper(), event
        for token in event.args:
            _check_token(token)
    elif isinstance(event, ContinuationNeeded):
        assert 0 <= event.size <= max_literal, event
    elif isinstance(event, LiteralTooBig):
        assert setup.get("authenticated"), f"{event} before authentication"
        assert event.size > 0, event
    else:
        assert isinstance(event, BadCommand), f"unexpected event {event!r}"
        assert event.text, event
        assert not event.fatal or not setup.get("authenticated"), f"fatal {event} after login"


def _use_arguments(command: Command) -> None:
    """What the session does next with a command's arguments; protocol errors expected."""
    args = command.args
    try:
        if command.name == "SEARCH":
            query = parse_search(args, uid_mode=command.uid)
            query.matches(_Source())
        elif command.name in ("FETCH", "STORE", "COPY", "MOVE", "EXPUNGE") and args:
            if isinstance(args[0], Atom):
                SequenceSet.parse(args[0].value).uses_star  # noqa: B018
            if command.name == "FETCH":
                request = parse_fetch(args[1:])
                for utf8 in (False, True):
                    try:
                        response = render_fetch(
                            request, _Source(), seq=3, include_uid=True, add_flags=True, utf8=utf8
                        )
                    except UnknownCTE:
                        continue
                    check_fetch_response(response, utf8)
    except RemoteProtocolError:
        pass


def _drive(pieces: list[bytes], setup: dict[str, int | bool]) -> list[object]:
    """Everything the parser yields for ``pieces``, read as an IMAP session reads it."""
    parser = CommandParser(**setup)  # type: ignore[arg-type]
    out: list[object] = []
    raw: str | None = None  # "auth": one SASL response line; "idle": lines until DONE
    for piece in pieces:
        parser.receive_data(piece)
        while True:
            if raw is not None:
                line = parser.next_line(_RAW_LINE_MAX)
                if line is NEED_DATA:
                    break
                out.append(line)
                if raw == "auth" or isinstance(line, LineTooLong) or line.upper() == b"DONE":
                    raw = None
                continue
            event = parser.next_event()
            if event is NEED_DATA:
                break
            _check_event(event, setup)
            if out and isinstance(out[-1], BadCommand) and out[-1].fatal:
                raise AssertionError(f"{event!r} after a fatal error")
            out.append(event)
            if isinstance(event, Command):
                if event.name == "IDLE":
                    raw = "idle"
                elif event.name == "AUTHENTICATE" and len(event.args) == 1:
                    raw = "auth"  # no SASL-IR initial response: "+" then a raw line
    return out


def test_one_input(data: bytes) -> None:
    """Parse ``data`` whole and in random chunks under each set-up; compare the events."""
    for setup in _SETUPS:
        whole = _drive([data], setup)
        pieces = _drive(list(chunks(data)), setup)
        if whole != pieces:
            raise AssertionError(f"events depend on chunking:\n{whole!r}\n{pieces!r}")
        for event in whole:
            if isinstance(event, Command):
                _use_arguments(event)


def main() -> None:
    """``python -m fuzz.imap_command [libFuzzer flags] [corpus dirs]``."""
    fuzz(test_one_input)


if __name__ == "__main__":
    main()
