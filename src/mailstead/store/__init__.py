"""Local mail storage: the INBOX of each account, in Maildir or mbox.

The delivery code sees only :class:`MailboxStore`; :func:`open_store` picks
the implementation named by ``[storage] format`` in the configuration, and
:func:`open_mail_store` every store the server needs (delivery, IMAP
accounts, POP3 maildrops) for ``[storage] backend``: these files, or the
cluster database (``store/pg_*.py``). Paths
follow docs/config.md: ``<mail_root>/<domain>/<local>/Maildir/`` or
``<mail_root>/<domain>/<local>/mbox``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from mailstead.durable import Buffer, Staged, make_dirs, publish_all
from mailstead.proto.pop3.maildrop import Maildrop
from mailstead.store.maildir import Maildir
from mailstead.store.mbox import Mbox, MboxLockTimeout
from mailstead.store.paths import (
    UnsafePathError,
    account_dir,
    maildir_path,
    mbox_path,
)
from mailstead.store.stored_as import StoredAs

if TYPE_CHECKING:
    from mailstead.config import Config
    from mailstead.events import EventSink
    from mailstead.store.account import Account, Accounts
    from mailstead.store.mbox_account import MboxAccount
    from mailstead.store.pg_account import PgAccount

__all__ = [
    "STORAGE_FORMATS",
    "Buffer",
    "MailStores",
    "MailboxStore",
    "Maildir",
    "MaildirStore",
    "MaildropOpener",
    "Mbox",
    "MboxLockTimeout",
    "MboxStore",
    "StagedCopy",
    "StoredAs",
    "UnsafePathError",
    "account_dir",
    "maildir_path",
    "mbox_path",
    "open_mail_store",
    "open_store",
]

STORAGE_FORMATS = ("maildir", "mbox")

_Box = TypeVar("_Box", Maildir, Mbox)


class StagedCopy(Staged, Protocol):
    """A message staged for one INBOX, and where it will be once published."""

    @property
    def stored_as(self) -> StoredAs:
        """Where the message goes: what tells its UID later (``store.delivered``)."""
        ...


class MailboxStore(Protocol):
    """Where local delivery puts a message for one account's INBOX.

    ``stage`` does the slow part (Maildir: write and fsync ``tmp/``; mbox:
    format the record) and returns a :class:`~mailstead.durable.Staged` copy
    that ``publish`` delivers; ``deliver`` is both steps for one copy.
    """

    def stage(
        self,
        address: str,
        parts: Sequence[Buffer],
        envelope_sender: str,
        received_at: float,
    ) -> StagedCopy:
        """Prepare ``parts`` (LF line endings) for ``address``'s INBOX; nothing visible yet.

        Raises like :meth:`deliver`.
        """
        ...

    def deliver(
        self,
        address: str,
        parts: Sequence[Buffer],
        envelope_sender: str,
        received_at: float,
    ) -> None:
        """Store the message ``parts`` (LF line endings) durably for ``address``.

        ``address`` is canonical (``addresses.canonical_address``). Raises
        :class:`UnsafePathError` for an address that cannot name a mailbox,
        ``OSError`` when the message could not be stored (a temporary failure).
        """
        ...


class _PerAccount(Generic[_Box]):
    """One mailbox object per account, made on first use and shared by all threads.

    Sharing matters: concurrent deliveries to one INBOX then share its
    directory fsyncs and its locks.
    """

    def __init__(self, make: Callable[[str], _Box]) -> None:
        self._make: Callable[[str], _Box] = make
        self._lock = threading.Lock()
        self._boxes: dict[str, _Box] = {}

    def get(self, address: str) -> _Box:
        box = self._boxes.get(address)  # lock-free hit: dict reads are atomic
        if box is None:
            with self._lock:
                box = self._boxes.get(address)
                if box is None:
                    box = self._boxes[address] = self._make(address)
        return box

    def stage(self, address: str, stage: Callable[[_Box], StagedCopy]) -> StagedCopy:
        try:
            return stage(self.get(address))
        except FileNotFoundError:
            # The account's directory was removed behind our back (an admin,
            # a restore): forget it, make it again and retry once.
            with self._lock:
                self._boxes.pop(address, None)
            return stage(self.get(address))


class MaildirStore:
    """Owns the Maildir INBOXes below ``mail_root``; makes each on first delivery."""

    def __init__(self, mail_root: Path) -> None:
        self.mail_root = Path(mail_root)
        self._accounts = _PerAccount(self._open)

    def _open(self, address: str) -> Maildir:
        md = Maildir(maildir_path(self.mail_root, address))
        md.create()
        return md

    def maildir(self, address: str) -> Maildir:
        """The INBOX of ``address``, created (durably) if it does not exist."""
        return self._accounts.get(address)

    def deliver(
        self,
        address: str,
        parts: Sequence[Buffer],
        envelope_sender: str,
        received_at: float,
    ) -> None:
        """Deliver into ``<mail_root>/<domain>/<local>/Maildir/new/``."""
        publish_all([self.stage(address, parts, envelope_sender, received_at)])

    def stage(
        self,
        address: str,
        parts: Sequence[Buffer],
        envelope_sender: str,
        received_at: float,
    ) -> StagedCopy:
        """A file in the INBOX's ``tmp/``, fsynced.

        The envelope is not stored: Maildir has no place for it, and the
        Return-Path header the caller prepends carries the sender.
        """
        return self._accounts.stage(address, lambda md: md.stage(parts))


class MboxStore:
    """Owns the mbox INBOXes below ``mail_root``; makes each account directory on first use."""

    def __init__(
        self, mail_root: Path, *, lock_timeout: float = 30.0, stale_lock_age: float = 300.0
    ) -> None:
        self.mail_root = Path(mail_root)
        self._lock_timeout = lock_timeout
        self._stale_lock_age = stale_lock_age
        self._accounts = _PerAccount(self._open)

    def _open(self, address: str) -> Mbox:
        path = mbox_path(self.mail_root, address)
        make_dirs(path.parent, mode=0o700)
        return Mbox(path, lock_timeout=self._lock_timeout, stale_lock_age=self._stale_lock_age)

    def mbox(self, address: str) -> Mbox:
        """The INBOX of ``address``; its directory is created (durably) if absent."""
        return self._accounts.get(address)

    def deliver(
        self,
        address: str,
        parts: Sequence[Buffer],
        envelope_sender: str,
        received_at: float,
    ) -> None:
        """Append to ``<mail_root>/<domain>/<local>/mbox`` (created 0600 if absent)."""
        publish_all([self.stage(address, parts, envelope_sender, received_at)])

    def stage(
        self,
        address: str,
        parts: Sequence[Buffer],
        envelope_sender: str,
        received_at: float,
    ) -> StagedCopy:
        """The mbox record, appended under the locks when published."""
        return self._accounts.stage(
            address, lambda box: box.stage(parts, envelope_sender, received_at)
        )


def open_store(fmt: str, mail_root: Path) -> MailboxStore:
    """The store for ``[storage] format`` (``"maildir"`` or ``"mbox"``)."""
    if fmt == "maildir":
        return MaildirStore(mail_root)
    if fmt == "mbox":
        return MboxStore(mail_root)
    raise ValueError(f"unknown storage format {fmt!r}; expected one of {STORAGE_FORMATS}")


class MaildropOpener(Protocol):
    """Opens one user's POP3 maildrop, locked (``proto.pop3.maildrop.OpenMaildrop``)."""

    def open(self, address: str) -> Maildrop: ...


