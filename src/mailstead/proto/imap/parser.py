"""The IMAP command parser, sans-IO: bytes in (``receive_data``), events out (``next_event``).

A command (RFC 9051 §2.2.1) is one line, or several when it carries
literals: ``a1 LOGIN {5}`` CRLF, five octets, `` "pw"`` CRLF. Each line is
lexed as soon as it is complete, so a bad command is refused before any "+"
for its literal. After an error the parser skips to the end of the command;
when a skipped line ends in a non-synchronising literal ``{n+}`` (RFC 7888)
the client sends n octets anyway, and those are counted down, never run.

Raw lines (SASL responses after ``+ <challenge>``, RFC 9051 §6.2.2, and
``DONE`` ending IDLE, RFC 2177 §3) do not follow the command grammar:
between commands the session calls :meth:`CommandParser.next_line` instead
of ``next_event``. No mode is switched; the parser keeps the bytes after a
command until asked, so the session must handle each event before it pulls
the next one.

Leniencies (docs/quirks.md): empty lines between commands are ignored, runs
of spaces count as one, a bare LF ends a line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum, auto

from mailstead.proto.errors import LocalProtocolError

# Re-exported: NEED_DATA is the sentinel every engine shares (read more bytes, then ask again).
from mailstead.proto.events import NEED_DATA as NEED_DATA
from mailstead.proto.events import Event
from mailstead.proto.imap.tokens import Atom, ParenList, String, Token

DEFAULT_MAX_LINE = 64 * 1024
DEFAULT_MAX_LITERAL = 8 * 1024  # before authentication: LOGIN and AUTHENTICATE need little
DEFAULT_MAX_DEPTH = 16
DEFAULT_MAX_TOKENS = 100_000
DEFAULT_MAX_RAW_LINE = 8 * 1024


@dataclass(frozen=True, slots=True)
class Command(Event):
    """A complete command; ``UID FETCH`` is ``name="FETCH", uid=True`` (RFC 9051 §6.4.9)."""

    tag: str
    name: str
    args: tuple[Token, ...]
    uid: bool = False


@dataclass(frozen=True, slots=True)
class ContinuationNeeded(Event):
    """A synchronising literal ``{size}`` was accepted: send ``+ ...`` CRLF (RFC 9051 §7.5)."""

    size: int


@dataclass(frozen=True, slots=True)
class BadCommand(Event):
    """A command that breaks the grammar, already skipped; answer ``<tag> BAD <text>``.

    ``tag`` is ``"*"`` when none could be read. ``fatal``: say ``* BYE <text>``
    and close, the parser reads nothing more.
    """

    tag: str
    text: str
    fatal: bool = False


@dataclass(frozen=True, slots=True)
class LiteralTooBig(Event):
    """A literal over the limit after authentication; the command was skipped.

    For a synchronising literal no "+" was sent, so the client sends no data
    (RFC 9051 §4.3); a non-synchronising one was counted down before this
    event. The server answers ``<tag> NO [TOOBIG]`` (RFC 7889 §4, RFC 7888 §4).
    """

    tag: str
    name: str
    size: int


@dataclass(frozen=True, slots=True)
class LineTooLong(Event):
    """A raw line (see :meth:`CommandParser.next_line`) longer than asked; it is skipped."""

    limit: int


ParseEvent = Command | ContinuationNeeded | BadCommand | LiteralTooBig


class _State(Enum):
    LINE = auto()  # a command line, or the rest of one after a literal
    LITERAL = auto()  # the octets of a literal
    SKIP_LINE = auto()  # discarding to the end of a bad command line (watching for {n+})
    SKIP_LITERAL = auto()  # counting down the octets of a refused {n+}
    SKIP_RAW = auto()  # discarding the rest of an over-long raw line
    CLOSED = auto()  # after a fatal error


_SKIPPING = (_State.SKIP_LINE, _State.SKIP_LITERAL, _State.SKIP_RAW)

# RFC 9051 §9: tag = 1*<any ASTRING-CHAR except "+">; ASTRING-CHAR is ATOM-CHAR or "]".
_TAG = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\+]+')
_NAME = re.compile(rb"[A-Za-z][A-Za-z0-9_.\-]*")
# Atoms as commands use them: ATOM-CHAR plus "]" (astring), the list wildcards
# "%" "*" and "\" (flags, \Seen, \*), with [section] parts that may hold spaces,
# parens and quoted header names (RFC 9051 §6.4.5 section-spec). A "[" that
# opens no complete section is an ATOM-CHAR like any other (RFC 9051 §9), as
# in the mailbox name ``a[b``; FETCH refuses ``BODY[TEXT`` itself.
# linear: these read peer input, so every repetition is possessive (++ *+):
# a run is never split again on failure, which for (a+|b)* would be 2^n
# tries. Nothing is lost: the alternatives start with disjoint characters
# (a lone "[" is tried only once _SECTION failed there) and what follows a
# run ("]" or DQUOTE) is not one of them. A failed _SECTION scan stops at
# the next "[" outside quotes, where the next scan starts: no octet is read
# by more than one failed scan.
_SECTION = rb'\[(?:[^\x00-\x1f\x7f-\xff"\[\]]++|"(?:[^\x00-\x1f\x7f-\xff"\\]++|\\["\\])*+")*+\]'
_ATOM = re.compile(rb'(?:[^\x00-\x20\x7f-\xff(){"\[]++|' + _SECTION + rb"|\[)++")
# RFC 9051 §4.3 quoted: "\" escapes only DQUOTE and "\"; 8-bit is quoted-utf8-char.
_QUOTED = re.compile(rb'"((?:[^"\\\x00\r\n]++|\\["\\])*+)"')  # linear: as _SECTION
_UNESCAPE = re.compile(rb'\\(["\\])')
# literal = "{" number64 ["+"] "}" CRLF (RFC 9051 §9, RFC 7888 §8); "~" is literal8 (RFC 3516).
_LITERAL = re.compile(rb"(~?)\{([0-9]{1,20})(\+?)\}")
_NONSYNC_AT_END = re.compile(rb"~?\{([0-9]{1,20})\+\}\r?\Z")
_TAIL = 32  # enough of a skipped line to see a trailing {n+}


class _Bad(Exception):
    def __init__(self, text: str) -> None:
        self.text = text


@dataclass(frozen=True, slots=True)
class _Literal:
    size: int
    sync: bool
    binary: bool


class CommandParser:
    """Owns the bytes a client sent and turns them into IMAP command events.

    Limits are plain attributes the session may change at any time, e.g. at
    login: ``parser.authenticated = True; parser.max_literal = append_limit``.

    * ``max_line``: octets of one command's lines together, literals excluded.
    * ``max_literal``: octets of one command's literals together (so a command
      never holds more than ``max_line + max_literal`` in memory). Over it,
      before authentication the event is a fatal :class:`BadCommand` (no "+"
      is sent, nothing is buffered), afterwards :class:`LiteralTooBig`.
    * ``max_depth``: nesting of parenthesized lists.
    * ``max_tokens``: tokens (atoms, strings, lists) in one command.

    The session must pull events until ``NEED_DATA`` after each
    :meth:`receive_data`, so that at most one unfinished command is buffered.
    """

    def __init__(
        self,
        *,
        max_line: int = DEFAULT_MAX_LINE,
        max_literal: int = DEFAULT_MAX_LITERAL,
        max_depth: int = DEFAULT_MAX_DEPTH,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        authenticated: bool = False,
    ) -> None:
        self.max_line = max_line
        self.max_literal = max_literal
        self.max_depth = max_depth
        self.max_tokens = max_tokens
        self.authenticated = authenticated
        self._buf = bytearray()
        self._scan = 0  # no LF in _buf before this offset
        self._state = _State.LINE
        self._skip_left = 0
        self._tail = b""
        self._after_skip: ParseEvent | None = None
        self._reset()

    def _reset(self) -> None:
        self._tag: str | None = None  # None: between commands
        self._name = ""
        self._uid = False
        self._stack: list[list[Token]] = [[]]
        self._tokens = 0
        self._used = 0
        self._literal_total = 0
        self._need_sep = False
        self._literal: _Literal | None = None

    # -- public API ----------------------------------------------------------------

    @property
    def in_literal(self) -> bool:
        """True while the octets of a literal (taken or skipped) are being read."""
        return self._state in (_State.LITERAL, _State.SKIP_LITERAL)

    def receive_data(self, data: bytes) -> None:
        """Bytes read from the client; ``b""`` (EOF) needs no special call."""
        if self._state is _State.CLOSED:
            return
        self._buf += data
        if self._state in _SKIPPING:
            self._skip()  # discard at once: skipped input is never buffered

    def take_unread(self) -> bytes:
        """Hand back the buffered input not parsed yet (what follows COMPRESS, RFC 4978)."""
        data = bytes(self._buf)
        self._buf.clear()
        self._scan = 0
        return data

    def next_event(self) -> ParseEvent | Event:
        """The next event, or ``NEED_DATA``."""
        while True:
            if self._state is _State.CLOSED:
                return NEED_DATA
            if self._state in _SKIPPING and not self._skip():
                return NEED_DATA
            if self._after_skip is not None:
                event, self._after_skip = self._after_skip, None
                return event
            literal = self._state is _State.LITERAL
            result = self._read_literal() if literal else self._read_line()
            if result is not None:
                return result

    def next_line(self, max_len: int = DEFAULT_MAX_RAW_LINE) -> bytes | LineTooLong | Event:
        """One raw line without its CRLF (or LF), for AUTHENTICATE and IDLE.

        Call it only between commands, i.e. after ``next_event`` returned a
        :class:`Command`. A line over ``max_len`` gives :class:`LineTooLong`
        once, and its remainder is discarded as it arrives.
        """
        if self._state is _State.CLOSED:
            return NEED_DATA
        if self._state is _State.SKIP_RAW and not self._skip():
            return NEED_DATA
        if self._state is not _State.LINE or self._tag is not None or self._after_skip:
            raise LocalProtocolError("next_line() is only allowed between commands")
        try:
            line = self._take_line(max_len)
        except _Bad:
            self._skip_from(_State.SKIP_RAW)
            self._skip()
            return LineTooLong(max_len)
        return NEED_DATA if line is None else line

    # -- lines and literals --------------------------------------------------------

    def _take_line(self, limit: int) -> bytes | None:
        """The next line without CRLF (or bare LF), None if incomplete.

        Over ``limit`` octets: ``_Bad`` and the line stays, for :meth:`_skip`.
        """
        buf = self._buf
        nl = buf.find(b"\n", self._scan)
        if nl < 0:
            self._scan = len(buf)
            if len(buf) - buf.endswith(b"\r") > limit:
                raise _Bad("Line too long")
            return None
        end = nl - 1 if nl and buf[nl - 1] == 0x0D else nl
        if end > limit:
            raise _Bad("Line too long")
        line = bytes(buf[:end])
        del buf[: nl + 1]
        self._scan = 0
        return line

    def _read_line(self) -> ParseEvent | Event | None:
        limit = self.max_line - self._used
        try:
            line = self._take_line(limit)
        except _Bad:
            return self._too_long(limit)
        if line is None:
            return NEED_DATA
        if self._tag is None and not line:
            return None  # an empty line between commands: ignored (docs/quirks.md)
        self._used += len(line)
        try:
            pos = self._lex_start(line) if self._tag is None else 0
            if b"\0" in line:  # RFC 9051 §9: no NUL outside literal8
                raise _Bad("NUL octet in command")
            literal = self._lex(line, pos)
        except _Bad as bad:
            return self._bad(bad.text, line)
        if literal is None:
            return self._finish(line)
        return self._start_literal(literal)

    def _too_long(self, limit: int) -> BadCommand:
        tag = self._tag
        if tag is None:
            m = _TAG.match(self._buf, 0, limit)
            if m is not None and self._buf[m.end()] == 0x20:
                tag = m.group().decode("ascii")
        self._reset()
        self._skip_from(_State.SKIP_LINE)
        return BadCommand(tag or "*", "Line too long")

    def _finish(self, line: bytes) -> ParseEvent:
        if len(self._stack) > 1:
            return self._bad("Missing )", line)
        assert self._tag is not None
        command = Command(self._tag, self._name, tuple(self._stack[0]), self._uid)
        self._reset()
        return command

    def _start_literal(self, literal: _Literal) -> ParseEvent | None:
        tag = self._tag or "*"
        if literal.size > self.max_literal - self._literal_total:
            if not self.authenticated:
                # Before login a big literal is an attack or a mistake: refuse
                # it before any "+" and buffer none of it.
                self._state = _State.CLOSED
                self._buf.clear()
                return BadCommand(tag, "Literal too large", fatal=True)
            event = LiteralTooBig(tag, self._name, literal.size)
            self._reset()
            if literal.sync:
                return event  # RFC 9051 §4.3: no "+", so the client sends no data
            self._after_skip = event  # RFC 7888 §4: the data comes anyway
            self._skip_from(_State.SKIP_LITERAL, literal.size)
            return None
        self._literal = literal
        self._literal_total += literal.size
        self._state = _State.LITERAL
        return ContinuationNeeded(literal.size) if literal.sync else None

    def _read_literal(self) -> ParseEvent | Event | None:
        literal = self._literal
        assert literal is not None
        if len(self._buf) < literal.size:
            return NEED_DATA
        data = bytes(self._buf[: literal.size])
        del self._buf[: literal.size]
        self._scan = 0
        self._literal = None
        self._state = _State.LINE
        if not literal.binary and b"\0" in data:
            # RFC 9051 §9 literal = *CHAR8 (no NUL); only literal8 may carry one (RFC 3516).
            event = BadCommand(self._tag or "*", "NUL octet in literal")
            self._reset()
            self._skip_from(_State.SKIP_LINE)  # the rest of the command follows
            return event
        self._stack[-1].append(String(data, literal=True, binary=literal.binary))
        return None

    def _bad(self, text: str, line: bytes) -> BadCommand:
        """Refuse the command whose (last) line was ``line``; skip its literal if it is {n+}."""
        event = BadCommand(self._tag or "*", text)
        self._reset()
        m = _NONSYNC_AT_END.search(line)
        if m is not None:
            self._skip_from(_State.SKIP_LITERAL, int(m[1]))
        return event

    def _skip_from(self, state: _State, octets: int = 0) -> None:
        self._state, self._skip_left, self._tail = state, octets, b""

    def _skip(self) -> bool:
        """Discard input as the skipping state says; True once back at a line start."""
        buf = self._buf
        while True:
            if self._state is _State.SKIP_LITERAL:
                taken = min(self._skip_left, len(buf))
                del buf[:taken]
                self._skip_left -= taken
                if self._skip_left:
                    return False
                self._skip_from(_State.SKIP_LINE)  # the rest of the command follows
            nl = buf.find(b"\n")
            if nl < 0:
                self._tail = (self._tail + bytes(buf[-_TAIL:]))[-_TAIL:]
                buf.clear()
                self._scan = 0
                return False
            tail = (self._tail + bytes(buf[max(0, nl - _TAIL) : nl]))[-_TAIL:]
            del buf[: nl + 1]
            self._scan = 0
            m = _NONSYNC_AT_END.search(tail) if self._state is _State.SKIP_LINE else None
            if m is not None:
                self._skip_from(_State.SKIP_LITERAL, int(m[1]))
                continue
            self._state = _State.LINE
            return True

    # -- lexing (RFC 9051 §9) ------------------------------------------------------

    def _lex_start(self, line: bytes) -> int:
        """``tag SP name [SP name-after-UID]``; returns where the arguments start."""
        m = _TAG.match(line)
        if m is None or (m.end() < len(line) and line[m.end()] != 0x20):
            raise _Bad("Invalid tag")
        self._tag = m.group().decode("ascii")
        self._name, pos = self._lex_name(line, m.end())
        if self._name == "UID":  # RFC 9051 §6.4.9
            self._uid = True
            self._name, pos = self._lex_name(line, pos)
            if self._name == "UID":
                raise _Bad("Invalid command after UID")
        self._need_sep = True
        return pos

    @staticmethod
    def _lex_name(line: bytes, pos: int) -> tuple[str, int]:
        if pos >= len(line) or line[pos] != 0x20 or pos + 1 == len(line):
            raise _Bad("Missing command")
        m = _NAME.match(line, pos + 1)
        if m is None or (m.end() < len(line) and line[m.end()] != 0x20):
            raise _Bad("Invalid command name")
        return m.group().decode("ascii").upper(), m.end()

    def _lex(self, line: bytes, pos: int) -> _Literal | None:
        stack = self._stack
        end = len(line)
        while pos < end:
            c = line[pos]
            if c == 0x20:  # SP
                self._need_sep = False
                pos += 1
                continue
            if c == 0x29:  # ")"
                if len(stack) == 1:
                    raise _Bad("Unexpected )")
                items = stack.pop()
                stack[-1].append(ParenList(tuple(items)))
                self._need_sep = True
                pos += 1
                continue
            if c < 0x20 or c > 0x7E:  # CTL or 8-bit outside a string
                raise _Bad("Invalid character in command")
            if self._need_sep:
                raise _Bad("Missing space between arguments")
            self._tokens += 1
            if self._tokens > self.max_tokens:
                raise _Bad("Too many arguments")
            if c == 0x28:  # "("
                if len(stack) > self.max_depth:
                    raise _Bad("Lists nested too deeply")
                stack.append([])
                pos += 1
                continue
            self._need_sep = True
            if c == 0x22:  # DQUOTE
                value, pos = _quoted(line, pos)
                stack[-1].append(String(value))
                continue
            m = _LITERAL.match(line, pos)
            if m is not None:
                if m.end() != end:
                    raise _Bad("A literal must end the line")
                return _Literal(int(m[2]), sync=not m[3], binary=bool(m[1]))
            m = _ATOM.match(line, pos)
            if m is None:
                raise _Bad("Invalid character in command")
            stack[-1].append(Atom(m.group().decode("ascii")))
            pos = m.end()
        return None


def _quoted(line: bytes, pos: int) -> tuple[bytes, int]:
    """The value of the quoted string at ``line[pos]`` and where it ends (RFC 9051 §9)."""
    m = _QUOTED.match(line, pos)
    if m is None:
        i = pos + 1
        while i < len(line):
            if line[i] == 0x5C:  # "\" escapes only DQUOTE and "\" (RFC 9051 §4.3)
                if line[i + 1 : i + 2] not in (b'"', b"\\"):
                    raise _Bad("Invalid escape in quoted string")
                i += 2
            elif line[i] == 0x0D:
                raise _Bad("Bare CR in quoted string")
            else:
                i += 1
        raise _Bad("Unterminated quoted string")
    value = _UNESCAPE.sub(rb"\1", m[1])
    if not value.isascii():
        try:
            value.decode("utf-8")  # RFC 9051 §9 quoted-utf8-char
        except UnicodeDecodeError:
            raise _Bad("Invalid UTF-8 in quoted string") from None
    return value, m.end()
