"""The mailboxes of one account in the cluster database (an ``AccountLike``).

The PostgreSQL sibling of :class:`mailstead.store.account.Account`: the
same names (INBOX, the RFC 6154 special-use mailboxes made at the first
login, "/" as the hierarchy separator), subscriptions and rules for
UIDVALIDITY, kept in ``mail_accounts``/``mail_mailboxes`` so that any node
serves any user. Each node keeps one :class:`PgAccount` per open account
(``Accounts``), and it one :class:`PgMailbox` per open mailbox.
"""

from __future__ import annotations

import contextlib
import threading

import psycopg

from mailstead.events import EventSink
from mailstead.pgsql.compat import Connection
from mailstead.pgsql.connect import Pool
from mailstead.proto.imap.storage import MailboxError
from mailstead.store.account import INBOX, SPECIAL_USE, Accounts, planned_rename, rename_inbox
from mailstead.store.changes import NO_REPORTS, ChangeReporter
from mailstead.store.pg_mailbox import PgMailbox
from mailstead.store.pg_notify import ChangeNotices
from mailstead.store.pg_rows import account_usage, autocommit, changes, transaction
from mailstead.store.usage_columns import Usage

__all__ = ["PgAccount", "ensure_account", "ensure_mailbox", "pg_accounts"]


def ensure_account(conn: Connection, address: str) -> int:
    """The id of ``address``'s account row, made if absent."""
    find = "SELECT id FROM mail_accounts WHERE address = ?"
    row = conn.execute(find, (address,)).fetchone()
    if row is None:
        # Looked up first: an insert that conflicts still uses up an id.
        row = (
            conn.execute(
                "INSERT INTO mail_accounts (address) VALUES (?) ON CONFLICT (address) DO NOTHING"
                " RETURNING id",
                (address,),
            ).fetchone()
            or conn.execute(find, (address,)).fetchone()
        )
    if row is None:  # deleted between the statements
        raise LookupError(f"the account {address} was removed meanwhile")
    return int(row[0])


def _new_uidvalidity(conn: Connection, account_id: int) -> int:
    # RFC 9051 §2.3.1.1: UIDVALIDITY must grow if a name is ever reused; the
    # clock, kept above every value handed out before, does that.
    (value,) = conn.execute(
        "UPDATE mail_accounts"
        " SET last_uidvalidity = GREATEST(extract(epoch FROM now())::bigint, last_uidvalidity + 1)"
        " WHERE id = ? RETURNING last_uidvalidity",
        (account_id,),
    ).fetchone() or (None,)
    if value is None:
        raise LookupError(f"account {account_id} no longer exists")
    return int(value)


def create_mailbox(conn: Connection, account_id: int, name: str) -> int | None:
    """Make mailbox ``name`` with a fresh UIDVALIDITY; its id, None if it exists.

    Runs in the caller's transaction, which the account row's lock
    (``_new_uidvalidity``) serialises with every other create of the account.
    """
    uidvalidity = _new_uidvalidity(conn, account_id)
    row = conn.execute(
        "INSERT INTO mail_mailboxes (account, name, special_use, uidvalidity)"
        " VALUES (?, ?, ?, ?) ON CONFLICT (account, name) DO NOTHING RETURNING id",
        (account_id, name, SPECIAL_USE.get(name), uidvalidity),
    ).fetchone()
    return int(row[0]) if row else None


def ensure_mailbox(conn: Connection, account_id: int, name: str) -> tuple[int, int]:
    """(id, UIDVALIDITY) of mailbox ``name``, made if absent (INBOX at first use)."""
    for _ in range(2):
        row = conn.execute(
            "SELECT id, uidvalidity FROM mail_mailboxes WHERE account = ? AND name = ?",
            (account_id, name),
        ).fetchone()
        if row is not None:
            return int(row[0]), int(row[1])
        with conn.raw.transaction():
            create_mailbox(conn, account_id, name)
    raise LookupError(f"mailbox {name!r} vanished as it was made")


