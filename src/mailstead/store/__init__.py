"""Local mail storage: the INBOX of each account, in Maildir or mbox.

The delivery code sees only :class:`MailboxStore`; :func:`open_store` picks
the implementation named by ``[storage] format`` in the configuration. Paths
follow DESIGN.md §3: ``<mail_root>/<domain>/<local>/Maildir/`` or
``<mail_root>/<domain>/<local>/mbox``.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from mailstead.store.fsync import Buffer, make_dirs
from mailstead.store.maildir import Maildir
from mailstead.store.mbox import Mbox, MboxLockTimeout
from mailstead.store.paths import (
    UnsafePathError,
    account_dir,
    maildir_path,
    mbox_path,
)

__all__ = [
    "STORAGE_FORMATS",
    "Buffer",
    "MailboxStore",
    "Maildir",
    "MaildirStore",
    "Mbox",
    "MboxLockTimeout",
    "MboxStore",
    "UnsafePathError",
    "account_dir",
    "maildir_path",
    "mbox_path",
    "open_store",
]

STORAGE_FORMATS = ("maildir", "mbox")


class MailboxStore(Protocol):
    """Where local delivery puts a message for one account's INBOX."""

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


class MaildirStore:
    """Owns the Maildir INBOXes below ``mail_root``; makes each on first delivery."""

    def __init__(self, mail_root: Path) -> None:
        self.mail_root = Path(mail_root)
        self._lock = threading.Lock()
        # One Maildir per account, shared by all threads, so that concurrent
        # deliveries to one INBOX share its directory fsyncs.
        self._maildirs: dict[str, Maildir] = {}

    def maildir(self, address: str) -> Maildir:
        """The INBOX of ``address``, created (durably) if it does not exist."""
        md = self._maildirs.get(address)  # lock-free hit: dict reads are atomic
        if md is None:
            with self._lock:
                md = self._maildirs.get(address)
                if md is None:
                    md = Maildir(maildir_path(self.mail_root, address))
                    md.create()
                    self._maildirs[address] = md
        return md

    def deliver(
        self,
        address: str,
        parts: Sequence[Buffer],
        envelope_sender: str,
        received_at: float,
    ) -> None:
        """Deliver into ``<mail_root>/<domain>/<local>/Maildir/new/``.

        The envelope is not stored: Maildir has no place for it, and the
        Return-Path header the caller prepends carries the sender.
        """
        try:
            self.maildir(address).deliver(parts)
        except FileNotFoundError:
            # The INBOX was removed behind our back (an admin, a restore):
            # forget it, make it again and retry once.
            with self._lock:
                self._maildirs.pop(address, None)
            self.maildir(address).deliver(parts)


class MboxStore:
    """Owns the mbox INBOXes below ``mail_root``; makes each account directory on first use."""

    def __init__(
        self, mail_root: Path, *, lock_timeout: float = 30.0, stale_lock_age: float = 300.0
    ) -> None:
        self.mail_root = Path(mail_root)
        self._lock = threading.Lock()
        self._lock_timeout = lock_timeout
        self._stale_lock_age = stale_lock_age
        self._mboxes: dict[str, Mbox] = {}

    def mbox(self, address: str) -> Mbox:
        """The INBOX of ``address``; its directory is created (durably) if absent."""
        box = self._mboxes.get(address)  # lock-free hit: dict reads are atomic
        if box is None:
            with self._lock:
                box = self._mboxes.get(address)
                if box is None:
                    path = mbox_path(self.mail_root, address)
                    make_dirs(path.parent, mode=0o700)
                    box = Mbox(
                        path,
                        lock_timeout=self._lock_timeout,
                        stale_lock_age=self._stale_lock_age,
                    )
                    self._mboxes[address] = box
        return box

    def deliver(
        self,
        address: str,
        parts: Sequence[Buffer],
        envelope_sender: str,
        received_at: float,
    ) -> None:
        """Append to ``<mail_root>/<domain>/<local>/mbox`` (created 0600 if absent)."""
        try:
            self.mbox(address).deliver(parts, envelope_sender, received_at)
        except FileNotFoundError:
            # The account directory was removed behind our back: remake, retry once.
            with self._lock:
                self._mboxes.pop(address, None)
            self.mbox(address).deliver(parts, envelope_sender, received_at)


def open_store(fmt: str, mail_root: Path) -> MailboxStore:
    """The store for ``[storage] format`` (``"maildir"`` or ``"mbox"``)."""
    if fmt == "maildir":
        return MaildirStore(mail_root)
    if fmt == "mbox":
        return MboxStore(mail_root)
    raise ValueError(f"unknown storage format {fmt!r}; expected one of {STORAGE_FORMATS}")
