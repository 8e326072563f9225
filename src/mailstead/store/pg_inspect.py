"""Looking into accounts in the cluster database from outside a session.

The ``[storage] backend = "postgresql"`` side of :mod:`mailstead.store.inspect`
(``mailstead mailbox``, ``mailstead user list``/``quota``): the same
:class:`~mailstead.store.pg_account.PgAccount` and ``PgMailbox`` objects the
IMAP server uses, so UIDs and flags are the ones clients see, and an expunge
here is committed with its modseq and announced to every node (NOTIFY) as
one made over IMAP.

Nothing is created for an address that has no mail yet: :func:`open_cluster_account`
answers None, as ``inspect.open_account`` does for a missing Maildir.
"""

from __future__ import annotations

from collections.abc import Sequence

from mailstead.pgsql.connect import DatabaseUnavailable, Pool, shared_pool
from mailstead.store.changes import NO_REPORTS, ChangeReporter
from mailstead.store.inspect import FolderSummary
from mailstead.store.pg_account import PgAccount
from mailstead.store.pg_rows import account_usage, autocommit
from mailstead.store.pg_schema import StoreUnavailable, ensure_schema
from mailstead.store.usage_columns import Usage

__all__ = ["cluster_pool", "cluster_totals", "cluster_usage", "open_cluster_account"]


def cluster_pool(dsn: str) -> Pool:
    """This process's pool for ``dsn``, with the store's tables made or checked.

    Raises :class:`~mailstead.store.pg_schema.StoreUnavailable` (one line,
    password redacted) when the database cannot be used.
    """
    try:
        pool = shared_pool(dsn)
    except DatabaseUnavailable as exc:
        raise StoreUnavailable(f"mail store: {exc}") from None
    ensure_schema(pool)
    return pool


def open_cluster_account(
    pool: Pool, address: str, *, reporter: ChangeReporter = NO_REPORTS
) -> PgAccount | None:
    """The account of the canonical ``address``, or None when nothing was ever stored for it.

    Its changes go to ``reporter`` (``message.expunged`` events, as from an
    IMAP session).
    """
    with autocommit(pool) as conn:
        row = conn.execute("SELECT 1 FROM mail_accounts WHERE address = ?", (address,)).fetchone()
    if row is None:
        return None  # PgAccount would make the account and its INBOX
    return PgAccount(pool, address, reporter=reporter)


def cluster_totals(pool: Pool, addresses: Sequence[str]) -> list[FolderSummary]:
    """Messages, unseen messages and octets of every mailbox of each of ``addresses``
    together (named ``*``, as ``inspect.account_totals``), in one query; zeros
    for an address with nothing stored."""
    with autocommit(pool) as conn:
        found = {
            str(address): FolderSummary("*", int(messages), int(unseen), int(octets))
            for address, messages, unseen, octets in conn.execute(
                "SELECT a.address, count(*),"
                " count(*) FILTER (WHERE NOT (? = ANY (string_to_array(m.flags, ' ')))),"
                " coalesce(sum(m.size), 0)"
                " FROM mail_messages m JOIN mail_mailboxes b ON b.id = m.mailbox"
                " JOIN mail_accounts a ON a.id = b.account"
                " WHERE a.address = ANY (?::text[]) GROUP BY a.address",
                ("\\Seen", list(addresses)),
            )
        }
    return [found.get(a, FolderSummary("*", 0, 0, 0)) for a in addresses]


def cluster_usage(pool: Pool, address: str) -> Usage:
    """What ``address`` uses (RFC 9208 STORAGE, MESSAGE), as the quota checks count it.

    Summed from the message rows at each call (``pg_rows.account_usage``):
    there are no counters to recount.
    """
    with autocommit(pool) as conn:
        return account_usage(conn, address)
