"""The POP3 maildrop of an account: its INBOX, locked, as a fixed listing.

RFC 1939 §8 asks for an exclusive lock on the maildrop for the whole
session; ``flock`` on ``mailstead-pop3.lock`` beside the INBOX gives that
across processes and between sessions of one process alike (the lock
belongs to the open file, not to the process). IMAP sessions do not take
it: they see a POP3 deletion as an ordinary EXPUNGE.

Each maildrop opens the account on its own (its own index connection and
in-memory view), as another process would, so the worker threads POP3 runs
its storage calls in never share a :class:`Mailbox` with the event loop.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

from mailstead.events import EventSink
from mailstead.proto.imap.storage import MessageLike
from mailstead.proto.pop3.maildrop import MaildropInUse
from mailstead.store.account import INBOX, Account
from mailstead.store.changes import ChangeReporter
from mailstead.store.index import AccountIndex
from mailstead.store.paths import maildir_path

LOCK_NAME = "mailstead-pop3.lock"


def uidl(uid: int, uidvalidity: int) -> str:
    """The unique-id listing of a message: its UID and the mailbox's UIDVALIDITY.

    Both are precious in the index, so the value never changes and is never
    reused (RFC 1939 §7); the format is Dovecot's default ``%08Xu%08Xv``.
    """
    return f"{uid:08X}{uidvalidity:08X}"


class _Inbox(Protocol):
    uidvalidity: int
    uids: list[int]

    @property
    def messages(self) -> Mapping[int, MessageLike]: ...

    def refresh(self, max_age: float = 0.0) -> None: ...

    def read(self, uid: int) -> bytes: ...

    def store(self, uids: Iterable[int], flags: Sequence[str], mode: str) -> list[int]: ...

    def expunge(self, uids: Iterable[int]) -> list[int]: ...


class _Account(Protocol):
    @property
    def index(self) -> AccountIndex: ...

    def mailbox(self, name: str) -> _Inbox: ...


class MaildropView:
    """One POP3 session's snapshot of an INBOX: the fixed listing and what the
    session does with it. A subclass holds the lock (:class:`LockedMaildrop`)."""

    def __init__(self, inbox: _Inbox) -> None:
        self._inbox = inbox
        inbox.refresh()
        self._uids = list(inbox.uids)

    def listing(self) -> Sequence[tuple[str, int]]:
        inbox = self._inbox
        return [(uidl(uid, inbox.uidvalidity), inbox.messages[uid].size) for uid in self._uids]

    def read(self, index: int) -> bytes:
        uid = self._uids[index]
        data = self._inbox.read(uid)
        # The mailbox still reads a message expunged meanwhile, for IMAP
        # sessions not yet told (RFC 2180 §4.1); POP3 answers -ERR for it.
        if uid not in self._inbox.messages:
            raise FileNotFoundError(f"message {uid} was expunged")
        return data

    def read_head(self, index: int, body_lines: int) -> bytes:
        return self.read(index)

    def mark_seen(self, indexes: Sequence[int]) -> None:
        self._inbox.refresh()
        self._inbox.store([self._uids[i] for i in indexes], ["\\Seen"], "+")

    def delete(self, indexes: Sequence[int]) -> None:
        self._inbox.refresh()
        self._inbox.expunge([self._uids[i] for i in indexes])


class LockedMaildrop(MaildropView):
    """Owns one POP3 session's lock on an INBOX and its snapshot of the messages.

    ``account`` is opened for this session alone (Maildir or mbox); the lock
    file lives in ``lock_dir``, beside the INBOX.
    """

    def __init__(self, account: _Account, lock_dir: Path) -> None:
        self._account = account
        self._lock_fd = os.open(lock_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            account.index.close()
            raise MaildropInUse("Maildrop is locked by another POP3 session") from None
        try:
            super().__init__(account.mailbox(INBOX))
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        try:
            self._account.index.close()
        finally:
            os.close(self._lock_fd)  # releases the flock


class Maildrops:
    """Opens locked maildrops (``OpenMaildrop`` for the POP3 service).

    ``locate(address)`` gives the account, opened afresh, and the directory
    of its INBOX (for the lock file).
    """

    def __init__(self, locate: Callable[[str], tuple[_Account, Path]]) -> None:
        self._locate = locate

    def open(self, address: str) -> LockedMaildrop:
        account, lock_dir = self._locate(address)
        return LockedMaildrop(account, lock_dir)


def maildir_maildrops(mail_root: Path, events: EventSink | None = None) -> Maildrops:
    """POP3 maildrops over the Maildir INBOXes below ``mail_root``.

    Their deletions and flag changes become events for ``events``, if given.
    """

    def locate(address: str) -> tuple[_Account, Path]:
        root = maildir_path(mail_root, address)
        return Account(root, reporter=ChangeReporter(events, address)), root

    return Maildrops(locate)
