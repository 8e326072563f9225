"""The mailboxes of one account: a Maildir++ folder tree with one index.

INBOX is the Maildir itself (``<data_dir>/mail/<domain>/<local>/Maildir/``,
docs/config.md); every other mailbox is a Maildir++ folder directly below it,
``.Work.Projects/`` for the IMAP name ``Work/Projects``. On disk each name
component is in modified UTF-7 (as Courier and Dovecot write them) and a
``.`` inside a component, which would read as a level separator, is written
as its base64 form ``&AC4-``.
"""

from __future__ import annotations

import collections
import contextlib
import os
import shutil
import threading
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Generic, Protocol, TypeVar

from mailstead.durable import fsync_dir
from mailstead.events import EventSink
from mailstead.proto.imap.storage import MailboxError, MailboxLike
from mailstead.proto.imap.utf7 import decode_mutf7, encode_mutf7
from mailstead.store.changes import NO_REPORTS, ChangeReporter
from mailstead.store.index import INDEX_NAME, AccountIndex, MailboxState
from mailstead.store.mailbox import Mailbox
from mailstead.store.maildir import create_folder
from mailstead.store.paths import maildir_path
from mailstead.store.search_indexer import AccountTextIndex
from mailstead.store.usage_columns import Usage

INBOX = "INBOX"
# RFC 6154 special-use mailboxes every account gets at its first login.
SPECIAL_USE = {
    "Drafts": "\\Drafts",
    "Sent": "\\Sent",
    "Trash": "\\Trash",
    "Junk": "\\Junk",
    "Archive": "\\Archive",
}
_DOT = "&AC4-"


def folder_dir_name(name: str) -> str:
    """``Work/Projects`` → ``.Work.Projects`` (not for INBOX)."""
    return "." + ".".join(encode_mutf7(part).replace(".", _DOT) for part in name.split("/"))


def folder_name(dir_name: str) -> str | None:
    """The mailbox name of a folder directory, or None if it is not one."""
    if not dir_name.startswith(".") or dir_name in (".", ".."):
        return None
    parts = []
    for component in dir_name[1:].split("."):
        if not component:
            return None
        try:
            parts.append(".".join(decode_mutf7(piece) for piece in component.split(_DOT)))
        except ValueError:
            return None
    return "/".join(parts)


class _Reporting(Protocol):
    reporter: ChangeReporter

    def refresh(self, max_age: float = 0.0) -> None: ...


_M = TypeVar("_M", bound=_Reporting)


class AccountBase(Generic[_M]):
    """What the accounts of both store formats share: the index, the open
    mailboxes, special use and subscriptions.

    A subclass says where mailboxes live (:meth:`path_of`, :meth:`exists`,
    :meth:`create`) and opens one (:meth:`_new_mailbox`).
    """

    def __init__(self, root: Path, *, reporter: ChangeReporter = NO_REPORTS) -> None:
        self.root = Path(root)
        self.reporter = reporter
        self.index = AccountIndex(self.root / INDEX_NAME)
        # Kept for the account's lifetime: reopening a large mailbox costs a
        # full load from the index, so a client that reconnects finds it warm.
        self._open: dict[str, _M] = {}
        self._lock = threading.Lock()
        self._provisioned = False

    def path_of(self, name: str) -> Path:
        raise NotImplementedError

    def exists(self, name: str) -> bool:
        raise NotImplementedError

    def create(self, name: str) -> None:
        raise NotImplementedError

    def _new_mailbox(self, state: MailboxState, path: Path) -> _M:
        raise NotImplementedError

    def provision(self) -> None:
        """Make the special-use mailboxes that are missing (first login)."""
        if self._provisioned:
            return
        self._provisioned = True
        for name in SPECIAL_USE:
            if not self.exists(name):
                with contextlib.suppress(MailboxError):
                    self.create(name)
                    self.index.set_subscribed(name, True)

    @staticmethod
    def special_use(name: str) -> str | None:
        return SPECIAL_USE.get(name)

    def mailbox(self, name: str) -> _M:
        """The open mailbox ``name``, shared with the other sessions of this process."""
        with self._lock:
            box = self._open.get(name)
            if box is not None:
                return box
            if not self.exists(name):
                raise MailboxError("Mailbox does not exist", "NONEXISTENT")
            box = self._new_mailbox(self.index.ensure_mailbox(name), self.path_of(name))
            box.reporter = self.reporter
            self._open[name] = box
            return box

    def subscriptions(self) -> set[str]:
        return self.index.subscriptions()

    def set_subscribed(self, name: str, subscribed: bool) -> None:
        self.index.set_subscribed(name, subscribed)

    def quota_usage(self) -> Usage:
        """What every mailbox holds together (RFC 9208 STORAGE, MESSAGE), from the
        index; the INBOX is looked at first, as SELECT does, so that mail
        delivered since counts."""
        with contextlib.suppress(MailboxError):
            self.mailbox(INBOX).refresh()
        return self.index.usage()


