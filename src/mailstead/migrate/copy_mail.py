"""The mail's part of a migration: one mailbox per transaction, UIDs as they are.

Each mailbox goes into the cluster's tables with its UIDVALIDITY, UIDNEXT,
HIGHESTMODSEQ, expunge log and every message's UID, modseq, flags and
internal date (:mod:`mailstead.store.pg_import`), together with the
account's subscriptions and highest UIDVALIDITY and the mailbox's
progress row: committed whole, or not at all.
"""

from __future__ import annotations

from collections.abc import Iterator

from mailstead.migrate.local_mail import LocalAccount, LocalMailbox, local_messages
from mailstead.migrate.progress import Progress
from mailstead.migrate.state import Unit, mark_done
from mailstead.migrate.verify import Digest
from mailstead.pgsql.compat import Connection
from mailstead.store.pg_import import (
    ImportedMessage,
    import_mailbox,
    import_subscriptions,
    raise_last_uidvalidity,
)

__all__ = ["copy_mailbox", "mailbox_unit"]


def mailbox_unit(mailbox: LocalMailbox) -> Unit:
    return Unit("mailbox", mailbox.address, mailbox.counters.name)


def copy_mailbox(
    conn: Connection,
    account: LocalAccount,
    mailbox: LocalMailbox,
    source: str,
    progress: Progress,
) -> int:
    """Copy ``mailbox`` in the caller's transaction (``conn``); how many messages."""
    account_id = raise_last_uidvalidity(conn, account.address, account.last_uidvalidity())
    import_subscriptions(conn, account_id, account.subscriptions())
    digest = Digest()

    def counted() -> Iterator[ImportedMessage]:
        for msg in local_messages(mailbox.box):
            digest.add(msg)
            yield msg
            progress.advance(msg.size)

    import_mailbox(conn, account_id, mailbox.imported, counted())
    mark_done(conn, mailbox_unit(mailbox), source, digest.count, digest.hexdigest())
    return digest.count
