"""The UID a delivered copy got in its INBOX, for ``message.received``.

Delivery does not index (a link into ``new/`` or an mbox append is all it
does, to stay fast), so a copy has no UID until some process looks at the
mailbox. The webhook dispatcher looks just before it sends the event:
:class:`DeliveredUids` asks the account index for the copy's key (the
Maildir base name, the mbox fingerprint: :class:`~.stored_as.StoredAs`)
and, if no process indexed it yet, indexes it there and then. UIDs are
precious, so they are only ever given out the one way every process gives
them out: in the index's write transaction, the key looked up first and
the next UID taken only if it is absent (as APPEND and every scan do).
Whichever process comes first, IMAP later reports the same UID.

A Maildir copy still in ``new/`` is indexed on its own (its row is the one
a scan would write); anything else (a file moved to ``cur/`` by another
program, an mbox message) goes through the mailbox's own refresh, the code
an IMAP SELECT runs. No UID is told for a copy that is gone (expunged
before the event went out, or never published: the delivery's process
died after committing the event) nor for an mbox message with a
byte-identical twin, where the index cannot tell the two apart.
"""

from __future__ import annotations

import collections
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mailstead.store.account import INBOX, Account, folder_name
from mailstead.store.index import AccountIndex, write
from mailstead.store.maildir import crlf_size
from mailstead.store.maildir_names import arrival_order, crlf_size_named, split_name
from mailstead.store.maildir_records import UNKNOWN_DATE
from mailstead.store.mbox_account import MboxAccount
from mailstead.store.stored_as import StoredAs

__all__ = ["DeliveredUids", "Uid"]

# Maildir++: the file that marks a folder below the INBOX (store/maildir.py).
_FOLDER_MARK = "maildirfolder"


@dataclass(frozen=True, slots=True)
class Uid:
    """Where IMAP shows a message: its mailbox, that mailbox's UIDVALIDITY, its UID."""

    mailbox: str
    uidvalidity: int
    uid: int


# Accounts kept open between lookups: their index connection, and the
# records of a mailbox that had to be refreshed.
_KEEP_OPEN = 32


class DeliveredUids:
    """Owns the account indexes opened to tell delivered copies' UIDs; thread-safe.

    Meant for one long-lived caller (the webhook outbox of a dispatcher),
    which keeps the most recently used accounts open.
    """

    def __init__(self, keep_open: int = _KEEP_OPEN) -> None:
        self._keep_open = keep_open
        self._lock = threading.Lock()
        self._accounts: collections.OrderedDict[tuple[str, str], Account | MboxAccount] = (
            collections.OrderedDict()
        )

    def find(self, copies: Sequence[StoredAs]) -> list[Uid | None]:
        """The UID of each copy in its mailbox, given now if nobody gave one yet;
        None where the copy is not (or no longer) there."""
        by_mailbox: dict[tuple[str, str], list[str]] = {}
        for copy in copies:
            by_mailbox.setdefault((copy.format, copy.path), []).append(copy.name)
        found: dict[tuple[str, str, str], Uid | None] = {}
        with self._lock:
            for (fmt, path), names in by_mailbox.items():
                if fmt == "postgresql":
                    continue  # told by the cluster store (store.pg_delivery.find_delivered)
                uids = self._maildir(path, names) if fmt == "maildir" else self._mbox(path, names)
                found.update(((fmt, path, name), uid) for name, uid in uids.items())
        return [found.get((c.format, c.path, c.name)) for c in copies]

    def close(self) -> None:
        with self._lock:
            while self._accounts:
                _, account = self._accounts.popitem()
                account.index.close()

    def _account(self, fmt: str, root: Path) -> Account | MboxAccount | None:
        """The account whose INBOX is at ``root``, opened once; None if it is gone."""
        key = (fmt, str(root))
        account = self._accounts.get(key)
        if account is None:
            # Opening an account makes missing directories: not for one deleted.
            if not (root / "cur" if fmt == "maildir" else root).is_dir():
                return None
            account = self._accounts[key] = Account(root) if fmt == "maildir" else MboxAccount(root)
            while len(self._accounts) > self._keep_open:
                _, evicted = self._accounts.popitem(last=False)
                evicted.index.close()
        self._accounts.move_to_end(key)
        return account

    def _maildir(self, path: str, names: list[str]) -> dict[str, Uid | None]:
        folder = Path(path)
        # The INBOX is the account's Maildir; other mailboxes are Maildir++
        # folders below it (mail the checks call junk goes to .Junk/).
        root, name = folder, INBOX
        if (folder / _FOLDER_MARK).exists():
            root, name = folder.parent, folder_name(folder.name) or ""
        account = self._account("maildir", root)
        if account is None or not name or not account.exists(name):
            return {}
        index = account.index
        state = index.ensure_mailbox(name)
        bases = {name: split_name(name)[0] for name in names}
        wanted = set(bases.values())
        uids = index.uids_by_key(state.id, wanted)
        if len(uids) < len(wanted):
            uids.update(_index_from_new(index, state.id, path, wanted - uids.keys()))
        if len(uids) < len(wanted):
            # Not in new/ as delivered: moved, or gone. The refresh an IMAP
            # SELECT runs finds it wherever it is.
            account.mailbox(name).refresh()
            uids = index.uids_by_key(state.id, wanted)
        return {
            file: Uid(name, state.uidvalidity, uids[base]) if base in uids else None
            for file, base in bases.items()
        }

    def _mbox(self, path: str, prints: list[str]) -> dict[str, Uid | None]:
        account = self._account("mbox", Path(path).parent)
        if account is None:
            return {}
        index = account.index
        state = index.ensure_mailbox(INBOX)
        keys = index.uids_by_key(state.id, prints, copies=True)
        if any(p not in keys for p in prints):
            # The append is not indexed yet: parse the file's new tail.
            account.mailbox(INBOX).refresh()
            keys = index.uids_by_key(state.id, prints, copies=True)
        found: dict[str, Uid | None] = {}
        for p in prints:
            twins = [k for k in keys if k.startswith(f"{p}#")]
            # An identical copy (a delivery repeated after a crash) may be
            # either one: better no UID than perhaps the other's.
            found[p] = Uid(INBOX, state.uidvalidity, keys[p]) if p in keys and not twins else None
        return found


def _index_from_new(
    index: AccountIndex, mailbox_id: int, root: str, bases: set[str]
) -> dict[str, int]:
    """Give the files ``new/<base>`` that have no UID yet the next UIDs, in arrival
    order; the UIDs of those found (in the index, or still in ``new/``).

    The rows are the ones :meth:`Mailbox._scan` writes for a file in
    ``new/``: no flags, the size from the name, the date read when needed.
    """
    found: dict[str, int] = {}
    with write(index, mailbox_id) as w:
        fresh: list[tuple[str, str, str]] = []
        for base in bases:
            uid = w.find(base)  # a scan may have indexed it since we looked
            if uid is not None:
                found[base] = uid
            elif os.path.exists(f"{root}/new/{base}"):
                fresh.append((base, f"new/{base}", ""))
        rows = []
        for base, location, _ in sorted(fresh, key=arrival_order):
            size = crlf_size_named(base)
            if size is None:
                try:
                    with open(f"{root}/{location}", "rb") as f:
                        size = crlf_size([f.read()])
                except FileNotFoundError:
                    continue
            rows.append((base, location, "", size, UNKNOWN_DATE))
        first = w.uidnext
        w.add_many(rows)
        found.update((row[0], first + i) for i, row in enumerate(rows))
    return found