class Account(AccountBase[Mailbox]):
    """Owns one account's Maildir++ folder tree (INBOX is the Maildir itself)."""

    def __init__(self, root: Path, *, reporter: ChangeReporter = NO_REPORTS) -> None:
        create_folder(Path(root), is_inbox=True)
        super().__init__(root, reporter=reporter)
        # SEARCH's full-text index (store/search_index.py), opened at first use.
        self.text_index = AccountTextIndex(self.root)

    def _new_mailbox(self, state: MailboxState, path: Path) -> Mailbox:
        box = Mailbox(self.index, state, path)
        box.text_index = self.text_index
        return box

    def path_of(self, name: str) -> Path:
        return self.root if name == INBOX else self.root / folder_dir_name(name)

    def exists(self, name: str) -> bool:
        return (self.path_of(name) / "cur").is_dir()

    def names(self) -> list[str]:
        """Every mailbox of the account, INBOX first."""
        found = []
        with os.scandir(self.root) as entries:
            for entry in entries:
                name = folder_name(entry.name)
                if name is not None and name.upper() != INBOX and entry.is_dir():
                    found.append(name)
        return [INBOX, *sorted(found)]

    def create(self, name: str) -> None:
        if name == INBOX:
            raise MailboxError("Mailbox already exists", "ALREADYEXISTS")

        def make() -> None:
            # Checked under the index's write lock: two processes creating
            # one name at once (first logins provision the special-use
            # mailboxes in every worker) make it once.
            if self.exists(name):
                raise MailboxError("Mailbox already exists", "ALREADYEXISTS")
            create_folder(self.path_of(name), is_inbox=False)

        # A new mailbox under an old name must not reuse its UIDs (RFC 9051 §2.3.1.1).
        self.index.drop_mailbox(name, make)
        self.reporter.created(name)

    def delete(self, name: str) -> None:
        if name == INBOX:
            raise MailboxError("INBOX cannot be deleted", "CANNOT")
        if not self.exists(name):
            raise MailboxError("Mailbox does not exist", "NONEXISTENT")
        path = self.path_of(name)
        # Rename first so that a crash half-way leaves no half-deleted folder
        # visible; the leftover starts with ".." and is never listed.
        doomed = self.root / f".{path.name}.deleted-{os.getpid()}"
        os.rename(path, doomed)
        fsync_dir(self.root)
        shutil.rmtree(doomed, ignore_errors=True)
        self.index.drop_mailbox(name)
        with self._lock:
            self._open.pop(name, None)
        self.reporter.deleted(name)

    def rename(self, old: str, new: str) -> None:
        """RFC 9051 §6.3.6: children move along; renaming INBOX moves its messages."""
        moves = planned_rename(self, old, new)
        if old == INBOX:
            rename_inbox(self, new)
            self.reporter.renamed(old, new)
            return
        for src, dst in moves:
            os.rename(self.path_of(src), self.path_of(dst))
        fsync_dir(self.root)
        self.index.rename_mailbox(old, new)
        with self._lock:
            for src, _ in moves:
                self._open.pop(src, None)
        self.reporter.renamed(old, new)


class _Named(Protocol):
    def names(self) -> list[str]: ...

    def exists(self, name: str) -> bool: ...


def planned_rename(account: _Named, old: str, new: str) -> list[tuple[str, str]]:
    """RFC 9051 §6.3.6: the (old, new) names a RENAME moves, ``old``'s children
    along; refused with the RFC 5530 code when it cannot be done."""
    moves = [
        (n, new + n[len(old) :]) for n in account.names() if n == old or n.startswith(old + "/")
    ]
    if not moves:
        raise MailboxError("Mailbox does not exist", "NONEXISTENT")
    if new == INBOX or account.exists(new):
        raise MailboxError("Mailbox already exists", "ALREADYEXISTS")
    if new.startswith(old + "/"):
        raise MailboxError("Cannot move a mailbox into itself", "CANNOT")
    return moves


class Provisioned(Protocol):
    def provision(self) -> None: ...


_A = TypeVar("_A", bound=Provisioned)


class Accounts(Generic[_A]):
    """The accounts this process has open, one object each, made by ``make(address)``.

    An account stays open while a session uses it, and the ``keep`` most
    recently used ones stay open after their last session ends, so that a
    client that reconnects (most do, for every check) finds its mailboxes
    loaded; a warm SELECT then reads neither the index nor the directory.
    """

    def __init__(self, make: Callable[[str], _A], *, keep: int = 64) -> None:
        self._make = make
        self._open: weakref.WeakValueDictionary[str, _A] = weakref.WeakValueDictionary()
        self._recent: collections.OrderedDict[str, _A] = collections.OrderedDict()
        self._keep = keep
        self._lock = threading.Lock()

    def get(self, address: str) -> _A:
        """The account of the canonical ``address``, made (with its directories) if absent."""
        with self._lock:
            account = self._open.get(address)
            if account is None:
                account = self._open[address] = self._make(address)
            self._recent[address] = account
            self._recent.move_to_end(address)
            while len(self._recent) > self._keep:
                self._recent.popitem(last=False)
            return account

    def open_for_login(self, address: str) -> _A:
        """The account of a user who just logged in, with its special-use mailboxes."""
        account = self.get(address)
        account.provision()
        return account


def maildir_accounts(mail_root: Path, events: EventSink | None = None) -> Accounts[Account]:
    """The Maildir accounts below ``mail_root`` (``<domain>/<local>/Maildir``).

    Their changes become events for ``events``, if given.
    """
    return Accounts(
        lambda address: Account(
            maildir_path(mail_root, address), reporter=ChangeReporter(events, address)
        )
    )


class _Renamable(Protocol):
    def create(self, name: str) -> None: ...

    def mailbox(self, name: str) -> MailboxLike: ...


def rename_inbox(account: _Renamable, new: str) -> None:
    """RFC 9051 §6.3.6: renaming INBOX moves its messages to ``new`` and leaves it empty."""
    account.create(new)
    inbox = account.mailbox(INBOX)
    inbox.refresh()
    target = account.mailbox(new)
    target.refresh()
    uids = list(inbox.uids)
    inbox.copy_to(uids, target)
    inbox.expunge(uids)
