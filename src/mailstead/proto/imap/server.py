"""The IMAP server state machine (RFC 9051 and RFC 3501), sans-IO.

:class:`IMAPServer` takes the client's bytes (``receive_data``), runs the
commands they hold as ``next_event()`` is called, and queues the responses
(``data_to_send``). Unlike the SMTP and POP3 engines it runs nearly every
command itself, against the storage interface of
:mod:`~mailstead.proto.imap.storage`; it does no other I/O. What only the
session can do comes out as an event (:mod:`~mailstead.proto.imap.events`):
a password to check (``AuthRequest``, answered with ``auth_result()``), a TLS
handshake (``StartTLS``, answered with ``tls_started()``), an IDLE to wait
in, polling for changes (``Idling``), a command's slow storage I/O to run
in a thread (``StorageWork``, answered with ``storage_done()``), and the end
(``Closing``). Otherwise ``next_event()`` gives ``NEED_DATA``, or ``PAUSED``
while an event awaits its answer.

Connection states (RFC 9051 §3), valid commands per state in ``_COMMANDS``::

    NOT_AUTHENTICATED --LOGIN/AUTHENTICATE--> AUTHENTICATED <--CLOSE/UNSELECT--+
            |                                    |  SELECT/EXAMINE            |
            +----------- LOGOUT -----------------+--------> SELECTED ---------+

Implementation notes
--------------------

* Concurrency. Each worker process keeps one account object per user and
  one mailbox object per open mailbox (``store/account.py``), shared by every
  IMAP session of that worker; a session owns only its
  :class:`~mailstead.proto.imap.view.SelectedView` (its sequence numbers).
  Nothing locks those mailbox objects: what serialises them is the worker's
  one event-loop thread. ``net/imap_session.py`` calls ``next_event()`` on
  the loop, and a command's storage work runs inside that call, so two
  sessions' changes to those objects never interleave. The one exception is
  slow I/O that touches none of them: APPEND, COPY and MOVE split their
  storage work at it (``Context.finish_later``, ``storage.Staged``), and
  each such step goes to the session as ``StorageWork``, to run in the
  thread pool while the worker's other sessions go on; the command's next
  step runs on the loop again, after ``storage_done()``. So code between
  two steps may find the shared objects changed by other sessions, and a
  step run in a thread may change only files no one else knows of yet (a
  message in ``tmp/``) or sync a directory (``store/mailbox.py``
  ``append_staged`` says what another session may see meanwhile).
  A mailbox replaces its UID list rather than changing it in place, so a
  view that shares the list keeps its numbering. The other writers (other
  workers; local delivery and POP3, in pool threads through objects of
  their own) change only the files and the index, read back by ``refresh()``.
* A command's pending changes (EXISTS, EXPUNGE, FETCH FLAGS) go out just
  before its tagged line; EXPUNGE waits while the client holds sequence
  numbers of the command (RFC 9051 §7.5.1).
* Errors are chosen by what the client should see: BAD for a command it
  should not have sent (syntax, wrong state), NO for one that could not be
  done. Too many BADs, or failed logins, end the session with ``* BYE``.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from mailstead.limits import IMAPLimits
from mailstead.proto.errors import LocalProtocolError, RemoteProtocolError
from mailstead.proto.imap import condstore, quota
from mailstead.proto.imap import mailbox_commands as mc
from mailstead.proto.imap import message_commands as msg
from mailstead.proto.imap import sort as sort_commands
from mailstead.proto.imap.context import (
    Context,
    NameRefused,
    Reply,
    Session,
    bad,
    no,
    raw,
    text,
)
from mailstead.proto.imap.events import (
    NEED_DATA,
    PAUSED,
    AuthRequest,
    Closing,
    Event,
    Idling,
    StartCompression,
    StartTLS,
    StorageWork,
)
from mailstead.proto.imap.parser import (
    BadCommand,
    Command,
    CommandParser,
    ContinuationNeeded,
    LineTooLong,
    LiteralTooBig,
)
from mailstead.proto.imap.quota_limits import LimitsLookup
from mailstead.proto.imap.storage import AccountLike
from mailstead.proto.imap.tokens import Atom
from mailstead.proto.sasl import (
    Challenge,
    Credentials,
    Failed,
    Outcome,
    SASLExchange,
    server_mechanism,
)

log = logging.getLogger("mailstead.imap")


@dataclass(frozen=True, slots=True)
class IMAPSettings:
    """What a listener offers: its name, and where TLS stands."""

    hostname: str
    # The connection is already under TLS (imaps, or after STARTTLS).
    secure: bool = False
    # STARTTLS can be offered (a certificate is configured).
    tls_available: bool = False


class State(enum.Enum):
    """The connection states of RFC 9051 §3 (LOGOUT is the end, not a state here)."""

    NOT_AUTHENTICATED = "not authenticated"
    AUTHENTICATED = "authenticated"
    SELECTED = "selected"


class _Mode(enum.Enum):
    COMMANDS = enum.auto()
    SASL = enum.auto()  # reading AUTHENTICATE responses
    IDLE = enum.auto()  # reading lines until DONE
    WAITING = enum.auto()  # an event is out with the session
    CLOSED = enum.auto()


@dataclass(frozen=True, slots=True)
class _Row:
    """One command of the table: what runs it, where it is valid."""

    run: Callable[[IMAPServer, Command], Event | None]
    states: frozenset[State]
    # RFC 9051 §6.4.9: it may follow "UID" (RFC 4315 §2.1 for EXPUNGE, RFC 6851 MOVE).
    uid: bool = False


def _storage(handler: Callable[[Context], Reply]) -> Callable[[IMAPServer, Command], Event | None]:
    """A row's ``run`` for a handler of mailbox_commands or message_commands."""

    def run(server: IMAPServer, command: Command) -> None:
        server._run(handler, command)  # StorageWork, if any, comes next

    return run


