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
from collections.abc import Sequence
from pathlib import Path

from mailstead.proto.pop3.maildrop import MaildropInUse
from mailstead.store.account import INBOX, Account
from mailstead.store.paths import maildir_path

LOCK_NAME = "mailstead-pop3.lock"


def uidl(uid: int, uidvalidity: int) -> str:
    """The unique-id listing of a message: its UID and the mailbox's UIDVALIDITY.

    Both are precious in the index, so the value never changes and is never
    reused (RFC 1939 §7); the format is Dovecot's default ``%08Xu%08Xv``.
    """
    return f"{uid:08X}{uidvalidity:08X}"


class MaildirMaildrop:
    """Owns one POP3 session's lock on an INBOX and its snapshot of the messages."""

    def __init__(self, root: Path) -> None:
        self._account = Account(root)
        self._lock_fd = os.open(root / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            self._account.index.close()
            raise MaildropInUse("Maildrop is locked by another POP3 session") from None
        self._inbox = self._account.mailbox(INBOX)
        self._inbox.refresh()
        self._uids = list(self._inbox.uids)

    def listing(self) -> Sequence[tuple[str, int]]:
        inbox = self._inbox
        return [(uidl(uid, inbox.uidvalidity), inbox.messages[uid].size) for uid in self._uids]

    def read(self, index: int) -> bytes:
        return self._inbox.read(self._uids[index])

    def read_head(self, index: int, body_lines: int) -> bytes:
        return self.read(index)

    def mark_seen(self, indexes: Sequence[int]) -> None:
        self._inbox.refresh()
        self._inbox.store([self._uids[i] for i in indexes], ["\\Seen"], "+")

    def delete(self, indexes: Sequence[int]) -> None:
        self._inbox.refresh()
        self._inbox.expunge([self._uids[i] for i in indexes])

    def close(self) -> None:
        try:
            self._account.index.close()
        finally:
            os.close(self._lock_fd)  # releases the flock


class MaildirMaildrops:
    """Opens maildrops below the mail root (``OpenMaildrop`` for the POP3 service)."""

    def __init__(self, mail_root: Path) -> None:
        self.mail_root = Path(mail_root)

    def open(self, address: str) -> MaildirMaildrop:
        return MaildirMaildrop(maildir_path(self.mail_root, address))
