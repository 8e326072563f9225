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
from enum import Enum
from typing import ClassVar, Literal

from mailstead.proto.errors import LocalProtocolError
from mailstead.proto.sasl import Challenge, Failed, Outcome, SASLExchange, server_mechanism
from mailstead.proto.smtp import replies as R
from mailstead.proto.smtp.address import is_helo_name, parse_params, parse_path
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
from mailstead.proto.smtp.replies import Reply, SMTPError
from mailstead.proto.smtp.settings import ServerSettings, auth_offered, ehlo_keywords

__all__ = ["COMMAND_NAMES", "SMTPServer", "ServerSettings", "State"]

# Lines a web browser or proxy sends; an SMTP server that sees one is being
# used for cross-protocol attacks and hangs up (Postfix smtpd_forbidden_commands).
_FORBIDDEN_VERBS = frozenset({"GET", "POST", "PUT", "HEAD", "CONNECT", "OPTIONS"})


class State(Enum):
    """Where an SMTP session stands between two commands (RFC 5321 §3.3, §4.1.4)."""

    START = "start"  # greeted; no EHLO or HELO yet
    READY = "ready"  # EHLO or HELO said; no mail transaction
    MAIL = "mail"  # MAIL FROM accepted; no recipient yet
    RCPT = "rcpt"  # a recipient accepted: more RCPT, DATA or BDAT
    CHUNKING = "chunking"  # BDAT chunks taken, until BDAT LAST (RFC 3030 §2)


_ANY = frozenset(State)


def _out_of_sequence(verb: str, state: State) -> Reply:
    """What ``verb`` is told in a state outside its own: the step it skipped."""
    if verb == "MAIL":
        return R.NEED_HELO if state is State.START else R.NESTED_MAIL
    if verb == "AUTH":
        return R.AUTH_IN_TRANSACTION  # RFC 4954 §4 (START is told to send EHLO before this)
    if state in (State.START, State.READY):
        return R.NEED_MAIL
    return R.NEED_RCPT if state is State.MAIL else R.BAD_SEQUENCE


