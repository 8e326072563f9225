"""The POP3 maildrop of an account in the cluster database.

RFC 1939 §8 asks for an exclusive lock on the maildrop for the whole
session, across every node: a lease on the account's row
(``pop3_holder``/``pop3_until``), renewed while the session reads and
released at its end. A node that dies holding it loses it when the lease
ends. IMAP sessions take no lock: they see a POP3 deletion as an EXPUNGE.

Each maildrop opens the account on its own (its own view of the INBOX),
as the Maildir one does, so the worker threads POP3 runs its storage
calls in never share a :class:`PgMailbox` with the event loop.
"""

from __future__ import annotations

import time
import uuid

from mailstead.events import EventSink
from mailstead.pgsql.connect import Pool
from mailstead.proto.pop3.maildrop import MaildropInUse
from mailstead.store.account import INBOX
from mailstead.store.changes import ChangeReporter
from mailstead.store.maildrop import MaildropView
from mailstead.store.pg_account import PgAccount
from mailstead.store.pg_rows import autocommit

__all__ = ["LEASE_SECONDS", "PgMaildrop", "PgMaildrops", "pg_maildrops"]

# Longer than a POP3 session may stay idle (POP3Limits.idle_timeout, 600 s;
# RFC 1939 §3: at least 10 minutes); renewed at half-time while it reads.
LEASE_SECONDS = 900.0


class PgMaildrop(MaildropView):
    """Owns one POP3 session's lease on an INBOX and its snapshot of the messages."""

    def __init__(self, account: PgAccount) -> None:
        self._account = account
        self._holder = uuid.uuid4().hex
        self._renewed = 0.0
        if not self._lease("pop3_holder IS NULL OR pop3_holder = ? OR pop3_until < now()"):
            raise MaildropInUse("Maildrop is locked by another POP3 session")
        try:
            super().__init__(account.mailbox(INBOX))
        except BaseException:
            self.close()
            raise

    def _lease(self, condition: str) -> bool:
        self._renewed = time.monotonic()
        with autocommit(self._account.pool) as conn:
            row = conn.execute(
                "UPDATE mail_accounts SET pop3_holder = ?,"
                " pop3_until = now() + make_interval(secs => ?)"
                f" WHERE id = ? AND ({condition}) RETURNING id",
                (self._holder, LEASE_SECONDS, self._account.id, self._holder),
            ).fetchone()
        return row is not None

    def read(self, index: int) -> bytes:
        if time.monotonic() - self._renewed > LEASE_SECONDS / 2:
            self._lease("pop3_holder = ?")
        # Bytes read ahead stay readable after an expunge elsewhere (for
        # IMAP, RFC 2180 §4.1); POP3 asks first whether the message is still there.
        self._inbox.refresh()
        return super().read(index)

    def close(self) -> None:
        with autocommit(self._account.pool) as conn:
            conn.execute(
                "UPDATE mail_accounts SET pop3_holder = NULL, pop3_until = NULL"
                " WHERE id = ? AND pop3_holder = ?",
                (self._account.id, self._holder),
            )


class PgMaildrops:
    """Opens leased maildrops (``OpenMaildrop`` for the POP3 service)."""

    def __init__(self, pool: Pool, events: EventSink | None = None) -> None:
        self._pool = pool
        self._events = events

    def open(self, address: str) -> PgMaildrop:
        reporter = ChangeReporter(self._events, address)
        return PgMaildrop(PgAccount(self._pool, address, reporter=reporter))


def pg_maildrops(pool: Pool, events: EventSink | None = None) -> PgMaildrops:
    """POP3 maildrops over the INBOXes in the cluster database."""
    return PgMaildrops(pool, events)
