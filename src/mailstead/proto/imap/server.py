"""The IMAP server state machine (RFC 9051 and RFC 3501), sans-IO.

:class:`IMAPServer` takes the client's bytes (:meth:`receive_data`), runs
the commands they hold (:meth:`process`) and queues the responses
(:meth:`data_to_send`). It stops and returns an event when it needs the
session: a password to check (:class:`AuthRequest`, scrypt is slow and
runs off the event loop), a TLS handshake (:class:`StartTLS`), or the end
of the connection (:class:`Closed`). Storage is the :class:`AccountLike`
the session's ``open_account`` returns; the server does no other I/O.

Connection states (RFC 9051 §3)::

    NOT_AUTHENTICATED --LOGIN/AUTHENTICATE--> AUTHENTICATED <--CLOSE/UNSELECT--+
            |                                    |  SELECT/EXAMINE            |
            +----------- LOGOUT -----------------+--------> SELECTED ---------+
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from mailstead.limits import IMAPLimits
from mailstead.proto.errors import RemoteProtocolError
from mailstead.proto.imap import mailbox_commands, message_commands
from mailstead.proto.imap.context import Context, Reply, Session
from mailstead.proto.imap.parser import (
    NEED_DATA,
    BadCommand,
    Command,
    CommandParser,
    ContinuationNeeded,
    LineTooLong,
    LiteralTooBig,
)
from mailstead.proto.imap.storage import AccountLike
from mailstead.proto.imap.tokens import Atom, String, Token
from mailstead.proto.sasl import (
    Challenge,
    Credentials,
    Failed,
    Outcome,
    SASLExchange,
    server_mechanism,
)


@dataclass(frozen=True, slots=True)
class AuthRequest:
    """Check these credentials, then call :meth:`IMAPServer.auth_done`."""

    credentials: Credentials
    #: How they came: "LOGIN", or the SASL mechanism of AUTHENTICATE.
    mechanism: str = "LOGIN"


@dataclass(frozen=True, slots=True)
class StartTLS:
    """Do the TLS handshake now, then call :meth:`IMAPServer.tls_started`."""


@dataclass(frozen=True, slots=True)
class Closed:
    """Flush :meth:`IMAPServer.data_to_send` and close the connection."""


ServerEvent = AuthRequest | StartTLS | Closed


@dataclass(frozen=True, slots=True)
class IMAPSettings:
    """What a listener offers: its name, and where TLS stands."""

    hostname: str
    # The connection is already under TLS (imaps, or after STARTTLS).
    secure: bool = False
    # STARTTLS can be offered (a certificate is configured).
    tls_available: bool = False


class _Mode(enum.Enum):
    COMMANDS = enum.auto()
    SASL = enum.auto()  # reading AUTHENTICATE responses
    IDLE = enum.auto()  # reading lines until DONE
    WAITING = enum.auto()  # an event is out with the session
    CLOSED = enum.auto()


_BASE_CAPABILITIES = (
    "IMAP4rev2 IMAP4rev1 LITERAL+ SASL-IR ENABLE ID IDLE NAMESPACE UIDPLUS MOVE UNSELECT"
    " CHILDREN SPECIAL-USE LIST-EXTENDED LIST-STATUS ESEARCH SEARCHRES STATUS=SIZE BINARY"
)

# Commands by the state they are valid in (RFC 9051 §6).
_ANY_STATE = frozenset({"CAPABILITY", "NOOP", "LOGOUT", "ID"})
_NOT_AUTHENTICATED = frozenset({"STARTTLS", "AUTHENTICATE", "LOGIN"})


class IMAPServer:
    """Owns one IMAP connection's protocol state: parser, login, selected mailbox."""

    def __init__(
        self,
        settings: IMAPSettings,
        limits: IMAPLimits,
        open_account: Callable[[str], AccountLike],
    ) -> None:
        self.settings = settings
        self.limits = limits
        self._open_account = open_account
        self.session = Session()
        self._parser = self._new_parser()
        self._out: list[bytes] = []
        self._mode = _Mode.COMMANDS
        self._errors = 0
        self._pending: Command | None = None  # the command an event is out for
        self._sasl = SASLExchange()  # AUTHENTICATE's exchange; counts LOGIN failures too
        self._secure = settings.secure
        self._out.append(
            b"* OK [CAPABILITY %s] %s IMAP4rev2 ready\r\n"
            % (self.capabilities().encode(), settings.hostname.encode())
        )

    def _new_parser(self) -> CommandParser:
        return CommandParser(
            max_line=self.limits.command_line,
            max_literal=self.limits.literal_before_auth,
            max_depth=self.limits.nesting_depth,
            max_tokens=self.limits.tokens_per_command,
        )

    # -- the session's side ---------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._mode is _Mode.CLOSED

    @property
    def idling(self) -> bool:
        return self._mode is _Mode.IDLE

    @property
    def authenticated(self) -> bool:
        return self.session.account is not None

    @property
    def auth_failures(self) -> int:
        return self._sasl.failures

    @property
    def in_literal(self) -> bool:
        """True while a literal's octets are being read (not a command line)."""
        return self._parser.in_literal

    def receive_data(self, data: bytes) -> None:
        self._parser.receive_data(data)

    def data_to_send(self) -> bytes:
        out = b"".join(self._out)
        self._out.clear()
        return out

    def process(self) -> ServerEvent | None:
        """Run what the buffered input allows; an event for the session, or None for "need data"."""
        while True:
            if self._mode is _Mode.CLOSED:
                return Closed()
            if self._mode is _Mode.WAITING:
                return None
            if self._mode is _Mode.SASL:
                event = self._sasl_line()
            elif self._mode is _Mode.IDLE:
                event = self._idle_line()
            else:
                event = self._next_command()
            if event is _NEED:
                return None
            if isinstance(event, (AuthRequest, StartTLS, Closed)):
                return event

    def auth_done(self, address: str | None, *, blocked: bool = False) -> None:
        """The result of an :class:`AuthRequest`: the account logged in, or None.

        ``blocked``: refused unchecked after too many failures from the
        client's address (RFC 5530 §3 UNAVAILABLE: temporary).
        """
        command = self._pending
        assert command is not None
        self._pending = None
        self._mode = _Mode.COMMANDS
        if address is None:
            too_many = self._sasl.failed(self.limits.auth_failures_per_session)
            if blocked:
                text = b"NO [UNAVAILABLE] Too many failed logins from your address, try again later"
            else:
                text = b"NO [AUTHENTICATIONFAILED] Authentication failed"
            self._tagged(command.tag, text)
            if too_many:
                self._bye(b"Too many failed logins")
            return
        try:
            account = self._open_account(address)
        except OSError:
            self._tagged(command.tag, b"NO [UNAVAILABLE] Mailbox store unavailable")
            return
        self.session.account = account
        self.session.user = address
        self._parser.authenticated = True
        self._parser.max_literal = self.limits.append_limit
        self._tagged(
            command.tag,
            b"OK [CAPABILITY %s] Logged in" % self.capabilities().encode(),
        )

    def tls_started(self) -> None:
        """The handshake after STARTTLS finished: everything before it is forgotten."""
        self._secure = True
        self._parser = self._new_parser()  # RFC 9051 §6.2.1: discard pipelined input
        self._mode = _Mode.COMMANDS
        self._pending = None

    def poll(self) -> None:
        """Tell an idling client about changes (the session calls this on a timer)."""
        if self._mode is _Mode.IDLE and self.session.view is not None:
            self._out.extend(
                self._updates(allow_expunge=True, max_age=self.limits.idle_poll_interval)
            )

    def timeout(self, text: bytes = b"Autologout; idle for too long") -> None:
        """A deadline passed (RFC 9051 §5.4 autologout, or one of limits.ConnectionPolicy)."""
        self._bye(text)

    # -- capabilities -----------------------------------------------------------

    def capabilities(self) -> str:
        caps = [_BASE_CAPABILITIES]
        if not self._secure:
            if self.settings.tls_available:
                caps.append("STARTTLS")
            # RFC 9051 §6.2.3: no cleartext passwords on an unprotected link.
            caps.append("LOGINDISABLED")
        elif not self.authenticated:
            caps.append("AUTH=PLAIN AUTH=LOGIN")
        caps.append(f"APPENDLIMIT={self.limits.append_limit}")
        return " ".join(caps)

    # -- reading ------------------------------------------------------------------

    def _next_command(self) -> ServerEvent | object | None:
        event = self._parser.next_event()
        if event is NEED_DATA:
            return _NEED
        if isinstance(event, ContinuationNeeded):
            self._out.append(b"+ Ready for literal data\r\n")
            return None
        if isinstance(event, LiteralTooBig):
            self._tagged(
                event.tag,
                b"NO [TOOBIG] Literal too large; the limit is %d octets"
                % (self.limits.append_limit),
            )
            return None
        if isinstance(event, BadCommand):
            if event.fatal:
                self._bye(event.text.encode())
                return None
            self._bad(event.tag, event.text)
            return None
        assert isinstance(event, Command)
        return self._dispatch(event)

    def _bad(self, tag: str, text: str) -> None:
        self._errors += 1
        self._tagged(tag, b"BAD " + text.encode("utf-8", "replace"))
        if self._errors >= self.limits.errors_per_session:
            self._bye(b"Too many bad commands")

    def _bye(self, text: bytes) -> None:
        if self._mode is _Mode.CLOSED:
            return  # one BYE is the last thing a connection hears (RFC 9051 §7.1.5)
        self._out.append(b"* BYE " + text + b"\r\n")
        self._mode = _Mode.CLOSED

    def _tagged(self, tag: str, text: bytes) -> None:
        self._out.append(tag.encode() + b" " + text + b"\r\n")

    def _updates(self, *, allow_expunge: bool, max_age: float = 0.0) -> list[bytes]:
        view = self.session.view
        if view is None:
            return []
        try:
            return view.updates(
                allow_expunge=allow_expunge, rev1=not self.session.rev2, max_age=max_age
            )
        except FileNotFoundError:
            # The mailbox was deleted or renamed by another session.
            self.session.view = None
            self._bye(b"Selected mailbox was removed")
            return []

    # -- dispatch -----------------------------------------------------------------

    def _dispatch(self, command: Command) -> ServerEvent | None:
        name = command.name
        if name not in _ANY_STATE | _NOT_AUTHENTICATED and not self.authenticated:
            if (
                name in mailbox_commands.HANDLERS
                or name in message_commands.HANDLERS
                or name in _AUTH_STATE
            ):
                self._bad(command.tag, "Log in first")
            else:
                self._bad(command.tag, f"Unknown command {name}")
            return None
        if command.uid and name not in _UID_COMMANDS:
            self._bad(command.tag, f"UID {name} is not a command")
            return None
        if name in _NOT_AUTHENTICATED and self.authenticated:
            self._bad(command.tag, "Already logged in")
            return None
        own = getattr(self, "_cmd_" + name.lower(), None) if name.isalpha() else None
        if own is not None:
            return own(command)  # type: ignore[no-any-return]
        handler = mailbox_commands.HANDLERS.get(name) or message_commands.HANDLERS.get(name)
        if handler is None:
            self._bad(command.tag, f"Unknown command {name}")
            return None
        ctx = Context(self.session, self.limits, command, self._out)
        try:
            reply = handler(ctx)
        except RemoteProtocolError as exc:
            self._bad(command.tag, str(exc) or "Syntax error")
            return None
        self._finish(ctx, reply)
        return None

    def _finish(self, ctx: Context, reply: Reply) -> None:
        if reply.status == b"BAD":
            self._errors += 1
        elif ctx.command.name not in ("SELECT", "EXAMINE"):
            # (A view SELECT just made is as new as the mailbox: nothing to tell.)
            # RFC 9051 §7.5.1: no EXPUNGE while the client holds numbers
            # from this command (FETCH, STORE, SEARCH without UID).
            allow = reply.allow_expunge and not (
                ctx.command.name in ("FETCH", "STORE", "SEARCH") and not ctx.command.uid
            )
            self._out.extend(self._updates(allow_expunge=allow))
        code = b"[" + reply.code + b"] " if reply.code else b""
        self._tagged(ctx.command.tag, reply.status + b" " + code + reply.text)
        if reply.status == b"BAD" and self._errors >= self.limits.errors_per_session:
            self._bye(b"Too many bad commands")

    # -- commands valid in any state (RFC 9051 §6.1) ------------------------------

    def _cmd_capability(self, command: Command) -> None:
        if command.args:
            self._bad(command.tag, "CAPABILITY takes no arguments")
            return
        self._out.append(b"* CAPABILITY %s\r\n" % self.capabilities().encode())
        self._tagged(command.tag, b"OK CAPABILITY completed")

    def _cmd_noop(self, command: Command) -> None:
        self._out.extend(self._updates(allow_expunge=True))
        self._tagged(command.tag, b"OK NOOP completed")

    def _cmd_logout(self, command: Command) -> None:
        self._out.append(b"* BYE Logging out\r\n")
        self._tagged(command.tag, b"OK LOGOUT completed")
        self._mode = _Mode.CLOSED

    def _cmd_id(self, command: Command) -> None:
        # RFC 2971: the client's parameters are accepted and not kept.
        self._out.append(b'* ID ("name" "Mailstead")\r\n')
        self._tagged(command.tag, b"OK ID completed")

    # -- not authenticated (RFC 9051 §6.2) --------------------------------------

    def _cmd_starttls(self, command: Command) -> ServerEvent | None:
        if self._secure or not self.settings.tls_available:
            self._bad(
                command.tag, "TLS is not available" if not self._secure else "TLS already active"
            )
            return None
        self._tagged(command.tag, b"OK Begin TLS negotiation now")
        self._mode = _Mode.WAITING
        return StartTLS()

    def _cmd_login(self, command: Command) -> ServerEvent | None:
        if not self._secure:
            self._tagged(command.tag, b"NO [PRIVACYREQUIRED] LOGIN is disabled before STARTTLS")
            return None
        if len(command.args) != 2:
            self._bad(command.tag, "LOGIN needs a user name and a password")
            return None
        try:
            user, password = (_astring(arg) for arg in command.args)
        except ValueError as exc:
            self._bad(command.tag, str(exc))
            return None
        return self._ask(command, Credentials(authcid=user, password=password))

    def _cmd_authenticate(self, command: Command) -> ServerEvent | None:
        if not self._secure:
            self._tagged(command.tag, b"NO [PRIVACYREQUIRED] Authentication needs TLS first")
            return None
        if not 1 <= len(command.args) <= 2 or not isinstance(command.args[0], Atom):
            self._bad(command.tag, "AUTHENTICATE needs a mechanism name")
            return None
        mechanism = server_mechanism(command.args[0].value)
        if mechanism is None:
            self._tagged(command.tag, b"NO Unsupported authentication mechanism")
            return None
        try:
            initial = _raw(command.args[1]) if len(command.args) == 2 else None  # RFC 4959 SASL-IR
        except ValueError as exc:
            self._bad(command.tag, str(exc))
            return None
        self._pending = command
        return self._sasl_said(self._sasl.start(mechanism, initial))

    def _sasl_line(self) -> ServerEvent | object | None:
        line = self._parser.next_line(self.limits.sasl_line)
        if line is NEED_DATA:
            return _NEED
        if isinstance(line, LineTooLong):
            return self._sasl_said(self._sasl.too_long())
        assert isinstance(line, bytes)
        return self._sasl_said(self._sasl.step(line))

    def _sasl_said(self, outcome: Outcome) -> ServerEvent | None:
        command = self._pending
        assert command is not None
        if isinstance(outcome, Challenge):
            self._out.append(b"+ " + outcome.data + b"\r\n")  # RFC 9051 §7.5
            self._mode = _Mode.SASL
            return None
        self._pending = None
        if isinstance(outcome, Failed):
            self._mode = _Mode.COMMANDS
            self._bad(command.tag, outcome.reason or "Authentication failed")
            return None
        return self._ask(command, outcome.credentials)

    def _ask(self, command: Command, credentials: Credentials) -> ServerEvent:
        self._pending = command
        self._mode = _Mode.WAITING
        name = command.args[0]
        if command.name == "LOGIN" or not isinstance(name, Atom):
            return AuthRequest(credentials)
        return AuthRequest(credentials, name.value.upper())

    # -- authenticated state: session-level commands -------------------------------

    def _cmd_enable(self, command: Command) -> None:
        # RFC 5161; RFC 9051 §6.3.1: IMAP4rev2 and UTF8=ACCEPT (RFC 6855).
        enabled = []
        for arg in command.args:
            if not isinstance(arg, Atom):
                continue
            name = arg.value.upper()
            if name == "IMAP4REV2" and not self.session.rev2:
                self.session.rev2 = True
                self.session.utf8 = True
                enabled.append("IMAP4rev2")
            elif name == "UTF8=ACCEPT" and not self.session.utf8:
                self.session.utf8 = True
                enabled.append("UTF8=ACCEPT")
        self._out.append(("* ENABLED " + " ".join(enabled)).rstrip().encode() + b"\r\n")
        self._tagged(command.tag, b"OK ENABLE completed")

    def _cmd_namespace(self, command: Command) -> None:
        # RFC 2342: one personal namespace, "/" as the separator.
        self._out.append(b'* NAMESPACE (("" "/")) NIL NIL\r\n')
        self._tagged(command.tag, b"OK NAMESPACE completed")

    def _cmd_idle(self, command: Command) -> None:
        # RFC 2177 / RFC 9051 §6.3.13.
        self._out.extend(self._updates(allow_expunge=True))
        self._out.append(b"+ idling\r\n")
        self._pending = command
        self._mode = _Mode.IDLE

    def _idle_line(self) -> object:
        line = self._parser.next_line(64)
        if line is NEED_DATA:
            return _NEED
        command = self._pending
        assert command is not None
        self._pending = None
        self._mode = _Mode.COMMANDS
        if isinstance(line, bytes) and line.upper() == b"DONE":
            self._out.extend(self._updates(allow_expunge=True))
            self._tagged(command.tag, b"OK IDLE terminated")
        else:
            self._bad(command.tag, "Expected DONE")
        return None


_AUTH_STATE = frozenset({"ENABLE", "NAMESPACE", "IDLE"})
_UID_COMMANDS = frozenset({"FETCH", "STORE", "SEARCH", "COPY", "MOVE", "EXPUNGE"})
_NEED = object()


def _raw(token: Token) -> bytes:
    if isinstance(token, Atom):
        return token.value.encode()
    if isinstance(token, String):
        return token.value
    raise ValueError("Expected a string")


def _astring(token: Token) -> str:
    try:
        return _raw(token).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError("Not valid UTF-8") from exc


#: Every command name the server knows (UID as its own word), for notes that
#: must never carry arguments.
COMMAND_NAMES = frozenset(
    name.encode()
    for name in (
        *_ANY_STATE,
        *_NOT_AUTHENTICATED,
        *mailbox_commands.HANDLERS,
        *message_commands.HANDLERS,
        *(attr[5:].upper() for attr in dir(IMAPServer) if attr.startswith("_cmd_")),
        "UID",
    )
)
