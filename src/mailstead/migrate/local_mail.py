"""Reading a node's own mail (Maildir or mbox, with its SQLite index) for a copy.

Every mailbox is read through the account and mailbox objects the IMAP
server uses, brought up to date first (mail dropped into ``new/`` gets its
UID as a SELECT would give it), so the UIDs, flags and dates copied are
the ones clients have seen. The counters clients cache and the index
alone keeps (UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ, the expunge log, the
\\Recent floor, the highest UIDVALIDITY ever given) are read from the index.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mailstead.proto.imap.storage import MailboxLike
from mailstead.store.account import Account
from mailstead.store.inspect import open_account
from mailstead.store.mbox_account import INBOX_FILE, MAILBOX_DIR, MboxAccount
from mailstead.store.pg_import import ImportedMailbox, ImportedMessage, MailboxCounters

__all__ = [
    "LocalAccount",
    "LocalMailbox",
    "local_addresses",
    "local_messages",
    "open_local",
]

AnyAccount = Account | MboxAccount


def local_addresses(storage_format: str, mail_root: Path) -> list[str]:
    """Every address with a mail store below ``mail_root`` (``<domain>/<local>/``), sorted."""
    found = []
    if not mail_root.is_dir():
        return []
    for domain in sorted(os.listdir(mail_root)):
        domain_dir = mail_root / domain
        if domain.startswith(".") or not domain_dir.is_dir():
            continue
        for local in sorted(os.listdir(domain_dir)):
            home = domain_dir / local
            if storage_format == "mbox":
                present = (home / INBOX_FILE).is_file() or (home / MAILBOX_DIR).is_dir()
            else:
                present = (home / "Maildir" / "cur").is_dir()
            if present:
                found.append(f"{local}@{domain}")
    return found


@dataclass(frozen=True, slots=True)
class LocalMailbox:
    """One mailbox of the node, refreshed: its counters and its open object."""

    address: str
    counters: MailboxCounters
    expunged: tuple[tuple[int, int], ...]
    box: MailboxLike

    @property
    def octets(self) -> int:
        return sum(self.box.messages[uid].size for uid in self.box.uids)

    @property
    def imported(self) -> ImportedMailbox:
        return ImportedMailbox(self.counters, self.expunged)


class LocalAccount:
    """Owns one account of the node opened for reading: its mailboxes, subscriptions
    and the highest UIDVALIDITY it ever handed out."""

    def __init__(self, address: str, account: AnyAccount) -> None:
        self.address = address
        self.account = account

    def names(self) -> list[str]:
        return self.account.names()

    def subscriptions(self) -> list[str]:
        return sorted(self.account.subscriptions())

    def last_uidvalidity(self) -> int:
        with self.account.index.transaction() as conn:
            (value,) = conn.execute(
                "SELECT coalesce(max(value), 0) FROM last_uidvalidity"
            ).fetchone()
            (highest,) = conn.execute(
                "SELECT coalesce(max(uidvalidity), 0) FROM mailboxes"
            ).fetchone()
        return max(int(value), int(highest))

    def mailbox(self, name: str) -> LocalMailbox:
        box = self.account.mailbox(name)
        box.refresh()
        index = self.account.index
        with index.transaction() as conn:
            row = conn.execute(
                "SELECT id, recent_floor, expunge_horizon FROM mailboxes WHERE name = ?", (name,)
            ).fetchone()
            mailbox_id, floor, horizon = row
            expunged = tuple(
                (int(uid), int(modseq))
                for uid, modseq in conn.execute(
                    "SELECT uid, modseq FROM expunged WHERE mailbox = ? ORDER BY uid",
                    (mailbox_id,),
                )
            )
        counters = MailboxCounters(
            name=name,
            uidvalidity=box.uidvalidity,
            uidnext=box.uidnext,
            highestmodseq=box.highestmodseq,
            recent_floor=int(floor),
            expunge_horizon=int(horizon),
            keywords=tuple(box.keyword_names()),
        )
        return LocalMailbox(self.address, counters, expunged, box)

    def close(self) -> None:
        self.account.index.close()


def open_local(storage_format: str, mail_root: Path, address: str) -> LocalAccount | None:
    """The account of ``address`` on this node, None when it has no mail store."""
    account = open_account(storage_format, mail_root, address)
    return None if account is None else LocalAccount(address, account)


def local_messages(box: MailboxLike) -> Iterator[ImportedMessage]:
    """Every message of the (refreshed) mailbox with its bytes, by ascending UID.

    A message expunged by another program since the refresh is skipped:
    verification then reports the mailbox as changed.
    """
    for uid in list(box.uids):
        msg = box.messages.get(uid)
        if msg is None:
            continue
        try:
            data = box.read(uid)
        except FileNotFoundError:
            continue
        yield ImportedMessage(
            uid=uid,
            modseq=msg.modseq,
            flags=" ".join(sorted(set(msg.flags))),
            size=msg.size,
            internaldate=msg.internaldate,
            data=data,
        )
