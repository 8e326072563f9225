"""The SMTP server as a sans-IO state machine (RFC 5321 and its ESMTP extensions).

Feed bytes with :meth:`SMTPServer.receive_data`, take events from
:meth:`SMTPServer.next_event`, answer the ones that need a decision
(``MailFrom``, ``RcptTo``, ``Message`` with :meth:`reply`, ``AuthRequest``
with :meth:`auth_result`, ``StartTLS`` with :meth:`tls_started`) and write
:meth:`data_to_send` to the peer. Everything the protocol can answer alone
(EHLO, NOOP, syntax and sequence errors, limits) it answers itself.

Replies to pipelined commands (RFC 2920) accumulate in the output buffer, so
the session writes one batch per read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

from mailstead.limits import SMTPLimits
from mailstead.proto.errors import LocalProtocolError
from mailstead.proto.sasl import Challenge, Failed, Outcome, SASLExchange, server_mechanism
from mailstead.proto.smtp import replies as R
from mailstead.proto.smtp.address import PathError, is_helo_name, parse_params, parse_path
from mailstead.proto.smtp.events import (
    NEED_DATA,
    PAUSED,
    AuthRequest,
    Closing,
    Event,
    Hello,
    MailFrom,
    MailParams,
    Message,
    RcptTo,
    Recipient,
    Reset,
    StartTLS,
)
from mailstead.proto.smtp.framing import LineTooLong, Reader, chunked_content
from mailstead.proto.smtp.params import is_number, mail_params, rcpt_params
from mailstead.proto.smtp.replies import Reply

# Lines a web browser or proxy sends; an SMTP server that sees one is being
# used for cross-protocol attacks and hangs up (Postfix smtpd_forbidden_commands).
_FORBIDDEN_VERBS = frozenset({"GET", "POST", "PUT", "HEAD", "CONNECT", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """What one listener offers: its role decides TLS and AUTH rules."""

    hostname: str
    limits: SMTPLimits = field(default_factory=SMTPLimits)
    # STARTTLS is offered when a certificate is loaded and TLS is not on yet.
    tls_available: bool = False
    # The connection is already encrypted (implicit TLS, RFC 8314).
    secure: bool = False
    # SASL mechanisms offered; empty on the MTA port.
    auth_mechanisms: tuple[str, ...] = ()
    # RFC 8314 §3.3 / RFC 4954 §4: no cleartext passwords.
    auth_requires_tls: bool = True
    # MSA (RFC 6409 §4.3): MAIL needs a successful AUTH first.
    auth_required: bool = False
    software: str = "Mailstead"


@dataclass(slots=True)
class _Transaction:
    sender: str
    params: MailParams
    recipients: list[Recipient] = field(default_factory=list)
    bdat: bytearray | None = None  # chunks so far, once BDAT has started
    bdat_failed: Reply | None = None  # a chunk broke a limit; answer at LAST


class SMTPServer:
    """One SMTP server session's protocol state, from greeting to QUIT.

    Owns the input (through a :class:`~mailstead.proto.smtp.framing.Reader`),
    the SASL exchange, the SMTP transaction (sender, accepted recipients,
    message) and every limit in :class:`SMTPLimits` that can be judged from
    bytes alone.
    """

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.limits = settings.limits
        self.secure = settings.secure
        self.authenticated_user: str | None = None
        self.closing = False
        self._reader = Reader()
        self._out: list[bytes] = []
        self._helo: str | None = None
        self._esmtp = False
        self._txn: _Transaction | None = None
        self._pending: str | None = None  # which answer the application owes
        self._pending_event: Event | None = None
        self._mode = "command"  # command | data | bdat (SASL lines while _sasl.active)
        self._bdat_last = False
        self._bdat_refusal: Reply | None = None
        self._sasl = SASLExchange()
        self._commands = 0
        self._errors = 0
        self._messages = 0
        self._send(Reply(220, "", f"{settings.hostname} ESMTP {settings.software}"))

    # -- the application's side ------------------------------------------------

    @property
    def in_data(self) -> bool:
        """True while a message body is being read (the DATA timeout applies)."""
        return self._mode in ("data", "bdat")

    @property
    def in_transaction(self) -> bool:
        """True from an accepted MAIL FROM to the reply after the message."""
        return self._txn is not None

    @property
    def awaiting(self) -> str | None:
        """The kind of answer the application owes, if any."""
        return self._pending

    @property
    def buffered(self) -> int:
        """Octets received and not yet consumed (for the session's flow control)."""
        return len(self._reader)

    def receive_data(self, data: bytes) -> None:
        if self.closing:
            return
        if self._pending == "tls":
            # RFC 3207 §4.2 / CVE-2011-0411: nothing sent in the clear after
            # STARTTLS may be taken as a command once TLS is on.
            return
        self._reader.feed(data)

    def data_to_send(self) -> bytes:
        out = b"".join(self._out)
        self._out.clear()
        return out

    def reply(self, reply: Reply) -> None:
        """Answer the pending MailFrom, RcptTo or Message event."""
        event, kind = self._pending_event, self._pending
        if kind not in ("mail", "rcpt", "message") or event is None:
            raise LocalProtocolError(f"no MAIL, RCPT or message awaits a reply (awaiting {kind})")
        self._pending = self._pending_event = None
        if kind == "mail" and reply.is_success:
            assert isinstance(event, MailFrom)
            self._txn = _Transaction(event.sender, event.params)
        elif kind == "rcpt" and reply.is_success:
            assert isinstance(event, RcptTo) and self._txn is not None
            self._txn.recipients.append(Recipient(event.recipient, event.params))
        elif kind == "message":
            self._txn = None
            if reply.is_success:
                self._messages += 1
        self._send(reply)

    def auth_result(self, user: str | None, *, blocked: bool = False) -> None:
        """Finish AUTH: the canonical user name on success, None on failure.

        ``blocked``: the attempt was refused unchecked, after too many
        failures from the client's address (RFC 4954 §6: 454 is a
        temporary failure).
        """
        if self._pending != "auth":
            raise LocalProtocolError("no AUTH awaits a result")
        self._pending = self._pending_event = None
        if user is not None:
            self.authenticated_user = user
            self._send(Reply(235, "2.7.0", "Authentication successful"))
            return
        too_many = self._sasl.failed(self.limits.auth_failures_per_session)
        if blocked:
            self._send(R.LOGINS_BLOCKED)
        else:
            self._send(Reply(535, "5.7.8", "Authentication credentials invalid"))
        if too_many:
            self._close(Reply(421, "4.7.0", "Too many authentication failures"))

    def tls_started(self) -> None:
        """TLS is up: RFC 3207 §4.2 says forget everything learnt before it."""
        if self._pending != "tls":
            raise LocalProtocolError("no STARTTLS is in progress")
        self._pending = self._pending_event = None
        self._reader.clear()
        self.secure = True
        self._helo = None
        self._esmtp = False
        self._txn = None
        self.authenticated_user = None

    def close(self, reply: Reply) -> None:
        """Say a last reply (a timeout, a shutdown) and stop taking input."""
        self._close(reply)

    def next_event(self) -> Event:
        if self._pending is not None:
            return PAUSED
        while not self.closing:
            if self._mode == "data":
                event = self._read_data()
            elif self._mode == "bdat":
                event = self._read_bdat_chunk()
            else:
                line = self._reader.line(
                    self.limits.sasl_line if self._sasl.active else self.limits.command_line
                )
                if line is None:
                    return NEED_DATA
                if isinstance(line, LineTooLong):
                    self._line_too_long()
                    continue
                if self._sasl.active:
                    event = self._sasl_said(self._sasl.step(line))
                else:
                    event = self._command(line)
            if event is not None:  # NEED_DATA and PAUSED too
                return event
        return NEED_DATA

    # -- output ------------------------------------------------------------------

    def _send(self, reply: Reply) -> None:
        self._out.append(reply.encode())

    def _close(self, reply: Reply) -> None:
        if not self.closing:
            self._send(reply)
            self.closing = True
            self._reader.clear()

    def _error(self, reply: Reply) -> None:
        """A syntax or sequence error; too many of them end the session."""
        self._send(reply)
        self._errors += 1
        if self._errors >= self.limits.errors_per_session:
            self._close(R.TOO_MANY_ERRORS)

    def _await(self, kind: str, event: Event) -> Event:
        self._pending, self._pending_event = kind, event
        return event

    # -- framing (proto/smtp/framing.py cuts the input) ---------------------------

    def _line_too_long(self) -> None:
        self._error(R.LINE_TOO_LONG)
        if self._sasl.active:
            # RFC 4954 §4: the 500 ends the exchange; what follows is a
            # command again, not a SASL response.
            self._sasl.too_long()

    def _read_data(self) -> Event | None:
        content = self._reader.data(self.limits.message_size)
        if content is None:
            return NEED_DATA
        self._mode = "command"
        return self._finish_message(content)

    def _read_bdat_chunk(self) -> Event | None:
        """Consume the octets announced by BDAT (RFC 3030 §2): no dot-stuffing."""
        txn = self._txn
        piece = self._reader.chunk()
        if piece and txn is not None and txn.bdat is not None and txn.bdat_failed is None:
            if len(txn.bdat) + len(piece) > self.limits.message_size:
                txn.bdat_failed = R.MESSAGE_TOO_BIG
                txn.bdat.clear()
            else:
                txn.bdat += piece
        if self._reader.chunk_left:
            return NEED_DATA
        self._mode = "command"
        return self._bdat_chunk_done()

    def _bdat_chunk_done(self) -> Event | None:
        txn = self._txn
        if self._bdat_refusal is not None or txn is None or txn.bdat is None:
            self._error(self._bdat_refusal or R.BAD_SEQUENCE)
            return None
        if not self._bdat_last:
            if txn.bdat_failed is None:
                self._send(Reply(250, "2.0.0", f"{len(txn.bdat)} octets received"))
            else:
                self._send(txn.bdat_failed)
            return None
        # A chunk that broke a limit refuses the whole message, at LAST.
        return self._finish_message(txn.bdat_failed or chunked_content(txn.bdat))

    def _finish_message(self, content: bytes | Reply) -> Event | None:
        """Ask about the message, or refuse it (``content`` is then the reply)."""
        if isinstance(content, Reply) or len(content) > self.limits.message_size:
            self._reject_message(content if isinstance(content, Reply) else R.MESSAGE_TOO_BIG)
            return None
        txn = self._txn
        assert txn is not None
        event = Message(txn.sender, txn.params, tuple(txn.recipients), content)
        return self._await("message", event)

    def _reject_message(self, reply: Reply) -> None:
        self._txn = None
        self._send(reply)

    # -- commands ---------------------------------------------------------------

    def _command(self, raw: bytes) -> Event | None:
        self._commands += 1
        if self._commands > self.limits.commands_per_session:
            self._close(Reply(421, "4.7.0", "Too many commands, closing connection"))
            return None
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            self._error(Reply(500, "5.5.2", "Command is not valid UTF-8"))
            return None
        verb, _, arg = line.partition(" ")
        # ASCII only before upper(): "maıl".upper() is "MAIL" (dotless i).
        verb = verb.upper() if verb.isascii() else ""
        handler = self._HANDLERS.get(verb)
        if handler is None:
            if verb in _FORBIDDEN_VERBS:
                self._close(Reply(221, "2.7.0", "This is an SMTP server, closing connection"))
                return Closing("forbidden command")
            self._error(R.UNKNOWN_COMMAND)
            return None
        return handler(self, arg.strip(" "))

    def _ehlo(self, arg: str) -> Event | None:
        return self._hello(arg, extended=True)

    def _helo_cmd(self, arg: str) -> Event | None:
        return self._hello(arg, extended=False)

    def _hello(self, arg: str, *, extended: bool) -> Event | None:
        verb = "EHLO" if extended else "HELO"
        if not arg:
            self._error(Reply(501, "5.5.4", f"{verb} needs a domain"))
            return None
        # RFC 5321 §4.1.1.1, §4.1.3: one Domain or address-literal and nothing
        # else; the name goes into the Received header, so a CR, NUL or a
        # second word is refused here, not cleaned later (docs/quirks.md).
        if not is_helo_name(arg):
            self._error(Reply(501, "5.5.2", f"{verb} takes one domain name or address literal"))
            return None
        name = arg
        # RFC 5321 §4.1.4: EHLO/HELO also resets any transaction.
        self._helo, self._esmtp, self._txn = name, extended, None
        host = self.settings.hostname
        if not extended:
            self._send(Reply(250, "", host))
        else:
            self._send(Reply(250, "", (f"{host} greets {name}", *self._extensions())))
        return Hello(name, extended)

    def _extensions(self) -> list[str]:
        ext = [
            "PIPELINING",  # RFC 2920
            f"SIZE {self.limits.message_size}",  # RFC 1870
            "8BITMIME",  # RFC 6152
            "SMTPUTF8",  # RFC 6531
            "ENHANCEDSTATUSCODES",  # RFC 2034
            "CHUNKING",  # RFC 3030
            "DSN",  # RFC 3461
        ]
        if self.settings.tls_available and not self.secure:
            ext.append("STARTTLS")  # RFC 3207
        if self._auth_offered():
            ext.append("AUTH " + " ".join(self.settings.auth_mechanisms))  # RFC 4954
        ext.append("HELP")
        return ext

    def _auth_offered(self) -> bool:
        s = self.settings
        return bool(s.auth_mechanisms) and (self.secure or not s.auth_requires_tls)

    def _mail(self, arg: str) -> Event | None:
        if self._helo is None:
            self._error(R.NEED_HELO)
            return None
        if self._txn is not None:
            self._error(R.NESTED_MAIL)
            return None
        if self.settings.auth_required and self.authenticated_user is None:
            self._error(R.NEED_AUTH if self._auth_offered() else R.NEED_TLS)
            return None
        if self._messages >= self.limits.messages_per_session:
            self._close(Reply(421, "4.7.0", "Too many messages in one session"))
            return None
        if arg[:5].upper() != "FROM:":
            self._error(Reply(501, "5.5.4", "Syntax: MAIL FROM:<address>"))
            return None
        try:
            sender, rest = parse_path(
                arg[5:].lstrip(" "), utf8=True, null_allowed=True, enhanced="5.1.7"
            )
            params = mail_params(self._params(rest), sender)
        except PathError as exc:
            self._path_error(exc)
            return None
        if params.size is not None and params.size > self.limits.message_size:
            self._send(R.MESSAGE_TOO_BIG)
            return None
        return self._await("mail", MailFrom(sender, params))

    def _path_error(self, exc: PathError) -> None:
        self._error(Reply(exc.code, exc.enhanced, exc.text))

    def _params(self, rest: str) -> dict[str, str | None]:
        params = parse_params(rest)
        if params and not self._esmtp:
            # RFC 5321 §4.1.2: parameters are an ESMTP feature, so EHLO first.
            raise PathError("5.5.4", "Parameters need EHLO", 555)
        return params

    def _rcpt(self, arg: str) -> Event | None:
        txn = self._txn
        if txn is None:
            self._error(R.NEED_MAIL)
            return None
        if txn.bdat is not None:
            self._error(R.BAD_SEQUENCE)
            return None
        if arg[:3].upper() != "TO:":
            self._error(Reply(501, "5.5.4", "Syntax: RCPT TO:<address>"))
            return None
        # RFC 5321 §4.5.3.1.10: beyond the limit say 452, which is no error.
        if len(txn.recipients) >= self.limits.recipients_per_message:
            self._send(R.TOO_MANY_RECIPIENTS)
            return None
        path = arg[3:].lstrip(" ")
        try:
            if path[:12].lower() == "<postmaster>":
                # RFC 5321 §4.5.1: <Postmaster> with no domain must be accepted.
                recipient, rest = "postmaster", path[12:].strip(" ")
            else:
                recipient, rest = parse_path(
                    path, utf8=txn.params.smtputf8, null_allowed=False, enhanced="5.1.3"
                )
            params = rcpt_params(self._params(rest))
        except PathError as exc:
            self._path_error(exc)
            return None
        return self._await("rcpt", RcptTo(recipient, params))

    def _data(self, arg: str) -> Event | None:
        if arg:
            self._error(Reply(501, "5.5.4", "DATA takes no arguments"))
        elif self._txn is None:
            self._error(R.NEED_MAIL)
        elif self._txn.bdat is not None:
            self._error(R.BAD_SEQUENCE)
        elif not self._txn.recipients:
            self._error(R.NEED_RCPT)
        else:
            self._send(R.START_MAIL_INPUT)
            self._mode = "data"
            self._reader.start_data()
        return None

    def _bdat(self, arg: str) -> Event | None:
        parts = arg.split()
        last = len(parts) == 2 and parts[1].upper() == "LAST"
        if not parts or len(parts) > 2 or (len(parts) == 2 and not last) or not is_number(parts[0]):
            # Without a size we cannot tell chunk octets from commands, so the
            # only safe way on is to hang up (RFC 3030 §2 gives no recovery).
            self._send(Reply(501, "5.5.4", "Syntax: BDAT size [LAST]"))
            self._close(Reply(421, "4.5.0", "Cannot resynchronise after bad BDAT, closing"))
            return Closing("bad BDAT")
        self._reader.start_chunk(int(parts[0]))
        self._bdat_last = last
        txn = self._txn
        # The chunk is read even when it cannot be used, to stay in step.
        if txn is None:
            self._bdat_refusal = R.NEED_MAIL
        elif not txn.recipients:
            self._bdat_refusal = R.NEED_RCPT
        else:
            self._bdat_refusal = None
            if txn.bdat is None:
                txn.bdat = bytearray()
        self._mode = "bdat"
        return None

    def _rset(self, arg: str) -> Event | None:
        if arg:
            self._error(Reply(501, "5.5.4", "RSET takes no arguments"))
            return None
        self._txn = None
        self._send(R.OK)
        return Reset()

    def _noop(self, arg: str) -> Event | None:
        self._send(R.OK)
        return None

    def _quit(self, arg: str) -> Event | None:
        self._close(R.SERVICE_CLOSING)
        return Closing("QUIT")

    def _vrfy(self, arg: str) -> Event | None:
        if not arg:
            self._error(Reply(501, "5.5.4", "Syntax: VRFY <address>"))
        else:
            # RFC 5321 §3.5.3: 252 neither confirms nor denies; no user harvesting.
            self._send(Reply(252, "2.0.0", "Cannot VRFY user, but will accept message"))
        return None

    def _expn(self, arg: str) -> Event | None:
        self._error(Reply(502, "5.5.1", "EXPN not available"))
        return None

    def _help(self, arg: str) -> Event | None:
        self._send(
            Reply(
                214,
                "2.0.0",
                (
                    "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP",
                    "STARTTLS AUTH where offered; see RFC 5321",
                ),
            )
        )
        return None

    def _starttls(self, arg: str) -> Event | None:
        if arg:
            self._error(Reply(501, "5.5.4", "STARTTLS takes no arguments"))
        elif self.secure:
            self._error(Reply(503, "5.5.1", "TLS already active"))
        elif not self.settings.tls_available:
            self._error(Reply(502, "5.5.1", "STARTTLS not available"))
        else:
            self._send(Reply(220, "2.0.0", "Ready to start TLS"))
            # RFC 3207 §4.2: drop whatever was pipelined behind STARTTLS.
            self._reader.clear()
            return self._await("tls", StartTLS())
        return None

    def _auth(self, arg: str) -> Event | None:
        if not self.settings.auth_mechanisms:
            self._error(Reply(502, "5.5.1", "AUTH not available on this port"))
            return None
        if not self._auth_offered():
            self._error(R.NEED_TLS)
            return None
        if self._helo is None or not self._esmtp:
            self._error(Reply(503, "5.5.1", "Send EHLO first"))
            return None
        if self.authenticated_user is not None:
            self._error(Reply(503, "5.5.1", "Already authenticated"))
            return None
        if self._txn is not None:
            self._error(Reply(503, "5.5.1", "AUTH not allowed during a mail transaction"))
            return None
        name, _, initial = arg.partition(" ")
        mechanism = (
            server_mechanism(name) if name.upper() in self.settings.auth_mechanisms else None
        )
        if mechanism is None:
            self._error(Reply(504, "5.5.4", "Unrecognized authentication type"))
            return None
        # RFC 4954 §4: an initial response of "=" means an empty one.
        return self._sasl_said(self._sasl.start(mechanism, initial.encode() if initial else None))

    def _sasl_said(self, outcome: Outcome) -> Event | None:
        if isinstance(outcome, Challenge):
            self._out.append(b"334 " + outcome.data + b"\r\n")  # RFC 4954 §4
        elif isinstance(outcome, Failed):
            if outcome.cancelled:
                self._error(Reply(501, "5.0.0", "Authentication cancelled"))
            else:
                self._error(Reply(501, "5.5.2", outcome.reason))
        else:
            return self._await("auth", AuthRequest(outcome.mechanism, outcome.credentials))
        return None

    # One transition table: verb -> handler (RFC 5321 §4.1.1, plus extensions).
    _HANDLERS: ClassVar[dict[str, Callable[[SMTPServer, str], Event | None]]] = {
        "EHLO": _ehlo,
        "HELO": _helo_cmd,
        "MAIL": _mail,
        "RCPT": _rcpt,
        "DATA": _data,
        "BDAT": _bdat,
        "RSET": _rset,
        "NOOP": _noop,
        "QUIT": _quit,
        "VRFY": _vrfy,
        "EXPN": _expn,
        "HELP": _help,
        "STARTTLS": _starttls,
        "AUTH": _auth,
    }


#: Every verb the server knows, for notes that must never carry arguments.
COMMAND_NAMES = frozenset(verb.encode() for verb in SMTPServer._HANDLERS)
