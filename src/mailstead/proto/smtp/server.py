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
from mailstead.proto.sasl import (
    Credentials,
    SASLCancelled,
    SASLError,
    SASLMechanism,
    decode_response,
    encode_challenge,
    server_mechanism,
)
from mailstead.proto.smtp import replies as R
from mailstead.proto.smtp.address import PathError, is_helo_name, parse_params, parse_path
from mailstead.proto.smtp.dotstuff import DATA_END, received_line_ends, unstuff
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
from mailstead.proto.smtp.params import is_number, mail_params, rcpt_params
from mailstead.proto.smtp.replies import Reply

# Lines a web browser or proxy sends; an SMTP server that sees one is being
# used for cross-protocol attacks and hangs up (Postfix smtpd_forbidden_commands).
_FORBIDDEN_VERBS = frozenset({"GET", "POST", "PUT", "HEAD", "CONNECT", "OPTIONS"})
# Reply text stays ASCII (RFC 5321 §2.4): the client may not have said SMTPUTF8.
_BARE_CR = Reply(550, "5.6.0", "Message contains a bare CR (RFC 5321 section 2.3.8)")


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

    Owns the input buffer, the command/DATA/BDAT/SASL framing, the SMTP
    transaction (sender, accepted recipients, message) and every limit in
    :class:`SMTPLimits` that can be judged from bytes alone.
    """

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.limits = settings.limits
        self.secure = settings.secure
        self.authenticated_user: str | None = None
        self.closing = False
        self._in = bytearray()
        self._out: list[bytes] = []
        self._helo: str | None = None
        self._esmtp = False
        self._txn: _Transaction | None = None
        self._pending: str | None = None  # which answer the application owes
        self._pending_event: Event | None = None
        self._mode = "command"  # command | data | bdat | sasl
        self._discarding_line = False
        self._data_scanned = 0
        self._data_oversize = False
        self._bdat_remaining = 0
        self._bdat_last = False
        self._bdat_refusal: Reply | None = None
        self._sasl: SASLMechanism | None = None
        self._commands = 0
        self._errors = 0
        self._auth_failures = 0
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
        return len(self._in)

    def receive_data(self, data: bytes) -> None:
        if self.closing:
            return
        if self._pending == "tls":
            # RFC 3207 §4.2 / CVE-2011-0411: nothing sent in the clear after
            # STARTTLS may be taken as a command once TLS is on.
            return
        self._in += data

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
        self._auth_failures += 1
        if blocked:
            self._send(R.LOGINS_BLOCKED)
        else:
            self._send(Reply(535, "5.7.8", "Authentication credentials invalid"))
        if self._auth_failures >= self.limits.auth_failures_per_session:
            self._close(Reply(421, "4.7.0", "Too many authentication failures"))

    def tls_started(self) -> None:
        """TLS is up: RFC 3207 §4.2 says forget everything learnt before it."""
        if self._pending != "tls":
            raise LocalProtocolError("no STARTTLS is in progress")
        self._pending = self._pending_event = None
        self._in.clear()
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
                line = self._read_line()
                if line is None:
                    return NEED_DATA
                event = self._sasl_line(line) if self._mode == "sasl" else self._command(line)
            if event is NEED_DATA or event is PAUSED:
                return event
            if event is not None:
                return event
        return NEED_DATA

    # -- output ------------------------------------------------------------------

    def _send(self, reply: Reply) -> None:
        self._out.append(reply.encode())

    def _close(self, reply: Reply) -> None:
        if not self.closing:
            self._send(reply)
            self.closing = True
            self._in.clear()

    def _error(self, reply: Reply) -> None:
        """A syntax or sequence error; too many of them end the session."""
        self._send(reply)
        self._errors += 1
        if self._errors >= self.limits.errors_per_session:
            self._close(R.TOO_MANY_ERRORS)

    def _await(self, kind: str, event: Event) -> Event:
        self._pending, self._pending_event = kind, event
        return event

    # -- framing -----------------------------------------------------------------

    def _read_line(self) -> bytes | None:
        """The next line without its ending, or None until one is complete.

        A line longer than the limit is answered 500 once and the rest of it
        is dropped as it arrives, so memory stays bounded.
        """
        buf = self._in
        while True:
            limit = self.limits.sasl_line if self._mode == "sasl" else self.limits.command_line
            # While dropping an overlong line, its end may be anywhere.
            end = buf.find(b"\n") if self._discarding_line else buf.find(b"\n", 0, limit + 1)
            if end < 0:
                if len(buf) > limit:
                    if not self._discarding_line:
                        self._discarding_line = True
                        self._error(R.LINE_TOO_LONG)
                        if self._mode == "sasl":
                            # RFC 4954 §4: the 500 ends the exchange; what follows
                            # is a command again, not a SASL response.
                            self._mode, self._sasl = "command", None
                    # The overlong line may end later in this same read: keep
                    # what follows its end, which is the next command.
                    end = buf.find(b"\n", limit + 1)
                    if end < 0 or self.closing:
                        del buf[:]
                        return None
                    del buf[: end + 1]
                    self._discarding_line = False
                    continue
                return None
            if self._discarding_line:
                del buf[: end + 1]
                self._discarding_line = False
                continue
            line = bytes(buf[:end])
            del buf[: end + 1]
            # Commands may end in a bare LF, as Postfix accepts; only message
            # data insists on CRLF (see _read_data).
            return line[:-1] if line.endswith(b"\r") else line

    def _read_data(self) -> Event | None:
        """Look for <CRLF>.<CRLF> (RFC 5321 §4.1.1.4); nothing else ends the data.

        The buffer starts with a CRLF put there when DATA was accepted, so a
        lone "." on the first line also ends the data.
        """
        buf = self._in
        end = buf.find(DATA_END, self._data_scanned)
        if end < 0:
            # Dot-stuffing makes the stream longer than the message, so the
            # exact size is checked once unstuffed; this only bounds memory.
            limit = self.limits.message_size
            if len(buf) > limit + limit // 8 + 1024:
                # Over the limit: keep reading, and keep only a tail long enough
                # to hold a terminator that straddles two reads.
                self._data_oversize = True
                del buf[: len(buf) - 4]
            self._data_scanned = max(0, len(buf) - 4)
            return NEED_DATA
        raw = bytes(buf[: end + 2])
        del buf[: end + len(DATA_END)]
        self._mode = "command"
        self._data_scanned = 0
        oversize, self._data_oversize = self._data_oversize, False
        if oversize:
            self._reject_message(R.MESSAGE_TOO_BIG)
            return None
        normalized = received_line_ends(raw)
        if normalized is None:
            self._reject_message(_BARE_CR)
            return None
        # RFC 5321 §4.5.2: drop the first "." of every line that starts with one
        # (after the CRLF put in front when DATA was accepted).
        return self._finish_message(unstuff(normalized[2:]))

    def _read_bdat_chunk(self) -> Event | None:
        """Consume the octets announced by BDAT (RFC 3030 §2): no dot-stuffing."""
        txn = self._txn
        take = min(self._bdat_remaining, len(self._in))
        if take:
            if txn is not None and txn.bdat is not None and txn.bdat_failed is None:
                if len(txn.bdat) + take > self.limits.message_size:
                    txn.bdat_failed = R.MESSAGE_TOO_BIG
                    txn.bdat.clear()
                else:
                    txn.bdat += self._in[:take]
            del self._in[:take]
            self._bdat_remaining -= take
        if self._bdat_remaining:
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
        if txn.bdat_failed is not None:
            self._reject_message(txn.bdat_failed)
            return None
        normalized = received_line_ends(bytes(txn.bdat))
        if normalized is None:
            self._reject_message(_BARE_CR)
            return None
        return self._finish_message(normalized)

    def _finish_message(self, content: bytes) -> Event | None:
        txn = self._txn
        assert txn is not None
        if len(content) > self.limits.message_size:
            self._reject_message(R.MESSAGE_TOO_BIG)
            return None
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
            self._in[0:0] = b"\r\n"
            self._data_scanned = 0
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
        self._bdat_remaining, self._bdat_last = int(parts[0]), last
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
            self._in.clear()
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
        self._sasl = mechanism
        try:
            # RFC 4954 §4: an initial response of "=" means an empty one.
            first = decode_response(initial.encode()) if initial else None
            return self._sasl_step(mechanism.start(first))
        except SASLError as exc:
            self._sasl_failed(exc)
            return None

    def _sasl_line(self, line: bytes) -> Event | None:
        assert self._sasl is not None
        try:
            return self._sasl_step(self._sasl.step(decode_response(line)))
        except SASLError as exc:
            self._sasl_failed(exc)
            return None

    def _sasl_step(self, result: bytes | Credentials) -> Event | None:
        assert self._sasl is not None
        if isinstance(result, bytes):
            self._mode = "sasl"
            self._out.append(b"334 " + encode_challenge(result) + b"\r\n")
            return None
        self._mode = "command"
        mechanism, self._sasl = self._sasl.name, None
        return self._await("auth", AuthRequest(mechanism, result))

    def _sasl_failed(self, exc: SASLError) -> None:
        self._mode, self._sasl = "command", None
        if isinstance(exc, SASLCancelled):
            self._error(Reply(501, "5.0.0", "Authentication cancelled"))
        else:
            self._error(Reply(501, "5.5.2", str(exc)))

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
