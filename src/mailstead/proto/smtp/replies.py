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

    def one_line(self) -> str:
        """Code, enhanced code and text on one line, for a log or an operator."""
        return " ".join(str(x) for x in (self.code, self.enhanced, *self.lines) if x)

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


class SMTPError(RemoteProtocolError):
    """The client broke the protocol; :attr:`reply` is what it is told."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.lines[0] if reply.lines else "", code=reply.enhanced)
        self.reply = reply


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


# The server's replies; the texts name no internal detail.
OK = Reply(250, "2.0.0", "OK")
SENDER_OK = Reply(250, "2.1.0", "Sender OK")
RECIPIENT_OK = Reply(250, "2.1.5", "Recipient OK")
START_MAIL_INPUT = Reply(354, "", "End data with <CR><LF>.<CR><LF>")
SERVICE_CLOSING = Reply(221, "2.0.0", "Bye")
TOO_MANY_ERRORS = Reply(421, "4.7.0", "Too many errors, closing connection")
TOO_MANY_COMMANDS = Reply(421, "4.7.0", "Too many commands, closing connection")
TOO_MANY_MESSAGES = Reply(421, "4.7.0", "Too many messages in one session")
TIMEOUT = Reply(421, "4.4.2", "Timeout, closing connection")
LOGINS_BLOCKED = Reply(454, "4.7.0", "Too many failed logins from your address, try again later")
# Deadlines that trickled bytes cannot extend (limits.ConnectionPolicy).
LINE_TIMEOUT = Reply(421, "4.4.2", "Command line not completed in time, closing connection")
LOGIN_TIMEOUT = Reply(421, "4.7.0", "Authentication not completed in time, closing connection")
TRANSACTION_TIMEOUT = Reply(421, "4.4.2", "Transaction not completed in time, closing connection")
LOCAL_ERROR = Reply(451, "4.3.0", "Local error in processing, try again later")
SHUTTING_DOWN = Reply(421, "4.3.2", "Service shutting down, try again later")
# Web browsers and proxies (Postfix smtpd_forbidden_commands).
FORBIDDEN_COMMAND = Reply(221, "2.7.0", "This is an SMTP server, closing connection")
LINE_TOO_LONG = Reply(500, "5.5.2", "Line too long")
NOT_UTF8 = Reply(500, "5.5.2", "Command is not valid UTF-8")
UNKNOWN_COMMAND = Reply(500, "5.5.1", "Command unrecognized")
BAD_SEQUENCE = Reply(503, "5.5.1", "Bad sequence of commands")
NEED_HELO = Reply(503, "5.5.1", "Send EHLO or HELO first")
NEED_MAIL = Reply(503, "5.5.1", "Send MAIL first")
NEED_RCPT = Reply(554, "5.5.1", "No valid recipients")
NESTED_MAIL = Reply(503, "5.5.1", "Sender already given")
NEED_TLS = Reply(530, "5.7.0", "Must issue a STARTTLS command first")
NEED_AUTH = Reply(530, "5.7.0", "Authentication required")
MAIL_SYNTAX = Reply(501, "5.5.4", "Syntax: MAIL FROM:<address>")
RCPT_SYNTAX = Reply(501, "5.5.4", "Syntax: RCPT TO:<address>")
BDAT_SYNTAX = Reply(501, "5.5.4", "Syntax: BDAT size [LAST]")
BDAT_LOST_STEP = Reply(421, "4.5.0", "Cannot resynchronise after bad BDAT, closing")
VRFY_SYNTAX = Reply(501, "5.5.4", "Syntax: VRFY <address>")
# RFC 5321 §3.5.3: 252 neither confirms nor denies; no user harvesting.
CANNOT_VRFY = Reply(252, "2.0.0", "Cannot VRFY user, but will accept message")
NO_EXPN = Reply(502, "5.5.1", "EXPN not available")
HELP = Reply(
    214,
    "2.0.0",
    (
        "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP",
        "STARTTLS AUTH where offered; see RFC 5321",
    ),
)
READY_FOR_TLS = Reply(220, "2.0.0", "Ready to start TLS")
TLS_ACTIVE = Reply(503, "5.5.1", "TLS already active")
NO_STARTTLS = Reply(502, "5.5.1", "STARTTLS not available")
NO_AUTH = Reply(502, "5.5.1", "AUTH not available on this port")
NEED_EHLO = Reply(503, "5.5.1", "Send EHLO first")
ALREADY_AUTHENTICATED = Reply(503, "5.5.1", "Already authenticated")
AUTH_IN_TRANSACTION = Reply(503, "5.5.1", "AUTH not allowed during a mail transaction")
UNKNOWN_MECHANISM = Reply(504, "5.5.4", "Unrecognized authentication type")
AUTH_CANCELLED = Reply(501, "5.0.0", "Authentication cancelled")
AUTH_OK = Reply(235, "2.7.0", "Authentication successful")
AUTH_FAILED = Reply(535, "5.7.8", "Authentication credentials invalid")
TOO_MANY_AUTH_FAILURES = Reply(421, "4.7.0", "Too many authentication failures")
MESSAGE_TOO_BIG = Reply(552, "5.3.4", "Message size exceeds fixed maximum message size")
# Reply text stays ASCII (RFC 5321 §2.4): the client may not have said SMTPUTF8.
BARE_CR = Reply(550, "5.6.0", "Message contains a bare CR (RFC 5321 section 2.3.8)")
TOO_MANY_RECIPIENTS = Reply(452, "4.5.3", "Too many recipients")
NO_SUCH_USER = Reply(550, "5.1.1", "No such user here")
RELAY_DENIED = Reply(554, "5.7.1", "Relay access denied")

# Replies the client makes up itself (remote=False in its results); they end
# up in DSNs.
TOO_BIG_FOR_HOST = Reply(
    552, "5.3.4", "Message size exceeds fixed maximum message size of the host"
)
NEED_8BITMIME = Reply(554, "5.6.3", "Message has 8-bit content, but the host lacks 8BITMIME")
NEED_SMTPUTF8 = Reply(554, "5.6.7", "Message needs SMTPUTF8, but the host lacks it")
TLS_NOT_OFFERED = Reply(451, "4.7.4", "TLS is required, but was not offered by the host")
TLS_REFUSED = Reply(451, "4.7.4", "TLS is required, but the host refused STARTTLS")
TLS_INJECTION = Reply(451, "4.7.0", "Data after 220 to STARTTLS, possible injection")
CONNECTION_LOST = Reply(451, "4.4.2", "Connection closed by the host")
UNEXPECTED_REPLY = Reply(451, "4.5.0", "Protocol error: unexpected reply")
