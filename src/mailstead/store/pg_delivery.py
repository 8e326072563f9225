"""Local delivery into the cluster database: a ``MailboxStore`` on PostgreSQL.

``stage`` does what may fail for ordinary reasons without a round trip
(joining the parts, hashing the body, counting the CRLF size); ``publish``
is one statement: the body (kept once per content, so the recipients of
one delivery share it), the INBOX's next UID and modseq, and the message
row, committed with ``synchronous_commit=on`` before it returns — before
the ``250`` (docs/durability.md). ``undo`` expunges the copy again, as an
IMAP EXPUNGE would, so a session that saw it is told.

Each copy's head (the trace headers the receiver puts before the body,
which name the recipient) is kept in its own row; the body after it is
the part every recipient shares.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Iterator, Sequence

import psycopg

from mailstead.durable import Buffer
from mailstead.pgsql.connect import DatabaseUnavailable, Pool
from mailstead.store.account import INBOX
from mailstead.store.delivered import Uid
from mailstead.store.maildir import crlf_size
from mailstead.store.pg_account import ensure_account, ensure_mailbox
from mailstead.store.pg_rows import (
    NewMessage,
    account_usage,
    add_messages,
    autocommit,
    body_hash,
    changes,
    expunge_rows,
)
from mailstead.store.stored_as import StoredAs
from mailstead.store.usage_columns import Usage

__all__ = ["PgMailStore", "PgStagedCopy", "StoreDatabaseError"]


class StoreDatabaseError(OSError):
    """The database failed a delivery step. An OSError, as a full disk is for
    the file stores, so the delivery transaction's callers (the receiver's
    451, local delivery's deferral and its discard of staged copies) treat
    both alike."""


@contextlib.contextmanager
def _database_errors() -> Iterator[None]:
    try:
        yield
    except (psycopg.Error, DatabaseUnavailable) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise StoreDatabaseError(f"mail database: {first}") from exc


def _bytes(part: Buffer) -> bytes:
    return part.tobytes() if isinstance(part, memoryview) else bytes(part)


class PgStagedCopy:
    """One message staged for one INBOX in the database (a ``StagedCopy``)."""

    def __init__(self, store: PgMailStore, address: str, new: NewMessage) -> None:
        self._store = store
        self._address = address
        self._new = new
        self._published: tuple[int, int] | None = None  # (mailbox id, UID)

    @property
    def stored_as(self) -> StoredAs:
        assert self._new.delivery is not None
        return StoredAs("postgresql", self._address, self._new.delivery)

    @property
    def uid(self) -> int | None:
        """The UID the copy got, once published."""
        return self._published[1] if self._published else None

    def publish(self) -> None:
        with _database_errors():
            self._published = self._store.add(self._address, self._new)

    def undo(self) -> None:
        if self._published is None:
            return
        mailbox_id, uid = self._published
        with _database_errors(), changes(self._store.pool) as (conn, announced):
            if expunge_rows(conn, mailbox_id, [uid])[0]:
                announced.append(mailbox_id)
        self._published = None

    def close(self) -> None:
        """Nothing is held: an unpublished copy was never sent to the database."""


class PgMailStore:
    """Delivers into the INBOXes kept in the cluster database; thread-safe."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        # INBOX ids by address: an INBOX is never deleted or replaced
        # (RENAME INBOX moves its messages, the row stays).
        self._inboxes: dict[str, int] = {}
        self._lock = threading.Lock()

    def stage(
        self,
        address: str,
        parts: Sequence[Buffer],
        envelope_sender: str,
        received_at: float,
    ) -> PgStagedCopy:
        """The copy, ready to publish; nothing is sent to the database yet.

        The last part is the body the recipients share; the parts before it
        are this copy's own head. The envelope sender is in the Return-Path
        header the caller prepends.
        """
        *head_parts, body_part = parts if parts else (b"",)
        body = _bytes(body_part)
        head = b"".join(_bytes(p) for p in head_parts)
        new = NewMessage(
            flags="",
            size=crlf_size(parts),
            internaldate=received_at,
            head=head,
            body=body_hash(body),
            data=body,
            delivery=uuid.uuid4().hex,
        )
        return PgStagedCopy(self, address, new)

    def deliver(
        self,
        address: str,
        parts: Sequence[Buffer],
        envelope_sender: str,
        received_at: float,
    ) -> None:
        """Store the message for ``address`` (both steps, for one copy)."""
        self.stage(address, parts, envelope_sender, received_at).publish()

    def add(self, address: str, new: NewMessage) -> tuple[int, int]:
        """Add ``new`` to ``address``'s INBOX, committed; (mailbox id, UID)."""
        with autocommit(self.pool) as conn:
            for _ in range(2):
                mailbox_id = self._inboxes.get(address)
                if mailbox_id is None:
                    account_id = ensure_account(conn, address)
                    mailbox_id, _ = ensure_mailbox(conn, account_id, INBOX)
                    with self._lock:
                        self._inboxes[address] = mailbox_id
                try:
                    uid, _ = add_messages(conn, mailbox_id, [new])
                except LookupError:  # the account was removed: make it again
                    with self._lock:
                        self._inboxes.pop(address, None)
                    continue
                return mailbox_id, uid
        raise OSError(f"the INBOX of {address} keeps vanishing")

    def usage(self, address: str) -> Usage:
        """What ``address``'s mailboxes hold together, for the quota checks at RCPT and DATA."""
        with autocommit(self.pool) as conn:
            return account_usage(conn, address)

    def find_delivered(self, copies: Sequence[StoredAs]) -> list[Uid | None]:
        """The UID each delivered copy has now (None: never published, or expunged).

        For ``message.received`` (store.delivered tells Maildir and mbox copies).
        """
        keys = [c.name for c in copies if c.format == "postgresql"]
        with autocommit(self.pool) as conn:
            found = {
                str(key): Uid(str(name), int(uidvalidity), int(uid))
                for key, name, uidvalidity, uid in conn.execute(
                    "SELECT m.delivery, b.name, b.uidvalidity, m.uid FROM mail_messages m"
                    " JOIN mail_mailboxes b ON b.id = m.mailbox"
                    " WHERE m.delivery = ANY(?::text[])",
                    (keys,),
                )
            }
        return [found.get(c.name) if c.format == "postgresql" else None for c in copies]
