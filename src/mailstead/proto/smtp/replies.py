"""SMTP replies (RFC 5321 §4.2) with enhanced status codes (RFC 2034, RFC 3463)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from mailstead.peertext import CONTROL_CHARS
from mailstead.proto.errors import RemoteProtocolError


@dataclass(frozen=True, slots=True)
class Reply:
    """One SMTP reply: a three-digit code, an enhanced code and text lines.

    ``enhanced`` is empty for the greeting and the EHLO reply, where
    RFC 2034 §3 says no enhanced code is sent.
    """

    code: int
    enhanced: str
    text: str | tuple[str, ...]

    @property
    def lines(self) -> tuple[str, ...]:
        return (self.text,) if isinstance(self.text, str) else self.text

    @property
    def is_success(self) -> bool:
        """A positive completion reply, 2yz (RFC 5321 §4.2.1)."""
        return 200 <= self.code < 300

    def encode(self) -> bytes:
        """The reply on the wire: ``250-…`` continuation lines, ``250 …`` last."""
        lines = self.lines or ("",)
        prefix = f"{self.enhanced} " if self.enhanced else ""
        out = []
        last = len(lines) - 1
        for i, line in enumerate(lines):
            sep = " " if i == last else "-"
            # Replies never carry CR or LF of their own: a text built from peer
            # input must not be able to inject a second reply line.
            safe = line.replace("\r", " ").replace("\n", " ")
            out.append(f"{self.code}{sep}{prefix}{safe}\r\n")
        return "".join(out).encode("utf-8")


# RFC 5321 §4.2: Reply-code = %x32-35 %x30-35 %x30-39; digits only are
# checked for the second place, as real servers use a few outside 0-5.
_REPLY_CODE = re.compile(rb"[2-5][0-9][0-9]")
# RFC 3463 §2: class.subject.detail; the class must match the reply's first digit.
_ENHANCED = re.compile(r"([245])\.([0-9]{1,3})\.([0-9]{1,3})(?: |$)")
# Reply text goes into logs and DSNs: no control characters survive (C1 and
# U+2028/U+2029 included, see mailstead.peertext).
_CONTROLS = {ord(c): "?" for c in CONTROL_CHARS} | {0x09: " "}


class ReplyParser:
    """Splits what an SMTP server sends into :class:`Reply` objects (RFC 5321 §4.2).

    Owns the input buffer and the lines of the reply being assembled, and
    bounds both: a line longer than ``max_line`` octets (with its CRLF) or a
    reply of more than ``max_lines`` lines is a :class:`RemoteProtocolError`,
    as are a malformed code and a code that changes between the lines of
    one reply. Enhanced status codes (RFC 2034) are split from the text when
    the first line carries one whose class matches the reply code. After an
    error the parser is unusable: the session must end.
    """

    def __init__(self, *, max_line: int = 4096, max_lines: int = 100) -> None:
        self.max_line = max_line
        self.max_lines = max_lines
        self._buf = bytearray()
        self._code: bytes | None = None
        self._lines: list[str] = []

    @property
    def pending(self) -> bool:
        """True if some octets received belong to no complete reply yet."""
        return bool(self._buf or self._lines)

    def feed(self, data: bytes) -> None:
        self._buf += data

    def next_reply(self) -> Reply | None:
        """The next complete reply, or None until more bytes arrive."""
        buf = self._buf
        while True:
            end = buf.find(b"\n", 0, self.max_line)
            if end < 0:
                if len(buf) >= self.max_line:
                    raise RemoteProtocolError("reply line too long")
                return None
            line = bytes(buf[:end])
            del buf[: end + 1]
            # A bare LF is taken as a line end, as most clients do.
            if line.endswith(b"\r"):
                line = line[:-1]
            code, sep = line[:3], line[3:4]
            if not _REPLY_CODE.fullmatch(code) or sep not in (b"", b" ", b"-"):
                raise RemoteProtocolError("malformed reply line")
            if self._code is not None and code != self._code:
                raise RemoteProtocolError("reply code changed within a multi-line reply")
            self._code = code
            self._lines.append(line[4:].decode("utf-8", "replace").translate(_CONTROLS))
            if len(self._lines) > self.max_lines:
                raise RemoteProtocolError("reply has too many lines")
            if sep != b"-":
                return self._finish()

    def _finish(self) -> Reply:
        assert self._code is not None
        code, lines = int(self._code), self._lines
        self._code, self._lines = None, []
        enhanced = ""
        m = _ENHANCED.match(lines[0])
        if m and m.group(1) == str(code)[0]:
            enhanced = lines[0][: m.end(3)]
            prefix = enhanced + " "
            lines = [
                x[len(prefix) :] if x.startswith(prefix) else "" if x == enhanced else x
                for x in lines
            ]
        return Reply(code, enhanced, lines[0] if len(lines) == 1 else tuple(lines))


# Replies that several places use; the texts name no internal detail.
OK = Reply(250, "2.0.0", "OK")
SENDER_OK = Reply(250, "2.1.0", "Sender OK")
RECIPIENT_OK = Reply(250, "2.1.5", "Recipient OK")
START_MAIL_INPUT = Reply(354, "", "End data with <CR><LF>.<CR><LF>")
SERVICE_CLOSING = Reply(221, "2.0.0", "Bye")
TOO_MANY_ERRORS = Reply(421, "4.7.0", "Too many errors, closing connection")
TIMEOUT = Reply(421, "4.4.2", "Timeout, closing connection")
LOGINS_BLOCKED = Reply(454, "4.7.0", "Too many failed logins from your address, try again later")
# Deadlines that trickled bytes cannot extend (limits.ConnectionPolicy).
LINE_TIMEOUT = Reply(421, "4.4.2", "Command line not completed in time, closing connection")
LOGIN_TIMEOUT = Reply(421, "4.7.0", "Authentication not completed in time, closing connection")
TRANSACTION_TIMEOUT = Reply(421, "4.4.2", "Transaction not completed in time, closing connection")
LOCAL_ERROR = Reply(451, "4.3.0", "Local error in processing, try again later")
SHUTTING_DOWN = Reply(421, "4.3.2", "Service shutting down, try again later")
LINE_TOO_LONG = Reply(500, "5.5.2", "Line too long")
UNKNOWN_COMMAND = Reply(500, "5.5.1", "Command unrecognized")
BAD_SEQUENCE = Reply(503, "5.5.1", "Bad sequence of commands")
NEED_HELO = Reply(503, "5.5.1", "Send EHLO or HELO first")
NEED_MAIL = Reply(503, "5.5.1", "Send MAIL first")
NEED_RCPT = Reply(554, "5.5.1", "No valid recipients")
NESTED_MAIL = Reply(503, "5.5.1", "Sender already given")
NEED_TLS = Reply(530, "5.7.0", "Must issue a STARTTLS command first")
NEED_AUTH = Reply(530, "5.7.0", "Authentication required")
MESSAGE_TOO_BIG = Reply(552, "5.3.4", "Message size exceeds fixed maximum message size")
TOO_MANY_RECIPIENTS = Reply(452, "4.5.3", "Too many recipients")
NO_SUCH_USER = Reply(550, "5.1.1", "No such user here")
RELAY_DENIED = Reply(554, "5.7.1", "Relay access denied")
