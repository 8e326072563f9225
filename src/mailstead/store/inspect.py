"""Looking into one account's mailboxes from outside a session (``mailstead mailbox``).

What an operator asks of a mailbox, as ``doveadm mailbox``/``fetch`` answer
it: the folders with their counts, the messages an IMAP SEARCH finds, one
message, and removing messages. Every step goes through the same account
and mailbox objects the IMAP server uses, so UIDs, flags and the index stay
what the sessions see: an expunge here is an expunge there (RFC 9051 §7.5.1
reaches a selected session at its next command), never a file removed behind
the index's back.

Nothing is created for an address that has no mail yet: :func:`open_account`
answers None, and the caller reports an empty INBOX. With ``[storage]
backend = "postgresql"`` the account comes from
:func:`mailstead.store.pg_inspect.open_cluster_account` instead, and every
function here works on it alike.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from mailstead.proto.events import NEED_DATA
from mailstead.proto.imap.message_commands import matching
from mailstead.proto.imap.parser import Command, CommandParser
from mailstead.proto.imap.search import SearchQuery, SearchSyntaxError, parse_search
from mailstead.proto.imap.search_match import (
    address_text,
    body_offset,
    decode_header_value,
    parse_fields,
)
from mailstead.proto.imap.storage import MailboxError, MailboxLike
from mailstead.store.account import INBOX, Account
from mailstead.store.changes import NO_REPORTS, ChangeReporter
from mailstead.store.mbox_account import INBOX_FILE, MboxAccount
from mailstead.store.paths import account_dir, maildir_path

if TYPE_CHECKING:
    from mailstead.store.pg_account import PgAccount

__all__ = [
    "INBOX",
    "AnyAccount",
    "FileAccount",
    "FolderSummary",
    "InspectError",
    "MessageSummary",
    "account_totals",
    "expunge",
    "folder_summaries",
    "open_account",
    "open_folder",
    "parse_query",
    "read_message",
    "search",
    "summaries",
    "summarize",
]

#: Octets of a query: far more than any typed search needs.
MAX_QUERY = 16 * 1024

# An account in files (Maildir, mbox), or in the cluster database (store/pg_inspect.py).
FileAccount = Account | MboxAccount
AnyAccount: TypeAlias = "FileAccount | PgAccount"


class InspectError(Exception):
    """A mailbox question that cannot be answered as asked (one-line message)."""


@dataclass(frozen=True, slots=True)
class FolderSummary:
    """One mailbox of an account: how many messages, how many unread, their size."""

    name: str
    messages: int
    unseen: int
    size: int  # octets, CRLF line ends (RFC822.SIZE), summed


@dataclass(frozen=True, slots=True)
class MessageSummary:
    """One message as a listing shows it: UID, flags, size and three header fields.

    ``date`` is the Date: field as written (empty if none); ``internaldate``
    is when the server stored the message (POSIX seconds).
    """

    uid: int
    flags: tuple[str, ...]
    size: int
    internaldate: float
    date: str
    sender: str
    subject: str


def open_account(
    storage_format: str,
    mail_root: Path,
    address: str,
    *,
    reporter: ChangeReporter = NO_REPORTS,
) -> FileAccount | None:
    """The account of the canonical ``address``, or None when it has no mail store yet.

    Its changes go to ``reporter`` (``message.expunged`` events, as from an
    IMAP session). Raises :class:`~mailstead.store.paths.UnsafePathError`
    for an address that cannot name a directory.
    """
    if storage_format == "mbox":
        root = account_dir(mail_root, address)
        if not (root / INBOX_FILE).exists() and not root.is_dir():
            return None
        return MboxAccount(root, reporter=reporter)
    inbox = maildir_path(mail_root, address)
    if not (inbox / "cur").is_dir():
        return None
    return Account(inbox, reporter=reporter)


def open_folder(account: AnyAccount, name: str) -> MailboxLike:
    """Mailbox ``name`` (``inbox`` in any case is INBOX), brought up to date."""
    if name.upper() == INBOX:
        name = INBOX
    try:
        box: MailboxLike = account.mailbox(name)
    except MailboxError:
        raise InspectError(f"no folder {name!r}") from None
    box.refresh()
    return box


def summarize(box: MailboxLike) -> FolderSummary:
    """Counts of a refreshed mailbox."""
    messages = [box.messages[uid] for uid in box.uids]
    return FolderSummary(
        name=box.name,
        messages=len(messages),
        unseen=sum(1 for m in messages if "\\Seen" not in m.flags),
        size=sum(m.size for m in messages),
    )


def folder_summaries(account: AnyAccount | None) -> list[FolderSummary]:
    """Every mailbox of the account, INBOX first; an empty INBOX when there is no store."""
    if account is None:
        return [FolderSummary(INBOX, 0, 0, 0)]
    return [summarize(open_folder(account, name)) for name in account.names()]


# --- search ------------------------------------------------------------------------


def parse_query(text: str) -> SearchQuery:
    """An IMAP SEARCH program (RFC 9051 §6.4.4) from its text, as a client would send it.

    The text goes through the IMAP command parser itself, so quoting and
    nesting mean here what they mean on the wire; a string with non-ASCII
    characters may be given quoted (it becomes a literal).
    """
    data = text.encode("utf-8")
    if len(data) > MAX_QUERY:
        raise InspectError(f"query longer than {MAX_QUERY} octets")
    if any(c in data for c in b"\r\n\0"):
        raise InspectError("query must be one line")
    if not data.strip():
        raise InspectError("empty query (ALL finds every message)")
    parser = CommandParser(authenticated=True, max_literal=MAX_QUERY)
    parser.receive_data(b"q UID SEARCH " + _literals(data) + b"\r\n")
    event = parser.next_event()
    if not isinstance(event, Command):
        text_of = getattr(event, "text", "") if event is not NEED_DATA else "incomplete"
        raise InspectError(f"bad query: {text_of or 'not IMAP syntax'}")
    try:
        return parse_search(event.args, uid_mode=True)
    except SearchSyntaxError as exc:
        raise InspectError(f"bad query: {exc}") from None
    except Exception as exc:  # BadCharset and its like: one line, no traceback
        raise InspectError(f"bad query: {exc}") from None


def _literals(data: bytes) -> bytes:
    """Strings holding non-ASCII octets, quoted or bare, as RFC 7888 ``{n+}`` literals.

    IMAP4rev1 strings are ASCII when quoted (RFC 9051 §4.3 allows UTF-8 only
    to a client that enabled it) and atoms always are; a literal carries any
    octets, so ``SUBJECT "Köln"`` and ``SUBJECT Köln`` both search for Köln.
    """
    out = bytearray()
    i = 0
    while i < len(data):
        c = data[i]
        if c == ord('"'):
            j, raw = i + 1, bytearray()
            while j < len(data) and data[j] != ord('"'):
                if data[j] == ord("\\") and j + 1 < len(data):
                    j += 1
                raw.append(data[j])
                j += 1
            if j >= len(data) or raw.isascii():
                out += data[i : j + 1]  # ASCII, or unterminated: the parser says so
            else:
                out += b"{%d+}\r\n" % len(raw) + raw
            i = j + 1
        elif c in b" ()":
            out.append(c)
            i += 1
        else:
            j = i
            while j < len(data) and data[j] not in b' ()"':
                j += 1
            word = data[i:j]
            out += word if word.isascii() else b"{%d+}\r\n" % len(word) + word
            i = j
    return bytes(out)


def search(box: MailboxLike, query: SearchQuery) -> list[int]:
    """UIDs of the messages of ``box`` (refreshed) that ``query`` matches, ascending."""
    return [uid for _, uid in matching(box, list(box.uids), box.messages.get, query)]


def summaries(box: MailboxLike, uids: Sequence[int]) -> Iterator[MessageSummary]:
    """Listing lines for ``uids`` of ``box`` (those still there)."""
    for uid in uids:
        msg = box.messages.get(uid)
        if msg is None:
            continue
        try:
            raw = box.read(uid)
        except FileNotFoundError:
            continue
        fields = parse_fields(raw[: body_offset(raw)])
        yield MessageSummary(
            uid=uid,
            flags=tuple(msg.flags),
            size=msg.size,
            internaldate=msg.internaldate,
            date=_first(fields, b"date", decode_header_value),
            sender=_first(fields, b"from", address_text),
            subject=_first(fields, b"subject", decode_header_value),
        )


def _first(fields: dict[bytes, list[bytes]], name: bytes, decode: Callable[[bytes], str]) -> str:
    values = fields.get(name)
    if not values:
        return ""
    try:
        return decode(values[0])
    except Exception:  # a hostile field: show its octets, never fail the listing
        return values[0].decode("utf-8", "replace")


def read_message(box: MailboxLike, uid: int) -> bytes:
    """The stored octets of message ``uid`` (LF line ends as stored)."""
    if uid not in box.messages:
        raise InspectError(f"no message with UID {uid} in {box.name}")
    try:
        return box.read(uid)
    except FileNotFoundError:
        raise InspectError(f"message {uid} of {box.name} was just expunged") from None


def expunge(box: MailboxLike, uids: Sequence[int]) -> list[int]:
    """Remove ``uids`` from ``box`` the way IMAP EXPUNGE does; the UIDs removed.

    The mailbox's own expunge path: files first, then the index with a new
    modseq, so every session learns of it (``* n EXPUNGE`` or VANISHED).
    """
    return sorted(box.expunge(uids))


def account_totals(storage_format: str, mail_root: Path, address: str) -> FolderSummary:
    """Messages, unseen messages and octets of every mailbox of ``address`` together
    (named ``*``); zeros when nothing is stored."""
    folders = folder_summaries(open_account(storage_format, mail_root, address))
    return FolderSummary(
        "*",
        sum(f.messages for f in folders),
        sum(f.unseen for f in folders),
        sum(f.size for f in folders),
    )
