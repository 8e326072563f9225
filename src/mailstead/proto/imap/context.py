"""What a command handler works with: the session state, the command, the output.

Handlers live in :mod:`mailbox_commands` and :mod:`message_commands`; each
takes a :class:`Context`, writes untagged responses with
:meth:`Context.untagged`, and returns the :class:`Reply` for the tagged
line. The server adds pending updates (EXISTS, EXPUNGE, FETCH FLAGS) before
that line. A handler whose storage work has slow I/O (APPEND, COPY, MOVE)
returns :meth:`Context.finish_later` instead: the server runs the
:data:`~mailstead.proto.imap.storage.Staged` steps it is given, handing each
off-loop step to the session (``StorageWork``), and the reply is what they
return.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mailstead.limits import IMAPLimits
from mailstead.proto.errors import RemoteProtocolError
from mailstead.proto.imap.mailbox_names import MailboxNameError, normalise_mailbox_name
from mailstead.proto.imap.parser import Command
from mailstead.proto.imap.quota_limits import LimitsLookup
from mailstead.proto.imap.storage import AccountLike, Staged
from mailstead.proto.imap.tokens import Atom, String, Token
from mailstead.proto.imap.view import SelectedView


@dataclass(slots=True)
class Session:
    """The per-connection state the handlers share."""

    account: AccountLike | None = None
    user: str = ""
    view: SelectedView | None = None
    # RFC 9051 §6.3.1 ENABLE IMAP4rev2; RFC 6855 UTF8=ACCEPT.
    rev2: bool = False
    utf8: bool = False
    # RFC 5182 SEARCHRES: UIDs of the last SEARCH ... RETURN (SAVE).
    saved: list[int] | None = None
    # RFC 9208 QUOTA: how to look the user's limits up (None: no quotas here).
    quota: LimitsLookup | None = None
    # RFC 7162 §3.1 CONDSTORE enabled (by ENABLE or a CONDSTORE enabling
    # command) and §3.2.3 ENABLE QRESYNC; see proto/imap/condstore.py.
    condstore: bool = False
    qresync: bool = False


@dataclass(frozen=True, slots=True)
class Reply:
    """The tagged status line: ``OK``/``NO``/``BAD``, an optional response code, a text."""

    status: bytes
    text: bytes
    code: bytes = b""
    # False for commands during which the client's sequence numbers must hold.
    allow_expunge: bool = True


#: What a handler returns after :meth:`Context.finish_later`: not a reply.
LATER = Reply(b"", b"")


def ok(text: str, code: bytes = b"") -> Reply:
    return Reply(b"OK", text.encode(), code)


def no(text: str, code: bytes = b"") -> Reply:
    return Reply(b"NO", text.encode(), code)


def bad(text: str) -> Reply:
    return Reply(b"BAD", text.encode())


class ArgumentError(RemoteProtocolError):
    """A command's arguments are wrong; the server answers BAD with the text."""


class NameRefused(Exception):
    """A mailbox name the server cannot use; answered ``NO [CANNOT]`` with the text."""


@dataclass(slots=True)
class Context:
    """One command being handled."""

    session: Session
    limits: IMAPLimits
    command: Command
    out: list[bytes] = field(default_factory=list)
    # The rest of the command, when it is split at slow I/O (finish_later).
    later: Staged[Reply] | None = None

    @property
    def account(self) -> AccountLike:
        assert self.session.account is not None
        return self.session.account

    def finish_later(self, steps: Staged[Reply]) -> Reply:
        """Return this from a handler whose reply ``steps`` will give; the server
        runs them (their off-loop steps in the session's thread pool).

        The command stays the session's current one until then: its input
        waits, its untagged responses and updates go out before its tagged
        line as usual. Other sessions run in between.
        """
        self.later = steps
        return LATER

    def session_saved(self) -> list[int] | None:
        return self.session.saved

    def session_save(self, uids: list[int]) -> None:
        self.session.saved = uids

    def untagged(self, line: bytes) -> None:
        self.out.append(b"* " + line + b"\r\n")

    def args(self, low: int, high: int | None = None) -> tuple[Token, ...]:
        args = self.command.args
        if len(args) < low or (high is not None and len(args) > high):
            raise ArgumentError(f"Wrong number of arguments to {self.command.name}")
        return args

    def mailbox_name(self, token: Token) -> str:
        """A mailbox argument, decoded and checked (raises :class:`MailboxNameError`)."""
        if isinstance(token, Atom):
            raw = token.value.encode()
        elif isinstance(token, String):
            raw = token.value
        else:
            raise ArgumentError("Expected a mailbox name")
        return normalise_mailbox_name(raw, utf8=self.session.utf8)


def atom(token: Token, what: str) -> str:
    if not isinstance(token, Atom):
        raise ArgumentError(f"Expected {what}")
    return token.value


def raw(token: Token) -> bytes:
    """An astring argument's octets."""
    if isinstance(token, Atom):
        return token.value.encode()
    if isinstance(token, String):
        return token.value
    raise ArgumentError("Expected a string")


def text(token: Token) -> str:
    """An astring argument as text."""
    if isinstance(token, Atom):
        return token.value
    if isinstance(token, String):
        try:
            return token.value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ArgumentError("Not valid UTF-8") from exc
    raise ArgumentError("Expected a string")


__all__ = [
    "LATER",
    "ArgumentError",
    "Context",
    "MailboxNameError",
    "NameRefused",
    "Reply",
    "Session",
    "atom",
    "bad",
    "no",
    "ok",
    "raw",
    "text",
]
