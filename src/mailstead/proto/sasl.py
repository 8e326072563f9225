"""Server side of the SASL mechanisms PLAIN and LOGIN, shared by SMTP, IMAP, POP3.

A mechanism takes decoded client responses and answers with either the
next challenge (bytes) or the finished :class:`Credentials`. Base64 framing
and the ``*`` cancel line are the same in all three protocols (RFC 4954 §4,
RFC 9051 §6.2.2, RFC 5034 §4), so they live here too, and so does the
exchange itself (:class:`SASLExchange`): each protocol only wraps its
:class:`Challenge` in its own framing (SMTP ``334``, IMAP and POP3 ``+``),
bounds the response line and words the refusal of a :class:`Failed`.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field

from mailstead.peertext import has_control
from mailstead.proto.errors import LocalProtocolError, RemoteProtocolError


@dataclass(frozen=True, slots=True)
class Credentials:
    """What the client claimed: who it is, who it wants to act as, its password."""

    authcid: str
    password: str = field(repr=False)  # never in a log line by way of repr()
    # RFC 4616 §2: an empty authzid means "act as authcid".
    authzid: str = ""


class SASLError(RemoteProtocolError):
    """A malformed SASL exchange (bad base64, missing fields, bad UTF-8)."""


class SASLCancelled(SASLError):
    """The client sent ``*`` to abort the exchange."""


def decode_response(line: bytes) -> bytes:
    """Decode one base64 client response line; ``*`` cancels, ``=`` is empty."""
    line = line.strip()
    if line == b"*":
        raise SASLCancelled("Authentication cancelled")
    if line == b"=":
        return b""
    try:
        return base64.b64decode(line, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SASLError("Invalid base64 data") from exc


def encode_challenge(challenge: bytes) -> bytes:
    return base64.b64encode(challenge)


def _text(value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SASLError("Credentials are not valid UTF-8") from exc


def _identity(value: bytes) -> str:
    """An authcid or authzid: RFC 4616 §2 wants them SASLprep'd, and RFC 4013
    §2.3 prohibits control characters (C.2.1, C.2.2) in the result. A user
    name goes into log lines, so a CR, LF or NUL in one is refused here."""
    text = _text(value)
    if has_control(text):
        raise SASLError("Control characters are not allowed in a user name")
    return text


class SASLMechanism:
    """One exchange of one mechanism; create a new object per AUTH command."""

    name = ""

    def start(self, initial: bytes | None) -> bytes | Credentials:
        """Begin, with the client's initial response if it sent one."""
        raise NotImplementedError

    def step(self, response: bytes) -> bytes | Credentials:
        """Take the client's answer to the last challenge."""
        raise NotImplementedError


class Plain(SASLMechanism):
    """RFC 4616: one message ``authzid NUL authcid NUL passwd``."""

    name = "PLAIN"

    def start(self, initial: bytes | None) -> bytes | Credentials:
        return b"" if initial is None else self.step(initial)

    def step(self, response: bytes) -> bytes | Credentials:
        parts = response.split(b"\0")
        if len(parts) != 3 or not parts[1] or not parts[2]:
            raise SASLError("Malformed PLAIN response")
        authzid, authcid, password = _identity(parts[0]), _identity(parts[1]), _text(parts[2])
        return Credentials(authcid=authcid, password=password, authzid=authzid)


class Login(SASLMechanism):
    """The de-facto LOGIN mechanism (draft-murchison-sasl-login): user, then password."""

    name = "LOGIN"

    def __init__(self) -> None:
        self._user: str | None = None

    def start(self, initial: bytes | None) -> bytes | Credentials:
        if initial is None:
            return b"Username:"
        return self.step(initial)

    def step(self, response: bytes) -> bytes | Credentials:
        if self._user is None:
            if not response:
                raise SASLError("Empty user name")
            self._user = _identity(response)
            return b"Password:"
        return Credentials(authcid=self._user, password=_text(response))


MECHANISMS: dict[str, type[SASLMechanism]] = {"PLAIN": Plain, "LOGIN": Login}


def server_mechanism(name: str) -> SASLMechanism | None:
    """A fresh exchange for mechanism ``name`` (case-insensitive), or None."""
    if not name.isascii():
        return None  # RFC 4422 §3.1: ASCII names; and "plaın".upper() is "PLAIN"
    cls = MECHANISMS.get(name.upper())
    return cls() if cls else None


# -- one exchange, as every protocol runs it --------------------------------------


@dataclass(frozen=True, slots=True)
class Challenge:
    """Send ``data`` in the protocol's framing; the client's next line goes to
    :meth:`SASLExchange.step`."""

    data: bytes  # base64 already, without a line end; b"" for an empty challenge


@dataclass(frozen=True, slots=True)
class Finished:
    """The exchange is over and the client made a claim: check ``credentials``."""

    mechanism: str
    credentials: Credentials


@dataclass(frozen=True, slots=True)
class Failed:
    """The exchange is over without credentials; ``reason`` names no internal detail."""

    reason: str
    cancelled: bool = False  # the client sent "*"


Outcome = Challenge | Finished | Failed


class SASLExchange:
    """Owns a session's SASL authentication: the exchange under way (its
    mechanism and how far it got) and how many logins have failed.

    One object lives as long as the session; :meth:`start` begins an
    exchange, :meth:`step` takes each response line, and every
    :class:`Finished` or :class:`Failed` ends it.
    """

    def __init__(self) -> None:
        self._mechanism: SASLMechanism | None = None
        #: Failed logins in this session, by SASL or the protocol's own command.
        self.failures = 0

    @property
    def active(self) -> bool:
        """True while the next client line is a SASL response, not a command."""
        return self._mechanism is not None

    def start(self, mechanism: SASLMechanism, initial: bytes | None) -> Outcome:
        """Begin ``mechanism`` with the initial response as sent (base64), if any.

        RFC 4954 §4, RFC 4959 §3, RFC 5034 §4: ``=`` is an empty initial
        response and ``*`` cancels, as on every later line.
        """
        if self._mechanism is not None:
            raise LocalProtocolError("a SASL exchange is already under way")
        self._mechanism = mechanism
        try:
            result = mechanism.start(None if initial is None else decode_response(initial))
        except SASLError as exc:
            return self._failed(exc)
        return self._outcome(mechanism, result)

    def step(self, line: bytes) -> Outcome:
        """Take one response line (its line end removed)."""
        mechanism = self._mechanism
        if mechanism is None:
            raise LocalProtocolError("no SASL exchange is under way")
        try:
            result = mechanism.step(decode_response(line))
        except SASLError as exc:
            return self._failed(exc)
        return self._outcome(mechanism, result)

    def too_long(self) -> Failed:
        """The response line broke the protocol's limit, which ends the exchange."""
        self._mechanism = None
        return Failed("Response too long")

    def failed(self, limit: int) -> bool:
        """Count one failed login; True once there have been ``limit`` of them."""
        self.failures += 1
        return self.failures >= limit

    def _outcome(self, mechanism: SASLMechanism, result: bytes | Credentials) -> Outcome:
        if isinstance(result, bytes):
            return Challenge(encode_challenge(result))
        self._mechanism = None
        return Finished(mechanism.name, result)

    def _failed(self, exc: SASLError) -> Failed:
        self._mechanism = None
        return Failed(str(exc), cancelled=isinstance(exc, SASLCancelled))
