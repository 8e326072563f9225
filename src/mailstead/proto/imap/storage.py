"""What the IMAP server needs from storage, as structural types.

The server is written against these protocols, not against the Maildir
code, so tests may hand it fakes; :mod:`mailstead.store.account` and
:mod:`mailstead.store.mailbox` are the real implementations.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from typing import Protocol, TypeAlias, TypeVar, runtime_checkable

T = TypeVar("T")

#: A step of storage work that may run off the event loop, in a thread: slow,
#: self-contained I/O (a message file's write and fsync, a directory fsync)
#: that touches nothing the worker's sessions share.
OffLoop: TypeAlias = Callable[[], None]

#: A storage change split at its slow I/O: a generator the server runs on the
#: event loop, among the other sessions' commands. Each :data:`OffLoop` it
#: yields runs in a thread before the generator is resumed (with the step's
#: exception thrown in, if it raised); what it returns is the result. Between
#: the steps the worker's other sessions run, so code after a ``yield`` must
#: not rely on what it read of shared state before it.
Staged: TypeAlias = Generator[OffLoop, None, T]


class MailboxError(Exception):
    """A mailbox operation that cannot be done; the text is for the client."""

    def __init__(self, text: str, code: str = "") -> None:
        super().__init__(text)
        self.text = text
        self.code = code  # RFC 5530 response code, e.g. "ALREADYEXISTS"


class FlagLimitError(MailboxError):
    """No room for another keyword in this mailbox."""

    def __init__(self, text: str = "Too many keywords in this mailbox") -> None:
        super().__init__(text, "LIMIT")


class MessageLike(Protocol):
    uid: int
    flags: tuple[str, ...]
    size: int
    modseq: int

    # Read-only: a Maildir record may look its date up at first use.
    @property
    def internaldate(self) -> float: ...


class Appender(Protocol):
    def append(self, data: bytes, flags: Sequence[str], internaldate: float | None) -> int: ...


class MailboxLike(Protocol):
    """One mailbox: its UIDs in order, each message's record, and the changes."""

    name: str
    uidvalidity: int
    uidnext: int
    highestmodseq: int
    uids: list[int]
    # SEARCH's remembered summary header fields per UID (see message_commands).
    header_summaries: dict[int, bytes]

    @property
    def messages(self) -> Mapping[int, MessageLike]: ...

    # Messages expunged (here or elsewhere) that sessions may still number:
    # RFC 2180 §4.1, readable with read() for a while.
    @property
    def retained(self) -> Mapping[int, MessageLike]: ...

    def refresh(self, max_age: float = 0.0) -> None: ...

    def read(self, uid: int) -> bytes: ...

    def cached(self, uid: int, item: str) -> bytes | None: ...

    def remember(self, uid: int, item: str, value: bytes) -> None: ...

    # SORT/THREAD/OBJECTID's per-message summaries (proto/imap/summary.py),
    # kept in the index: every one of the mailbox's, and a batch to add.
    def summaries(self) -> dict[int, bytes]: ...

    def save_summaries(self, found: dict[int, bytes]) -> None: ...

    def take_new(self) -> list[int]: ...

    # RFC 3501 §2.3.2 \Recent: claimed by one session each; peeked at by
    # EXAMINE and STATUS.
    def claim_recent(self) -> list[int]: ...

    def recent_uids(self) -> list[int]: ...

    # RFC 7162 UNCHANGEDSINCE: messages with a higher modseq are left alone.
    def store(
        self,
        uids: Iterable[int],
        flags: Sequence[str],
        mode: str,
        unchanged_since: int | None = None,
    ) -> list[int]: ...

    # RFC 7162 QRESYNC: UIDs expunged after a modseq (None: no longer known).
    def expunged_since(self, modseq: int) -> list[int] | None: ...

    def append(self, data: bytes, flags: Sequence[str], internaldate: float | None) -> int: ...

    def copy_to(self, uids: Iterable[int], dest: Appender) -> list[tuple[int, int]]: ...

    def expunge(self, uids: Iterable[int]) -> list[int]: ...

    def keyword_names(self) -> list[str]: ...


@runtime_checkable
class StagedChanges(Protocol):
    """Optional on a :class:`MailboxLike`: APPEND and COPY as :data:`Staged` steps.

    A store without these is called at once (:meth:`MailboxLike.append`,
    :meth:`MailboxLike.copy_to`), its slow I/O on the event loop.
    """

    def append_staged(
        self, data: bytes, flags: Sequence[str], internaldate: float | None
    ) -> Staged[int]: ...

    def copy_staged(self, uids: Iterable[int], dest: Appender) -> Staged[list[tuple[int, int]]]: ...


def append_steps(
    mailbox: MailboxLike, data: bytes, flags: Sequence[str], internaldate: float | None
) -> Staged[int]:
    """APPEND's storage work, split at its slow I/O where the store can."""
    if isinstance(mailbox, StagedChanges):
        return mailbox.append_staged(data, flags, internaldate)
    return _at_once(functools.partial(mailbox.append, data, flags, internaldate))


def copy_steps(
    source: MailboxLike, uids: Iterable[int], dest: Appender
) -> Staged[list[tuple[int, int]]]:
    """COPY's (and MOVE's) storage work, split at its slow I/O where the store can."""
    if isinstance(source, StagedChanges):
        return source.copy_staged(uids, dest)
    return _at_once(functools.partial(source.copy_to, uids, dest))


def _at_once(work: Callable[[], T]) -> Staged[T]:
    yield from ()
    return work()


def run_here(staged: Staged[T]) -> T:
    """Run ``staged`` to its end in the calling thread, its off-loop steps included
    (for callers that may block: a thread of their own, a test)."""
    error: Exception | None = None
    while True:
        try:
            step = staged.throw(error) if error is not None else next(staged)
        except StopIteration as done:
            result: T = done.value
            return result
        error = None
        try:
            step()
        except Exception as exc:  # thrown into the generator, as its session would
            error = exc


class AccountLike(Protocol):
    """The mailboxes of the logged-in user."""

    def names(self) -> list[str]: ...

    def exists(self, name: str) -> bool: ...

    def special_use(self, name: str) -> str | None: ...

    def mailbox(self, name: str) -> MailboxLike: ...

    def create(self, name: str) -> None: ...

    def delete(self, name: str) -> None: ...

    def rename(self, old: str, new: str) -> None: ...

    def subscriptions(self) -> set[str]: ...

    def set_subscribed(self, name: str, subscribed: bool) -> None: ...