@dataclass(frozen=True, slots=True)
class _Verb:
    handler: Callable[[SMTPServer, str], Event | None]
    states: frozenset[State]
    # False: any argument is a 501, whatever the state.
    arguments: bool = True
    # Where the verb is not offered on this connection, the refusal; said
    # before the state is looked at.
    not_offered: Callable[[SMTPServer], Reply | None] | None = None


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
    the session's :class:`State`, the SASL exchange, the SMTP transaction
    (sender, accepted recipients, message) and every limit in
    :class:`SMTPLimits` that can be judged from bytes alone.
    """

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.limits = settings.limits
        self.secure = settings.secure
        self.state = State.START
        self.authenticated_user: str | None = None
        self.closing = False
        self._reader = Reader()
        self._out: list[bytes] = []
        self._esmtp = False
        self._txn: _Transaction | None = None  # set in MAIL, RCPT and CHUNKING
        self._pending: str | None = None  # which answer the application owes
        self._pending_event: Event | None = None
        # What the input holds next; SASL lines while _sasl.active.
        self._mode: Literal["command", "data", "bdat"] = "command"
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
        return self._mode != "command"

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
            self.state = State.MAIL
        elif kind == "rcpt" and reply.is_success:
            assert isinstance(event, RcptTo) and self._txn is not None
            self._txn.recipients.append(Recipient(event.recipient, event.params))
            self.state = State.RCPT
        elif kind == "message":
            self._end_transaction()
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
            self._send(R.AUTH_OK)
            return
        too_many = self._sasl.failed(self.limits.auth_failures_per_session)
        self._send(R.LOGINS_BLOCKED if blocked else R.AUTH_FAILED)
        if too_many:
            self._close(R.TOO_MANY_AUTH_FAILURES)

    def tls_started(self) -> None:
        """TLS is up: RFC 3207 §4.2 says forget everything learnt before it."""
        if self._pending != "tls":
            raise LocalProtocolError("no STARTTLS is in progress")
        self._pending = self._pending_event = None
        self._reader.clear()
        self.secure = True
        self.state = State.START
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

    def _end_transaction(self) -> None:
        self._txn = None
        self.state = State.READY

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
        # Outside CHUNKING the chunk was refused: read, to stay in step, and dropped.
        if piece and self.state is State.CHUNKING:
            assert txn is not None and txn.bdat is not None
            if txn.bdat_failed is None and len(txn.bdat) + len(piece) > self.limits.message_size:
                txn.bdat_failed = R.MESSAGE_TOO_BIG
                txn.bdat.clear()
            elif txn.bdat_failed is None:
                txn.bdat += piece
        if self._reader.chunk_left:
            return NEED_DATA
        self._mode = "command"
        return self._bdat_chunk_done()

    def _bdat_chunk_done(self) -> Event | None:
        txn = self._txn
        if self._bdat_refusal is not None:
            self._error(self._bdat_refusal)
            return None
        assert txn is not None and txn.bdat is not None
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
            self._end_transaction()
            self._send(content if isinstance(content, Reply) else R.MESSAGE_TOO_BIG)
            return None
        txn = self._txn
        assert txn is not None
        event = Message(txn.sender, txn.params, tuple(txn.recipients), content)
        return self._await("message", event)

    # -- commands ---------------------------------------------------------------

    def _command(self, raw: bytes) -> Event | None:
        self._commands += 1
        if self._commands > self.limits.commands_per_session:
            self._close(R.TOO_MANY_COMMANDS)
            return None
        try:
            return self._dispatch(raw)
        except SMTPError as exc:
            self._error(exc.reply)
            return None

    def _dispatch(self, raw: bytes) -> Event | None:
        """Look the verb up in :attr:`_COMMANDS` and run it, or raise its refusal."""
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise SMTPError(R.NOT_UTF8) from None
        verb, _, arg = line.partition(" ")
        # ASCII only before upper(): "maıl".upper() is "MAIL" (dotless i).
        verb = verb.upper() if verb.isascii() else ""
        arg = arg.strip(" ")
        entry = self._COMMANDS.get(verb)
        if entry is None:
            if verb in _FORBIDDEN_VERBS:
                self._close(R.FORBIDDEN_COMMAND)
                return Closing("forbidden command")
            raise SMTPError(R.UNKNOWN_COMMAND)
        if arg and not entry.arguments:
            raise SMTPError(Reply(501, "5.5.4", f"{verb} takes no arguments"))
        refusal = entry.not_offered(self) if entry.not_offered is not None else None
        if refusal is None and self.state not in entry.states:
            refusal = _out_of_sequence(verb, self.state)
        if refusal is not None:
            raise SMTPError(refusal)
        return entry.handler(self, arg)

    def _ehlo(self, arg: str) -> Event | None:
        return self._hello(arg, extended=True)

    def _helo(self, arg: str) -> Event | None:
        return self._hello(arg, extended=False)

    def _hello(self, arg: str, *, extended: bool) -> Event | None:
        verb = "EHLO" if extended else "HELO"
        if not arg:
            raise SMTPError(Reply(501, "5.5.4", f"{verb} needs a domain"))
        # RFC 5321 §4.1.1.1, §4.1.3: one Domain or address-literal and nothing
        # else; the name goes into the Received header, so a CR, NUL or a
        # second word is refused here, not cleaned later (docs/quirks.md).
        if not is_helo_name(arg):
            raise SMTPError(Reply(501, "5.5.2", f"{verb} takes one domain name or address literal"))
        # RFC 5321 §4.1.4: EHLO/HELO also resets any transaction.
        self._esmtp = extended
        self._end_transaction()
        host = self.settings.hostname
        if not extended:
            self._send(Reply(250, "", host))
        else:
            self._send(
                Reply(
                    250,
                    "",
                    (f"{host} greets {arg}", *ehlo_keywords(self.settings, secure=self.secure)),
                )
            )
        return Hello(arg, extended)

    def _mail(self, arg: str) -> Event | None:
        if self.settings.auth_required and self.authenticated_user is None:
            raise SMTPError(
                R.NEED_AUTH if auth_offered(self.settings, secure=self.secure) else R.NEED_TLS
            )
        if self._messages >= self.limits.messages_per_session:
            self._close(R.TOO_MANY_MESSAGES)
            return None
        if arg[:5].upper() != "FROM:":
            raise SMTPError(R.MAIL_SYNTAX)
        sender, rest = parse_path(
            arg[5:].lstrip(" "), utf8=True, null_allowed=True, enhanced="5.1.7"
        )
        params = mail_params(self._params(rest), sender)
        if params.size is not None and params.size > self.limits.message_size:
            self._send(R.MESSAGE_TOO_BIG)
            return None
        return self._await("mail", MailFrom(sender, params))

    def _params(self, rest: str) -> dict[str, str | None]:
        params = parse_params(rest)
        if params and not self._esmtp:
            # RFC 5321 §4.1.2: parameters are an ESMTP feature, so EHLO first.
            raise SMTPError(Reply(555, "5.5.4", "Parameters need EHLO"))
        return params

    def _rcpt(self, arg: str) -> Event | None:
        txn = self._txn
        assert txn is not None
        if arg[:3].upper() != "TO:":
            raise SMTPError(R.RCPT_SYNTAX)
        # RFC 5321 §4.5.3.1.10: beyond the limit say 452, which is no error.
        if len(txn.recipients) >= self.limits.recipients_per_message:
            self._send(R.TOO_MANY_RECIPIENTS)
            return None
        path = arg[3:].lstrip(" ")
        if path[:12].lower() == "<postmaster>":
            # RFC 5321 §4.5.1: <Postmaster> with no domain must be accepted.
            recipient, rest = "postmaster", path[12:].strip(" ")
        else:
            recipient, rest = parse_path(
                path, utf8=txn.params.smtputf8, null_allowed=False, enhanced="5.1.3"
            )
        params = rcpt_params(self._params(rest))
        return self._await("rcpt", RcptTo(recipient, params))

    def _data(self, arg: str) -> Event | None:
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
            self._send(R.BDAT_SYNTAX)
            self._close(R.BDAT_LOST_STEP)
            return Closing("bad BDAT")
        self._reader.start_chunk(int(parts[0]))
        self._bdat_last = last
        # The chunk is read even when it cannot be used, to stay in step, and
        # refused once read.
        if self.state in (State.RCPT, State.CHUNKING):
            self._bdat_refusal = None
            if self.state is State.RCPT:
                assert self._txn is not None
                self._txn.bdat = bytearray()
                self.state = State.CHUNKING
        else:
            self._bdat_refusal = _out_of_sequence("BDAT", self.state)
        self._mode = "bdat"
        return None

    def _rset(self, arg: str) -> Event | None:
        self._txn = None
        if self.state is not State.START:
            self.state = State.READY
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
            raise SMTPError(R.VRFY_SYNTAX)
        self._send(R.CANNOT_VRFY)
        return None

    def _expn(self, arg: str) -> Event | None:
        raise SMTPError(R.NO_EXPN)

    def _help(self, arg: str) -> Event | None:
        self._send(R.HELP)
        return None

    def _starttls_refusal(self) -> Reply | None:
        if self.secure:
            return R.TLS_ACTIVE
        return None if self.settings.tls_available else R.NO_STARTTLS

    def _starttls(self, arg: str) -> Event | None:
        self._send(R.READY_FOR_TLS)
        # RFC 3207 §4.2: drop whatever was pipelined behind STARTTLS.
        self._reader.clear()
        return self._await("tls", StartTLS())

    def _auth_refusal(self) -> Reply | None:
        if not self.settings.auth_mechanisms:
            return R.NO_AUTH
        if not auth_offered(self.settings, secure=self.secure):
            return R.NEED_TLS
        if not self._esmtp:
            return R.NEED_EHLO  # AUTH is offered in the EHLO reply only
        # RFC 4954 §4: no AUTH after a successful one.
        return None if self.authenticated_user is None else R.ALREADY_AUTHENTICATED

    def _auth(self, arg: str) -> Event | None:
        name, _, initial = arg.partition(" ")
        mechanism = (
            server_mechanism(name) if name.upper() in self.settings.auth_mechanisms else None
        )
        if mechanism is None:
            raise SMTPError(R.UNKNOWN_MECHANISM)
        # RFC 4954 §4: an initial response of "=" means an empty one.
        return self._sasl_said(self._sasl.start(mechanism, initial.encode() if initial else None))

    def _sasl_said(self, outcome: Outcome) -> Event | None:
        if isinstance(outcome, Challenge):
            self._out.append(b"334 " + outcome.data + b"\r\n")  # RFC 4954 §4
        elif isinstance(outcome, Failed):
            if outcome.cancelled:
                self._error(R.AUTH_CANCELLED)
            else:
                self._error(Reply(501, "5.5.2", outcome.reason))
        else:
            return self._await("auth", AuthRequest(outcome.mechanism, outcome.credentials))
        return None

    # The machine, as a table. A session starts in START. EHLO or HELO
    # moves it to READY from any state, ending a transaction (RFC 5321
    # §4.1.4); an accepted MAIL moves it to MAIL, the first accepted RCPT
    # to RCPT, the first BDAT to CHUNKING. The reply to the message (or its
    # refusal) and RSET take it back to READY (RSET before EHLO stays in
    # START), and STARTTLS to START (RFC 3207 §4.2). Each verb lists the
    # states it is valid in (RFC 5321 §4.1.1 and the extensions' RFCs).
    # _dispatch refuses, in this order: an argument to a verb that takes
    # none, a verb this connection does not offer, and a verb outside its
    # states, with the reply _out_of_sequence picks. BDAT is valid anywhere
    # because its chunk follows on the wire whatever the answer: _bdat
    # refuses it out of sequence once the chunk is read (RFC 3030 §2).
    _COMMANDS: ClassVar[dict[str, _Verb]] = {
        "EHLO": _Verb(_ehlo, _ANY),
        "HELO": _Verb(_helo, _ANY),
        "MAIL": _Verb(_mail, frozenset({State.READY})),
        "RCPT": _Verb(_rcpt, frozenset({State.MAIL, State.RCPT})),
        "DATA": _Verb(_data, frozenset({State.RCPT}), arguments=False),
        "BDAT": _Verb(_bdat, _ANY),
        "RSET": _Verb(_rset, _ANY, arguments=False),
        "NOOP": _Verb(_noop, _ANY),
        "QUIT": _Verb(_quit, _ANY),
        "VRFY": _Verb(_vrfy, _ANY),
        "EXPN": _Verb(_expn, _ANY),
        "HELP": _Verb(_help, _ANY),
        "STARTTLS": _Verb(_starttls, _ANY, arguments=False, not_offered=_starttls_refusal),
        "AUTH": _Verb(_auth, frozenset({State.READY}), not_offered=_auth_refusal),
    }


#: Every verb the server knows, for notes that must never carry arguments.
COMMAND_NAMES = frozenset(verb.encode() for verb in SMTPServer._COMMANDS)