_BASE_CAPABILITIES = (
    "IMAP4rev2 IMAP4rev1 LITERAL+ SASL-IR ENABLE ID IDLE NAMESPACE UIDPLUS MOVE UNSELECT"
    " CHILDREN SPECIAL-USE LIST-EXTENDED LIST-STATUS ESEARCH SEARCHRES STATUS=SIZE BINARY"
    " COMPRESS=DEFLATE CONDSTORE QRESYNC"
    " SORT SORT=DISPLAY ESORT THREAD=ORDEREDSUBJECT THREAD=REFERENCES OBJECTID PREVIEW"
)


class IMAPServer:
    """Owns one IMAP connection's protocol state: parser, login, selected mailbox."""

    def __init__(
        self,
        settings: IMAPSettings,
        limits: IMAPLimits,
        open_account: Callable[[str], AccountLike],
        quota_limits: LimitsLookup | None = None,
    ) -> None:
        self.settings = settings
        self.limits = limits
        self._open_account = open_account
        self.session = Session(quota=quota_limits)
        self._compressed = False  # RFC 4978 COMPRESS is active
        self._parser = self._new_parser()
        self._out: list[bytes] = []
        self._mode = _Mode.COMMANDS
        self._closing = ""  # why, once the mode is CLOSED
        self._errors = 0
        self._pending: Command | None = None  # the command an event is out for
        # A command split at its slow storage I/O (Context.finish_later), and
        # the StorageWork next_event hands out next.
        self._working: Context | None = None
        self._work: StorageWork | None = None
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
    def authenticated(self) -> bool:
        return self.session.account is not None

    @property
    def state(self) -> State:
        if self.session.account is None:
            return State.NOT_AUTHENTICATED
        return State.AUTHENTICATED if self.session.view is None else State.SELECTED

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

    def next_event(self) -> Event:
        """Run what the buffered input allows; stop at what needs the session."""
        while True:
            if self._mode is _Mode.CLOSED:
                return Closing(self._closing)
            if self._work is not None:
                work, self._work = self._work, None
                return work
            if self._mode is _Mode.WAITING:
                return PAUSED
            if self._mode is _Mode.SASL:
                event = self._sasl_line()
            elif self._mode is _Mode.IDLE:
                event = self._idle_line()
            else:
                event = self._next_command()
            if event is not None:
                return event

    def auth_result(self, user: str | None, *, blocked: bool = False) -> None:
        """Finish an :class:`AuthRequest`: the canonical user name on success, None on failure.

        ``blocked``: refused unchecked after too many failures from the
        client's address (RFC 5530 §3 UNAVAILABLE: temporary).
        """
        command = self._pending
        assert command is not None
        self._pending = None
        self._mode = _Mode.COMMANDS
        if user is None:
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
            account = self._open_account(user)
        except OSError:
            self._tagged(command.tag, b"NO [UNAVAILABLE] Mailbox store unavailable")
            return
        self.session.account = account
        self.session.user = user
        self._parser.authenticated = True
        self._parser.max_literal = self.limits.append_limit
        self._tagged(
            command.tag,
            b"OK [CAPABILITY %s] Logged in" % self.capabilities().encode(),
        )

    def storage_done(self, error: Exception | None = None) -> None:
        """Finish a :class:`StorageWork`: its ``run()`` returned, or raised ``error``."""
        ctx = self._working
        if ctx is None or self._work is not None:
            raise LocalProtocolError("no StorageWork is out")
        if self._mode is _Mode.CLOSED:  # ended meanwhile (timeout): as after a crash
            assert ctx.later is not None
            ctx.later.close()
            self._working = None
            return
        self._mode = _Mode.COMMANDS
        self._advance(ctx, error)

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
        if self.session.quota is not None:
            caps.append(quota.CAPABILITIES)  # RFC 9208 §3.1
        return " ".join(caps)

    # -- reading ------------------------------------------------------------------

    def _next_command(self) -> Event | None:
        event = self._parser.next_event()
        if event is NEED_DATA:
            return event
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
        self._close(text.decode("utf-8", "replace"))

    def _close(self, reason: str) -> None:
        self._mode = _Mode.CLOSED
        self._closing = reason

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

    def _dispatch(self, command: Command) -> Event | None:
        row = self._COMMANDS.get(command.name)
        state = self.state
        if row is None or state not in row.states or (command.uid and not row.uid):
            self._bad(command.tag, _refusal(command, row, state))
            return None
        try:
            return row.run(self, command)
        except RemoteProtocolError as exc:  # bad arguments
            self._bad(command.tag, str(exc) or "Syntax error")
            return None

    def _run(self, handler: Callable[[Context], Reply], command: Command) -> None:
        ctx = Context(self.session, self.limits, command, self._out)
        try:
            reply = handler(ctx)
        except NameRefused as exc:
            reply = no(str(exc), b"CANNOT")
        except OSError:
            reply = self._store_failed(command)
        if ctx.later is None:
            self._finish(ctx, reply)
        else:
            self._advance(ctx, None)

    def _advance(self, ctx: Context, error: Exception | None) -> None:
        """Run ``ctx``'s staged steps on the loop up to the next off-loop one
        (handed out as StorageWork), or to their reply."""
        steps = ctx.later
        assert steps is not None
        try:
            step = steps.throw(error) if error is not None else next(steps)
        except StopIteration as done:
            reply: Reply = done.value
        except NameRefused as exc:
            reply = no(str(exc), b"CANNOT")
        except RemoteProtocolError as exc:
            reply = bad(str(exc) or "Syntax error")
        except OSError:
            reply = self._store_failed(ctx.command)
        else:
            self._working = ctx
            self._work = StorageWork(step)
            self._mode = _Mode.WAITING
            return
        self._working = None
        ctx.later = None
        self._finish(ctx, reply)

    def _store_failed(self, command: Command) -> Reply:
        # The store failed (disk full, permissions, or a race that is a
        # bug): the operator gets the traceback, the client a code.
        log.exception("IMAP %s failed in the store", command.name)
        return no("Cannot do that now", b"UNAVAILABLE")

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

    def _capability(self, command: Command) -> None:
        if command.args:
            self._bad(command.tag, "CAPABILITY takes no arguments")
            return
        self._out.append(b"* CAPABILITY %s\r\n" % self.capabilities().encode())
        self._tagged(command.tag, b"OK CAPABILITY completed")

    def _noop(self, command: Command) -> None:
        self._out.extend(self._updates(allow_expunge=True))
        self._tagged(command.tag, b"OK NOOP completed")

    def _logout(self, command: Command) -> None:
        self._out.append(b"* BYE Logging out\r\n")
        self._tagged(command.tag, b"OK LOGOUT completed")
        self._close("LOGOUT")

    def _id(self, command: Command) -> None:
        # RFC 2971: the client's parameters are accepted and not kept.
        self._out.append(b'* ID ("name" "Mailstead")\r\n')
        self._tagged(command.tag, b"OK ID completed")

    # -- not authenticated (RFC 9051 §6.2) --------------------------------------

    def _starttls(self, command: Command) -> Event | None:
        if self._secure or not self.settings.tls_available:
            self._bad(
                command.tag, "TLS is not available" if not self._secure else "TLS already active"
            )
            return None
        self._tagged(command.tag, b"OK Begin TLS negotiation now")
        self._mode = _Mode.WAITING
        return StartTLS()

    def _login(self, command: Command) -> Event | None:
        if not self._secure:
            self._tagged(command.tag, b"NO [PRIVACYREQUIRED] LOGIN is disabled before STARTTLS")
            return None
        if len(command.args) != 2:
            self._bad(command.tag, "LOGIN needs a user name and a password")
            return None
        user, password = (text(arg) for arg in command.args)
        return self._ask(command, Credentials(authcid=user, password=password))

    def _authenticate(self, command: Command) -> Event | None:
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
        initial = raw(command.args[1]) if len(command.args) == 2 else None  # RFC 4959 SASL-IR
        self._pending = command
        return self._sasl_said(self._sasl.start(mechanism, initial))

    def _sasl_line(self) -> Event | None:
        line = self._parser.next_line(self.limits.sasl_line)
        if line is NEED_DATA:
            return NEED_DATA
        if isinstance(line, LineTooLong):
            return self._sasl_said(self._sasl.too_long())
        assert isinstance(line, bytes)
        return self._sasl_said(self._sasl.step(line))

    def _sasl_said(self, outcome: Outcome) -> Event | None:
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

    def _ask(self, command: Command, credentials: Credentials) -> Event:
        self._pending = command
        self._mode = _Mode.WAITING
        name = command.args[0]
        if command.name == "LOGIN" or not isinstance(name, Atom):
            return AuthRequest(credentials)
        return AuthRequest(credentials, name.value.upper())

    # -- authenticated state: session-level commands -------------------------------

    def _compress(self, command: Command) -> Event | None:
        # RFC 4978 §3: after the tagged OK's CRLF both directions are DEFLATE;
        # whatever the client sent after the command is compressed already.
        if len(command.args) != 1 or not isinstance(command.args[0], Atom):
            self._bad(command.tag, "COMPRESS needs a mechanism name")
            return None
        if command.args[0].value.upper() != "DEFLATE":
            self._bad(command.tag, "Unknown compression mechanism")
            return None
        if self._compressed:
            self._tagged(command.tag, b"NO [COMPRESSIONACTIVE] DEFLATE is active already")
            return None
        self._compressed = True
        self._tagged(command.tag, b"OK DEFLATE active")
        return StartCompression(self._parser.take_unread())

    def _enable(self, command: Command) -> None:
        # RFC 5161; RFC 9051 §6.3.1: IMAP4rev2 and UTF8=ACCEPT (RFC 6855).
        enabled = []
        modseq: list[bytes] = []  # HIGHESTMODSEQ, if a mailbox is selected
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
            elif name in ("CONDSTORE", "QRESYNC"):  # RFC 7162 §3.1, §3.2.3
                enabled += condstore.enable(self.session, modseq, qresync=name == "QRESYNC")
        self._out.append(("* ENABLED " + " ".join(enabled)).rstrip().encode() + b"\r\n")
        self._out += modseq
        self._tagged(command.tag, b"OK ENABLE completed")

    def _namespace(self, command: Command) -> None:
        # RFC 2342: one personal namespace, "/" as the separator.
        self._out.append(b'* NAMESPACE (("" "/")) NIL NIL\r\n')
        self._tagged(command.tag, b"OK NAMESPACE completed")

    def _idle(self, command: Command) -> None:
        # RFC 2177 / RFC 9051 §6.3.13.
        self._out.extend(self._updates(allow_expunge=True))
        self._out.append(b"+ idling\r\n")
        self._pending = command
        self._mode = _Mode.IDLE

    def _idle_line(self) -> Event | None:
        line = self._parser.next_line(64)
        if line is NEED_DATA:
            return Idling()
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

    # The command table: each command the server knows, what runs it, the
    # connection states it is valid in (RFC 9051 §6.1-§6.4: any state; not
    # authenticated only; once logged in; only with a mailbox selected) and
    # whether the UID prefix may come before it. A command outside its
    # states, or after a UID it does not take, is answered BAD with the
    # reason _refusal gives. The storage commands run as handlers of
    # mailbox_commands (§6.3) and message_commands (§6.4); the rest, which
    # change the connection itself, are methods above.
    _ANY: ClassVar[frozenset[State]] = frozenset(State)
    _NOT_AUTH: ClassVar[frozenset[State]] = frozenset({State.NOT_AUTHENTICATED})
    _AUTH: ClassVar[frozenset[State]] = frozenset({State.AUTHENTICATED, State.SELECTED})
    _SELECTED: ClassVar[frozenset[State]] = frozenset({State.SELECTED})
    _COMMANDS: ClassVar[dict[str, _Row]] = {
        "CAPABILITY": _Row(_capability, _ANY),
        "NOOP": _Row(_noop, _ANY),
        "LOGOUT": _Row(_logout, _ANY),
        "ID": _Row(_id, _ANY),  # RFC 2971
        "STARTTLS": _Row(_starttls, _NOT_AUTH),
        "AUTHENTICATE": _Row(_authenticate, _NOT_AUTH),
        "LOGIN": _Row(_login, _NOT_AUTH),
        "ENABLE": _Row(_enable, _AUTH),  # RFC 5161
        "NAMESPACE": _Row(_namespace, _AUTH),  # RFC 2342
        "IDLE": _Row(_idle, _AUTH),  # RFC 2177
        "COMPRESS": _Row(_compress, _AUTH),  # RFC 4978
        "GETQUOTA": _Row(_storage(quota.getquota), _AUTH),  # RFC 9208
        "GETQUOTAROOT": _Row(_storage(quota.getquotaroot), _AUTH),
        "SETQUOTA": _Row(_storage(quota.setquota), _AUTH),
        "SELECT": _Row(_storage(mc.select), _AUTH),
        "EXAMINE": _Row(_storage(mc.examine), _AUTH),
        "CREATE": _Row(_storage(mc.create), _AUTH),
        "DELETE": _Row(_storage(mc.delete), _AUTH),
        "RENAME": _Row(_storage(mc.rename), _AUTH),
        "SUBSCRIBE": _Row(_storage(mc.subscribe), _AUTH),
        "UNSUBSCRIBE": _Row(_storage(mc.unsubscribe), _AUTH),
        "LIST": _Row(_storage(mc.list_cmd), _AUTH),
        "LSUB": _Row(_storage(mc.lsub), _AUTH),
        "STATUS": _Row(_storage(mc.status), _AUTH),
        "APPEND": _Row(_storage(quota.append), _AUTH),  # mc.append behind a quota check
        "FETCH": _Row(_storage(msg.fetch), _SELECTED, uid=True),
        "STORE": _Row(_storage(msg.store), _SELECTED, uid=True),
        "SEARCH": _Row(_storage(msg.search), _SELECTED, uid=True),
        "SORT": _Row(_storage(sort_commands.sort), _SELECTED, uid=True),  # RFC 5256
        "THREAD": _Row(_storage(sort_commands.thread), _SELECTED, uid=True),  # RFC 5256
        "COPY": _Row(_storage(quota.copy), _SELECTED, uid=True),  # msg.copy, ditto
        "MOVE": _Row(_storage(msg.move), _SELECTED, uid=True),  # RFC 6851
        "EXPUNGE": _Row(_storage(msg.expunge), _SELECTED, uid=True),
        "CLOSE": _Row(_storage(msg.close), _SELECTED),
        "UNSELECT": _Row(_storage(msg.unselect), _SELECTED),  # RFC 3691
        "CHECK": _Row(_storage(msg.check), _SELECTED),  # RFC 3501 §6.4.1
    }


def _refusal(command: Command, row: _Row | None, state: State) -> str:
    """Why ``command`` may not run now; the first reason that applies wins."""
    name = command.name
    if state is State.NOT_AUTHENTICATED and (row is None or state not in row.states):
        return "Log in first" if row is not None else f"Unknown command {name}"
    if command.uid and (row is None or not row.uid):
        return f"UID {name} is not a command"
    if row is None:
        return f"Unknown command {name}"
    if State.NOT_AUTHENTICATED in row.states:
        return "Already logged in"
    return "No mailbox selected"


#: Every command name the server knows (UID as its own word), for notes that
#: must never carry arguments.
COMMAND_NAMES = frozenset(name.encode() for name in (*IMAPServer._COMMANDS, "UID"))
