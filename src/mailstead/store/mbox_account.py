"""The mailboxes of one account in mbox mode: one mbox file per mailbox, one index.

Layout below the account directory ``<data_dir>/mail/<domain>/<local>/``
(docs/config.md):

* INBOX is the file ``mbox`` (where the MDA delivers);
* every other mailbox is a file below ``mail/``, each ``/`` level a
  directory: ``Work/Projects`` is ``mail/Work/Projects``. Name components are
  in modified UTF-7 on disk, as Dovecot writes them. A mailbox is a file, so
  it cannot have children, and a name with children is a directory, not a
  mailbox: CREATE of ``a/b`` when ``a`` is a mailbox is refused
  (``[CANNOT]``), and so are children of INBOX;
* the index is ``mailstead-index.sqlite3`` (:mod:`mailstead.store.index`).

Files beside the mailboxes that are not mailboxes: dotlocks (``<name>.lock``)
and the temporary file of an EXPUNGE (``.<name>.tmp``); names that would
collide with them (a level ending in ``.lock`` or starting with ``.``) are
refused. Every path is checked to stay below ``mail/``.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from mailstead.durable import fsync_dir, make_dirs
from mailstead.events import EventSink
from mailstead.proto.imap.mailbox_names import MAX_LEVELS
from mailstead.proto.imap.storage import MailboxError
from mailstead.proto.imap.utf7 import decode_mutf7, encode_mutf7
from mailstead.store.account import INBOX, AccountBase, Accounts, rename_inbox
from mailstead.store.changes import NO_REPORTS, ChangeReporter
from mailstead.store.index import MailboxState
from mailstead.store.maildrop import Maildrops
from mailstead.store.mbox import Mbox
from mailstead.store.mbox_format import create_mbox, hold_locks
from mailstead.store.mbox_mailbox import MboxMailbox
from mailstead.store.paths import account_dir

MAILBOX_DIR = "mail"
INBOX_FILE = "mbox"
# Room for the ".lock" a dotlock adds within NAME_MAX (255 bytes).
_MAX_COMPONENT = 200


def _component(part: str) -> str:
    """One name level as a file name; ``MailboxError`` if it is unsafe or reserved."""
    try:
        encoded = encode_mutf7(part)
    except ValueError:
        raise MailboxError("Invalid mailbox name", "CANNOT") from None
    if (
        not part
        or part.startswith(".")
        or part.endswith(".lock")
        or "/" in encoded
        or any(ord(c) < 0x20 or ord(c) == 0x7F for c in part)
        or len(encoded.encode()) > _MAX_COMPONENT
    ):
        raise MailboxError("Invalid mailbox name", "CANNOT")
    return encoded


class MboxAccount(AccountBase[MboxMailbox]):
    """Owns one account's mbox files, its index and the open :class:`MboxMailbox` objects."""

    def __init__(self, root: Path, *, reporter: ChangeReporter = NO_REPORTS) -> None:
        make_dirs(Path(root), mode=0o700)
        super().__init__(root, reporter=reporter)
        self.mail_dir = self.root / MAILBOX_DIR

    def _new_mailbox(self, state: MailboxState, path: Path) -> MboxMailbox:
        return MboxMailbox(self.index, state, path)

    def path_of(self, name: str) -> Path:
        """The file of mailbox ``name`` (INBOX: ``mbox``); ``MailboxError`` if unsafe."""
        if name == INBOX:
            return self.root / INBOX_FILE
        parts = name.split("/")
        if len(parts) > MAX_LEVELS:
            raise MailboxError("Mailbox hierarchy too deep", "CANNOT")
        if parts[0].upper() == INBOX:
            raise MailboxError("INBOX cannot have child mailboxes", "CANNOT")
        path = self.mail_dir.joinpath(*(_component(p) for p in parts))
        # Second line of defence: the result stays below mail/.
        rel = os.path.relpath(os.path.normpath(path), os.path.normpath(self.mail_dir))
        if rel.startswith("..") or os.path.isabs(rel) or rel == ".":
            raise MailboxError("Invalid mailbox name", "CANNOT")
        return path

    def exists(self, name: str) -> bool:
        if name == INBOX:
            return True
        try:
            return stat.S_ISREG(os.lstat(self.path_of(name)).st_mode)
        except (MailboxError, OSError):
            return False

    def names(self) -> list[str]:
        """Every mailbox of the account, INBOX first."""
        found: list[str] = []
        self._walk(self.mail_dir, [], found)
        return [INBOX, *sorted(found)]

    def _walk(self, directory: Path, prefix: list[str], found: list[str]) -> None:
        if len(prefix) >= MAX_LEVELS:
            return
        try:
            entries = list(os.scandir(directory))
        except (FileNotFoundError, NotADirectoryError):
            return
        for entry in entries:
            if entry.name.startswith(".") or entry.name.endswith(".lock"):
                continue
            try:
                part = decode_mutf7(entry.name)
            except ValueError:
                continue  # not a name we wrote
            if not prefix and part.upper() == INBOX:
                continue
            if entry.is_file(follow_symlinks=False):
                found.append("/".join([*prefix, part]))
            elif entry.is_dir(follow_symlinks=False):
                self._walk(Path(entry.path), [*prefix, part], found)

    def _check_parents(self, path: Path) -> None:
        """Every level above ``path`` must be a directory (or not exist yet)."""
        for parent in reversed(path.relative_to(self.mail_dir).parents):
            try:
                mode = os.lstat(self.mail_dir / parent).st_mode
            except FileNotFoundError:
                return
            if not stat.S_ISDIR(mode):
                raise MailboxError("An mbox mailbox cannot have child mailboxes", "CANNOT")

    def create(self, name: str) -> None:
        if name == INBOX or self.exists(name):
            raise MailboxError("Mailbox already exists", "ALREADYEXISTS")
        path = self.path_of(name)
        self._check_parents(path)
        if path.is_dir():
            raise MailboxError("That name holds other mailboxes", "CANNOT")
        make_dirs(path.parent, mode=0o700)

        def make() -> None:
            # Under the index's write lock, as for Maildir (account.py).
            try:
                create_mbox(path)
            except FileExistsError:
                raise MailboxError("Mailbox already exists", "ALREADYEXISTS") from None

        # A new mailbox under an old name must not reuse its UIDs (RFC 9051 §2.3.1.1).
        self.index.drop_mailbox(name, make)
        self.reporter.created(name)

    def delete(self, name: str) -> None:
        if name == INBOX:
            raise MailboxError("INBOX cannot be deleted", "CANNOT")
        path = self.path_of(name)
        if not self.exists(name):
            if path.is_dir() and not any(path.iterdir()):
                path.rmdir()  # a level left without mailboxes
                self._prune(path.parent)
                return
            if path.is_dir():
                # RFC 9051 §6.3.4: a \Noselect name with children stays.
                raise MailboxError("Delete the mailboxes below it first", "CANNOT")
            raise MailboxError("Mailbox does not exist", "NONEXISTENT")
        with hold_locks(Mbox(path)):  # not in the middle of an APPEND
            os.unlink(path)
        fsync_dir(path.parent)
        self._prune(path.parent)
        self.index.drop_mailbox(name)
        with self._lock:
            self._open.pop(name, None)
        self.reporter.deleted(name)

    def _prune(self, directory: Path) -> None:
        """Remove directories left empty up to ``mail/`` (best effort)."""
        while directory != self.mail_dir and self.mail_dir in directory.parents:
            try:
                directory.rmdir()
            except OSError:
                return
            fsync_dir(directory.parent)
            directory = directory.parent

    def rename(self, old: str, new: str) -> None:
        """RFC 9051 §6.3.6: children move along; renaming INBOX moves its messages."""
        if new == INBOX or self.exists(new):
            raise MailboxError("Mailbox already exists", "ALREADYEXISTS")
        if new.startswith(old + "/"):
            raise MailboxError("Cannot move a mailbox into itself", "CANNOT")
        if old == INBOX:
            rename_inbox(self, new)
            self.reporter.renamed(old, new)
            return
        src, dst = self.path_of(old), self.path_of(new)
        is_file = self.exists(old)
        if not is_file and not src.is_dir():
            raise MailboxError("Mailbox does not exist", "NONEXISTENT")
        self._check_parents(dst)
        if os.path.lexists(dst):
            raise MailboxError("Mailbox already exists", "ALREADYEXISTS")
        make_dirs(dst.parent, mode=0o700)
        if is_file:
            with hold_locks(Mbox(src)):
                os.rename(src, dst)
        else:
            os.rename(src, dst)  # a level: its mailboxes move along
        fsync_dir(dst.parent)
        if src.parent != dst.parent:
            fsync_dir(src.parent)
            self._prune(src.parent)
        self.index.rename_mailbox(old, new)
        with self._lock:
            for name in list(self._open.keys()):
                if name == old or name.startswith(old + "/"):
                    self._open.pop(name, None)
        self.reporter.renamed(old, new)


def mbox_accounts(mail_root: Path, events: EventSink | None = None) -> Accounts[MboxAccount]:
    """The mbox accounts below ``mail_root`` (``<domain>/<local>/mbox`` and ``mail/``).

    Their changes become events for ``events``, if given.
    """
    return Accounts(
        lambda address: MboxAccount(
            account_dir(mail_root, address), reporter=ChangeReporter(events, address)
        )
    )


def mbox_maildrops(mail_root: Path, events: EventSink | None = None) -> Maildrops:
    """POP3 maildrops over the mbox INBOXes below ``mail_root``.

    The mbox's own delivery locks are taken only for each read of the file,
    so mail keeps arriving during a POP3 session.
    """

    def locate(address: str) -> tuple[MboxAccount, Path]:
        root = account_dir(mail_root, address)
        return MboxAccount(root, reporter=ChangeReporter(events, address)), root

    return Maildrops(locate)