class PgAccount:
    """Owns one account's mailboxes in the database as this process sees them."""

    def __init__(
        self,
        pool: Pool,
        address: str,
        *,
        reporter: ChangeReporter = NO_REPORTS,
        notices: ChangeNotices | None = None,
    ) -> None:
        self.pool = pool
        self.address = address
        self.reporter = reporter
        self.notices = notices
        with autocommit(pool) as conn:
            self.id = ensure_account(conn, address)
            ensure_mailbox(conn, self.id, INBOX)
        # Kept for the account's lifetime, as the SQLite account does.
        self._open: dict[str, PgMailbox] = {}
        self._lock = threading.Lock()
        self._provisioned = False

    def provision(self) -> None:
        """Make the special-use mailboxes that are missing (first login)."""
        if self._provisioned:
            return
        self._provisioned = True
        for name in SPECIAL_USE:
            if not self.exists(name):
                with contextlib.suppress(MailboxError):
                    self.create(name)
                    self.set_subscribed(name, True)

    @staticmethod
    def special_use(name: str) -> str | None:
        return SPECIAL_USE.get(name)

    def names(self) -> list[str]:
        """Every mailbox of the account, INBOX first."""
        with autocommit(self.pool) as conn:
            found = [
                str(name)
                for (name,) in conn.execute(
                    "SELECT name FROM mail_mailboxes WHERE account = ?", (self.id,)
                )
            ]
        return [INBOX, *sorted(n for n in found if n != INBOX)]

    def exists(self, name: str) -> bool:
        with autocommit(self.pool) as conn:
            return (
                conn.execute(
                    "SELECT 1 FROM mail_mailboxes WHERE account = ? AND name = ?", (self.id, name)
                ).fetchone()
                is not None
            )

    def mailbox(self, name: str) -> PgMailbox:
        """The open mailbox ``name``, shared with the other sessions of this process.

        Looked up each time: another node may have deleted, renamed or made
        the name again since (a new id, a new UIDVALIDITY).
        """
        with autocommit(self.pool) as conn:
            row = conn.execute(
                "SELECT id, uidvalidity FROM mail_mailboxes WHERE account = ? AND name = ?",
                (self.id, name),
            ).fetchone()
        with self._lock:
            box = self._open.get(name)
            if row is None:
                self._open.pop(name, None)
                raise MailboxError("Mailbox does not exist", "NONEXISTENT")
            if box is None or box.id != int(row[0]):
                box = PgMailbox(self.pool, int(row[0]), name, int(row[1]))
                box.reporter = self.reporter
                box.notices = self.notices
                self._open[name] = box
            return box

    def create(self, name: str) -> None:
        if name == INBOX:
            raise MailboxError("Mailbox already exists", "ALREADYEXISTS")
        with transaction(self.pool) as conn:
            made = create_mailbox(conn, self.id, name)
        if made is None:
            raise MailboxError("Mailbox already exists", "ALREADYEXISTS")
        self.reporter.created(name)

    def delete(self, name: str) -> None:
        if name == INBOX:
            raise MailboxError("INBOX cannot be deleted", "CANNOT")
        with changes(self.pool) as (conn, announced):
            # Its bodies wait as an expunge's do, for sessions not yet told.
            conn.execute(
                "INSERT INTO mail_orphans (body)"
                " SELECT DISTINCT m.body FROM mail_messages m JOIN mail_mailboxes b"
                " ON b.id = m.mailbox WHERE b.account = ? AND b.name = ?"
                " ON CONFLICT (body) DO UPDATE SET since = now()",
                (self.id, name),
            )
            gone = [
                int(box_id)
                for (box_id,) in conn.execute(
                    "DELETE FROM mail_mailboxes WHERE account = ? AND name = ? RETURNING id",
                    (self.id, name),
                )
            ]
            announced += gone  # sessions there are told BYE
        if not gone:
            raise MailboxError("Mailbox does not exist", "NONEXISTENT")
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
        try:
            with changes(self.pool) as (conn, announced):
                # UIDs, UIDVALIDITY and modseqs move along with the rows.
                announced += [
                    int(box_id)
                    for (box_id,) in conn.execute(
                        "UPDATE mail_mailboxes SET name = ? || substr(name, ?)"
                        " WHERE account = ? AND (name = ? OR substr(name, 1, ?) = ?)"
                        " RETURNING id",
                        (new, len(old) + 1, self.id, old, len(old) + 1, old + "/"),
                    )
                ]
        except psycopg.errors.UniqueViolation:
            raise MailboxError("Mailbox already exists", "ALREADYEXISTS") from None
        with self._lock:
            for name, _ in moves:
                self._open.pop(name, None)
        self.reporter.renamed(old, new)

    def subscriptions(self) -> set[str]:
        with autocommit(self.pool) as conn:
            return {
                str(name)
                for (name,) in conn.execute(
                    "SELECT name FROM mail_subscriptions WHERE account = ?", (self.id,)
                )
            }

    def set_subscribed(self, name: str, subscribed: bool) -> None:
        with autocommit(self.pool) as conn:
            if subscribed:
                conn.execute(
                    "INSERT INTO mail_subscriptions (account, name) VALUES (?, ?)"
                    " ON CONFLICT DO NOTHING",
                    (self.id, name),
                )
            else:
                conn.execute(
                    "DELETE FROM mail_subscriptions WHERE account = ? AND name = ?",
                    (self.id, name),
                )

    def quota_usage(self) -> Usage:
        """What every mailbox holds together (RFC 9208 STORAGE, MESSAGE)."""
        with autocommit(self.pool) as conn:
            return account_usage(conn, self.address)


def pg_accounts(
    pool: Pool, events: EventSink | None = None, *, notices: ChangeNotices | None = None
) -> Accounts[PgAccount]:
    """The accounts in the database; their changes become events for ``events``.

    ``notices``: the process's LISTEN connection, which IDLE waits on
    (without it, IDLE reads the database at every look).
    """
    return Accounts(
        lambda address: PgAccount(
            pool, address, reporter=ChangeReporter(events, address), notices=notices
        )
    )
