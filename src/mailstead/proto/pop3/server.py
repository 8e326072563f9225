"""The POP3 server as a sans-IO state machine (RFC 1939, RFC 2449, RFC 2595, RFC 5034).

Feed bytes with :meth:`POP3Server.receive_data`, take events from
:meth:`POP3Server.next_event`, answer the ones that need storage or a
password check (``AuthRequest`` with :meth:`~POP3Server.auth_result` and,
after a success, the maildrop's answer; ``Retrieve``, ``Update``, ``StartTLS``),
and write :meth:`POP3Server.data_to_send` to the peer. Everything that needs
only the listing taken at login (STAT, LIST, UIDL, DELE, RSET, NOOP, CAPA)
the protocol answers itself.

Responses to pipelined commands (RFC 2449 §6.6) accumulate in the output,
so the session writes one batch per read. Multi-line responses (LIST, UIDL
of a big maildrop, RETR of a big message) are produced lazily: ask for
``data_to_send(limit)`` repeatedly and nothing is built in full.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import ClassVar, TypeVar

from mailstead.proto.errors import LocalProtocolError, RemoteProtocolError
from mailstead.proto.pop3.content import head, stuffed
from mailstead.proto.pop3.events import (
    NEED_DATA,
    PAUSED,
    AuthRequest,
    Closing,
    Event,
    Retrieve,
    StartTLS,
    Update,
)
from mailstead.proto.pop3.settings import MECHANISMS, POP3Settings, State, capabilities
from mailstead.proto.pop3.snapshot import Snapshot
from mailstead.proto.sasl import (
    Challenge,
    Credentials,
    Failed,
    Outcome,
    SASLExchange,
    server_mechanism,
)

__all__ = ["POP3Server", "POP3Settings", "State"]

E = TypeVar("E", bound=Event)


def _status(ok: bool, text: str, code: str = "") -> bytes:
    # Response text stays printable ASCII: it may quote the peer.
    clean = "".join(c if " " <= c < "\x7f" else "?" for c in text)
    prefix = f"[{code}] " if code else ""  # RFC 2449 §8 response codes
    return f"{'+OK' if ok else '-ERR'} {prefix}{clean}".rstrip(" ").encode() + b"\r\n"


def _number(arg: str) -> int | None:
    # RFC 1939 §3: a message number is a decimal number; no sign, no spaces.
    if not arg or len(arg) > 10 or not (arg.isascii() and arg.isdigit()):
        return None
    return int(arg)


class POP3Server:
    """One POP3 session's protocol state, from greeting to QUIT.

    Owns the input buffer, command and SASL framing, the state
    (AUTHORIZATION, TRANSACTION, UPDATE), the message numbers and deletion
    marks of the listing taken at login, and every limit of
    :class:`POP3Limits` that can be judged from bytes alone.
    """

    def __init__(self, settings: POP3Settings) -> None:
        self.settings = settings
        self.limits = settings.limits
        self.secure = settings.secure
        self.state = State.AUTHORIZATION
        self.user: str | None = None  # canonical account once logged in
        self.closing = False
        self._in = bytearray()
        self._out: deque[bytes | Iterator[bytes]] = deque()
        self._pending: Event | None = None  # the event the application owes an answer to
        self._verified: str | None = None  # AuthRequest's user, before the maildrop's answer
        self._sasl = SASLExchange()  # AUTH's exchange; counts USER/PASS failures too
        self._user_arg: str | None = None  # USER given, PASS expected
        self._discarding_line = False
        self._errors = 0
        self._drop = Snapshot()  # the listing taken at login, with marks
        self._out.append(_status(True, f"{settings.hostname} {settings.software} POP3 ready"))

    # -- the application's side ------------------------------------------------

    @property
    def awaiting(self) -> Event | None:
        """The event the application owes an answer to, if any."""
        return self._pending

    @property
    def buffered(self) -> int:
        """Octets received and not yet consumed (for the session's flow control)."""
        return len(self._in)

    @property
    def output_pending(self) -> bool:
        """True while there is something to send (possibly a lazy multi-line body)."""
        return bool(self._out)

    def receive_data(self, data: bytes) -> None:
        if self.closing:
            return
        if isinstance(self._pending, StartTLS):
            # RFC 2595 §4 (like RFC 3207 §4.2): nothing sent in the clear after
            # STLS may be taken as a command once TLS is on.
            return
        self._in += data

    def data_to_send(self, limit: int | None = None) -> bytes:
        """What to write now: everything, or about ``limit`` octets of it."""
        chunks: list[bytes] = []
        size = 0
        while self._out and (limit is None or size < limit):
            item = self._out[0]
            if isinstance(item, bytes):
                self._out.popleft()
                chunk = item
            else:
                # Only exhaustion ends a lazy response: a piece may be empty
                # (a LIST piece whose messages are all deleted).
                piece = next(item, None)
                if piece is None:
                    self._out.popleft()
                    continue
                chunk = piece
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)

    def next_event(self) -> Event:
        if self._pending is not None:
            return PAUSED
        while not self.closing:
            line = self._read_line()
            if line is None:
                return NEED_DATA
            if self._sasl.active:
                event = self._sasl_said(self._sasl.step(line))
            else:
                event = self._command(line)
            if event is not None:
                return event
        return NEED_DATA

    def tls_started(self) -> None:
        """TLS is up: forget what came before it, stay in AUTHORIZATION (RFC 2595 §4)."""
        self._owe(StartTLS)
        self._in.clear()
        self.secure = True
        self._user_arg = None

    def message_size(self, index: int) -> int:
        """The size of message ``index`` (0-based) in the listing taken at login."""
        return self._drop.listing[index][1]

    def auth_result(self, user: str | None, *, blocked: bool = False) -> None:
        """Answer AuthRequest: the canonical user name, or None for wrong
        credentials (RFC 3206 §4: [AUTH]); too many failures end the session.

        ``blocked``: refused unchecked after too many failures from the
        client's address, a temporary condition (RFC 3206 §4: [SYS/TEMP]).
        After a user name the maildrop's answer is owed:
        :meth:`maildrop_opened`, :meth:`maildrop_in_use`,
        :meth:`login_too_soon` or :meth:`maildrop_failed`.
        """
        if self._verified is not None or not isinstance(self._pending, AuthRequest):
            raise LocalProtocolError(f"no AuthRequest awaits a result (awaiting {self._pending})")
        if user is not None:
            self._verified = user
            return
        self._pending = None
        too_many = self._sasl.failed(self.limits.auth_failures_per_session)
        if blocked:
            text, code = "Too many failed logins from your address, try again later", "SYS/TEMP"
        else:
            text, code = "Authentication failed", "AUTH"
        if too_many:
            self._close(_status(False, f"{text}, closing connection", code))
        else:
            self._send(False, text, code)

    def maildrop_opened(self, listing: Sequence[tuple[str, int]]) -> None:
        """The maildrop is locked and listed (uid, size per message): enter
        TRANSACTION (RFC 1939 §4)."""
        self.user, self.state = self._owe_maildrop(), State.TRANSACTION
        drop = self._drop = Snapshot(listing)
        self._send(True, f"Logged in, {drop.live_count} messages ({drop.live_size} octets)")

    def maildrop_in_use(self) -> None:
        """Another session holds the lock (RFC 2449 §8.1.1); stay in AUTHORIZATION.

        RFC 1939 §4 lets the client try again or QUIT after this -ERR.
        """
        self._owe_maildrop()
        self._send(False, "Maildrop is locked by another session", "IN-USE")

    def login_too_soon(self) -> None:
        """RFC 2449 §8.1.2: the user logged in less than LOGIN-DELAY seconds ago."""
        self._owe_maildrop()
        self._send(False, "Minimum time between logins not elapsed", "LOGIN-DELAY")

    def maildrop_failed(self) -> None:
        """The maildrop could not be opened for a reason of ours (RFC 3206 §4)."""
        self._owe_maildrop()
        self._send(False, "Maildrop unavailable, try again later", "SYS/TEMP")

    def retrieved(self, message: bytes) -> None:
        """The bytes of the message a Retrieve asked for (stored line ends)."""
        event = self._owe(Retrieve)
        size = self._drop.listing[event.index][1]
        if event.body_lines is None:
            self._drop.retrieved[event.index] = 1
            self._send(True, f"{size} octets")
        else:
            message = head(message, event.body_lines)
            self._send(True, "Top of message follows")
        self._out.append(stuffed(message))

    def retrieve_failed(self) -> None:
        """The message could not be read (vanished, I/O error)."""
        self._owe(Retrieve)
        self._send(False, "Message could not be read", "SYS/TEMP")

    def update_done(self, ok: bool) -> None:
        """The UPDATE state's deletions are done (or failed): say so and close."""
        event = self._owe(Update)
        if ok:
            left = len(self._drop.listing) - len(event.deleted)
            self._close(_status(True, f"{self.settings.software} POP3 signing off ({left} left)"))
        else:
            # RFC 1939 §6: "-ERR some deleted messages not removed".
            self._close(_status(False, "Some deleted messages not removed", "SYS/TEMP"))

    def close(self, text: str | None) -> None:
        """Stop taking input, with a last -ERR (shutdown) or silently (RFC 1939 §3
        autologout: no response, no UPDATE)."""
        self._close(_status(False, text, "SYS/TEMP") if text is not None else None)

    # -- output ------------------------------------------------------------------

    def _owe(self, kind: type[E]) -> E:
        event = self._pending
        if not isinstance(event, kind):
            raise LocalProtocolError(f"no {kind.__name__} awaits an answer (awaiting {event})")
        self._pending = None
        return event

    def _owe_maildrop(self) -> str:
        """The user whose maildrop's answer is owed, after a successful auth_result()."""
        user = self._verified
        if user is None:
            raise LocalProtocolError("no verified login awaits its maildrop")
        self._verified = self._pending = None
        return user

    def _send(self, ok: bool, text: str, code: str = "") -> None:
        self._out.append(_status(ok, text, code))

    def _close(self, last: bytes | None) -> None:
        if not self.closing:
            if last is not None:
                self._out.append(last)
            self.closing = True
            self._in.clear()

    def _error(self, text: str, code: str = "") -> None:
        """A -ERR the client earned; too many of them end the session."""
        self._send(False, text, code)
        self._errors += 1
        if self._errors >= self.limits.errors_per_session:
            self._close(_status(False, "Too many errors, closing connection"))

    def _await(self, event: Event) -> Event:
        self._pending = event
        return event

    # -- framing -----------------------------------------------------------------

    def _read_line(self) -> bytes | None:
        """The next line without its ending, or None until one is complete.

        AUTH lines and SASL responses may be up to ``sasl_line`` octets, other
        commands ``command_line`` (checked once the verb is known). A longer
        line is answered -ERR once and dropped as it arrives.
        """
        buf = self._in
        limit = self.limits.sasl_line
        while True:
            end = buf.find(b"\n") if self._discarding_line else buf.find(b"\n", 0, limit)
            if end < 0:
                if len(buf) >= limit:
                    if not self._discarding_line:
                        self._discarding_line = True
                        self._too_long()
                    end = buf.find(b"\n", limit)
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
            # A bare LF ends a command too, as most servers accept.
            return line[:-1] if line.endswith(b"\r") else line

    def _too_long(self) -> None:
        if self._sasl.active:
            # RFC 5034 §4: an -ERR ends the exchange; what follows is a command.
            self._sasl.too_long()
        self._error("Line too long")

    # -- commands ---------------------------------------------------------------

    def _command(self, raw: bytes) -> Event | None:
        try:
            return self._dispatch(raw)
        except RemoteProtocolError as exc:
            self._error(exc.text, exc.code)
            return None

    def _dispatch(self, raw: bytes) -> Event | None:
        """Look the verb up in :attr:`_COMMANDS` and run it, or raise its refusal."""
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise RemoteProtocolError("Command is not valid UTF-8") from None
        verb, _, arg = line.partition(" ")
        # ASCII only before upper(): "quıt".upper() is "QUIT" (dotless i).
        verb = verb.upper() if verb.isascii() else ""
        # RFC 2449 §4: 255 octets with CRLF; AUTH may take more (RFC 5034 §4).
        if verb != "AUTH" and len(raw) + 2 > self.limits.command_line:
            raise RemoteProtocolError("Line too long")
        entry = self._COMMANDS.get(verb)
        if entry is None:
            raise RemoteProtocolError("Unknown command")
        handler, states = entry
        if self.state not in states:
            raise RemoteProtocolError(f"{verb} not valid in the {self.state.value} state")
        # RFC 1939 §7: PASS may contain spaces; other arguments are single words.
        return handler(self, arg if verb == "PASS" else arg.strip(" "))

    def _capa(self, arg: str) -> Event | None:
        self._multiline("Capability list follows", capabilities(self.settings, secure=self.secure))
        return None

    def _login_allowed(self) -> bool:
        return self.secure or self.settings.cleartext_login

    def _refuse_cleartext(self) -> None:
        if self._login_allowed():
            return
        # Not [AUTH] (RFC 3206 §4 is about the credentials): nothing was checked.
        raise RemoteProtocolError(
            "Login needs TLS: send STLS first"
            if self.settings.tls_available
            else "Login needs TLS: use the POP3S port"
        )

    def _user(self, arg: str) -> Event | None:
        self._refuse_cleartext()
        if not arg:
            raise RemoteProtocolError("Syntax: USER name")
        self._user_arg = arg
        self._send(True, "Send PASS")
        return None

    def _pass(self, arg: str) -> Event | None:
        self._refuse_cleartext()
        user, self._user_arg = self._user_arg, None
        if user is None:
            raise RemoteProtocolError("Send USER first")  # RFC 1939 §7: PASS only after USER
        if not arg:
            raise RemoteProtocolError("Syntax: PASS password")
        return self._await(AuthRequest("USER", Credentials(authcid=user, password=arg)))

    def _auth(self, arg: str) -> Event | None:
        self._refuse_cleartext()
        self._user_arg = None
        if not arg:
            # Not in RFC 5034 (the mechanism is required, §4), but Outlook and
            # other pre-RFC 1734 clients ask this way; Dovecot answers so too.
            self._multiline("Supported mechanisms follow", list(MECHANISMS))
            return None
        name, _, initial = arg.partition(" ")
        mechanism = server_mechanism(name) if name.upper() in MECHANISMS else None
        if mechanism is None:
            raise RemoteProtocolError("Unrecognized authentication type")
        # RFC 5034 §4: an initial response of "=" is an empty one.
        return self._sasl_said(self._sasl.start(mechanism, initial.encode() if initial else None))

    def _sasl_said(self, outcome: Outcome) -> Event | None:
        if isinstance(outcome, Challenge):
            # RFC 5034 §4: "+" SP base64 challenge (an empty one is "+ ").
            self._out.append(b"+ " + outcome.data + b"\r\n")
        elif isinstance(outcome, Failed):
            # RFC 5034 §4: "*" cancels, and the server rejects with -ERR.
            self._error("Authentication cancelled" if outcome.cancelled else outcome.reason)
        else:
            return self._await(AuthRequest(outcome.mechanism, outcome.credentials))
        return None

    def _stls(self, arg: str) -> Event | None:
        if arg:
            raise RemoteProtocolError("STLS takes no arguments")
        if self.secure:
            raise RemoteProtocolError("TLS already active")
        if not self.settings.tls_available:
            raise RemoteProtocolError("STLS not available")
        self._send(True, "Begin TLS negotiation")
        # RFC 2595 §4 / CVE-2011-0411: drop whatever was pipelined behind STLS.
        self._in.clear()
        self._user_arg = None
        return self._await(StartTLS())

    def _quit(self, arg: str) -> Event | None:
        if self.state is State.AUTHORIZATION:
            # RFC 1939 §4: QUIT before login ends the session, nothing to update.
            self._close(_status(True, f"{self.settings.software} POP3 signing off"))
            return Closing("QUIT")
        # RFC 1939 §6: QUIT in TRANSACTION enters UPDATE and removes the marked
        # messages; with delete_retrieved, retrieved ones too.
        self.state = State.UPDATE
        deleted, seen = self._drop.update(delete_retrieved=self.settings.delete_retrieved)
        return self._await(Update(deleted, seen))

    def _noop(self, arg: str) -> Event | None:
        self._send(True, "")
        return None

    def _stat(self, arg: str) -> Event | None:
        # RFC 1939 §5: "+OK nn mm", deleted messages not counted.
        self._send(True, f"{self._drop.live_count} {self._drop.live_size}")
        return None

    def _message(self, arg: str) -> int:
        """The 0-based index of live message ``arg``."""
        number = _number(arg)
        if number is None:
            raise RemoteProtocolError("Syntax: a message number is needed")
        found = self._drop.find(number)
        if isinstance(found, str):
            raise RemoteProtocolError(found)
        return found

    def _list(self, arg: str) -> Event | None:
        return self._scan(arg, 1)

    def _uidl(self, arg: str) -> Event | None:
        return self._scan(arg, 0)

    def _scan(self, arg: str, column: int) -> Event | None:
        """LIST (``column`` 1, the size) or UIDL (``column`` 0), RFC 1939 §5, §7."""
        if arg:
            index = self._message(arg)
            self._send(True, f"{index + 1} {self._drop.listing[index][column]}")
            return None
        drop = self._drop
        if column:
            self._send(True, f"{drop.live_count} messages ({drop.live_size} octets)")
        else:
            self._send(True, "Unique-ID listing follows")
        self._out.append(drop.scan(column))
        return None

    def _retr(self, arg: str) -> Event | None:
        return self._await(Retrieve(self._message(arg)))

    def _top(self, arg: str) -> Event | None:
        msg, _, lines = arg.partition(" ")
        count = _number(lines)
        if count is None:
            raise RemoteProtocolError("Syntax: TOP message lines")
        return self._await(Retrieve(self._message(msg), count))

    def _dele(self, arg: str) -> Event | None:
        index = self._message(arg)
        # RFC 1939 §5: only marked now; removed in the UPDATE state.
        self._drop.delete(index)
        self._send(True, f"Message {index + 1} deleted")
        return None

    def _rset(self, arg: str) -> Event | None:
        self._drop.reset()
        self._send(True, f"{self._drop.live_count} messages ({self._drop.live_size} octets)")
        return None

    def _multiline(self, first: str, lines: list[str]) -> None:
        self._send(True, first)
        self._out.append("".join(f"{line}\r\n" for line in lines).encode() + b".\r\n")

    # One transition table: verb -> (handler, states it is valid in), after
    # RFC 1939 §4-§7, RFC 2449 §5 (CAPA), RFC 2595 §4 (STLS), RFC 5034 §4 (AUTH).
    _AUTH: ClassVar[frozenset[State]] = frozenset({State.AUTHORIZATION})
    _TRANS: ClassVar[frozenset[State]] = frozenset({State.TRANSACTION})
    _COMMANDS: ClassVar[
        dict[str, tuple[Callable[[POP3Server, str], Event | None], frozenset[State]]]
    ] = {
        "CAPA": (_capa, _AUTH | _TRANS),
        "QUIT": (_quit, _AUTH | _TRANS),
        "NOOP": (_noop, _TRANS),  # RFC 1939 §5: TRANSACTION only
        "USER": (_user, _AUTH),
        "PASS": (_pass, _AUTH),
        "AUTH": (_auth, _AUTH),
        "STLS": (_stls, _AUTH),
        "STAT": (_stat, _TRANS),
        "LIST": (_list, _TRANS),
        "UIDL": (_uidl, _TRANS),
        "RETR": (_retr, _TRANS),
        "TOP": (_top, _TRANS),
        "DELE": (_dele, _TRANS),
        "RSET": (_rset, _TRANS),
    }


#: Every command the server knows, for notes that must never carry arguments.
COMMAND_NAMES = frozenset(verb.encode() for verb in POP3Server._COMMANDS)