@dataclass(frozen=True, slots=True)
class MailStores:
    """What the server reads and writes mail through, for one backend.

    ``delivery`` takes local delivery (SMTP, the queue), ``accounts`` opens
    the IMAP accounts, ``maildrops`` the POP3 ones.
    """

    delivery: MailboxStore
    accounts: Accounts[Account] | Accounts[MboxAccount] | Accounts[PgAccount]
    maildrops: MaildropOpener


def open_mail_store(config: Config, events: EventSink | None = None) -> MailStores:
    """The stores of ``[storage]``: SQLite + Maildir/mbox under ``data_dir``, or the
    cluster database (``backend = "postgresql"``, its tables created or upgraded here).

    Changes made over IMAP and POP3 become events for ``events``, if given.
    """
    if config.storage.backend == "postgresql":
        from mailstead.pgsql.connect import DatabaseUnavailable, shared_pool
        from mailstead.store.pg_account import pg_accounts
        from mailstead.store.pg_delivery import PgMailStore
        from mailstead.store.pg_maildrop import pg_maildrops
        from mailstead.store.pg_notify import shared_notices
        from mailstead.store.pg_schema import StoreUnavailable, ensure_schema

        try:
            pool = shared_pool(config.storage.dsn)
        except DatabaseUnavailable as exc:
            raise StoreUnavailable(f"mail store: {exc}") from None
        ensure_schema(pool)
        accounts = pg_accounts(pool, events, notices=shared_notices(config.storage.dsn))
        return MailStores(PgMailStore(pool), accounts, pg_maildrops(pool, events))
    from mailstead.store.account import maildir_accounts
    from mailstead.store.maildrop import maildir_maildrops
    from mailstead.store.mbox_account import mbox_accounts, mbox_maildrops

    delivery = open_store(config.storage.format, config.mail_root)
    if config.storage.format == "mbox":
        return MailStores(
            delivery,
            mbox_accounts(config.mail_root, events),
            mbox_maildrops(config.mail_root, events),
        )
    return MailStores(
        delivery,
        maildir_accounts(config.mail_root, events),
        maildir_maildrops(config.mail_root, events),
    )
