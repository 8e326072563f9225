"""SMTP replies (RFC 5321 §4.2) with enhanced status codes (RFC 2034, RFC 3463)."""

from __future__ import annotations

from dataclasses import dataclass


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


# Replies that several places use; the texts name no internal detail.
OK = Reply(250, "2.0.0", "OK")
SENDER_OK = Reply(250, "2.1.0", "Sender OK")
RECIPIENT_OK = Reply(250, "2.1.5", "Recipient OK")
START_MAIL_INPUT = Reply(354, "", "End data with <CR><LF>.<CR><LF>")
SERVICE_CLOSING = Reply(221, "2.0.0", "Bye")
TOO_MANY_ERRORS = Reply(421, "4.7.0", "Too many errors, closing connection")
TIMEOUT = Reply(421, "4.4.2", "Timeout, closing connection")
LOCAL_ERROR = Reply(451, "4.3.0", "Local error in processing, try again later")
SHUTTING_DOWN = Reply(421, "4.3.2", "Service shutting down, try again later")
TOO_MANY_CONNECTIONS = Reply(421, "4.7.0", "Too many connections, try again later")
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
