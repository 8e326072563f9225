"""The mail store's tables in the cluster database (``[storage] backend = "postgresql"``).

What the SQLite index and the Maildir files keep for one account on one
node (store/index.py), kept here for every account and every node:
mailboxes with their counters, message rows, bodies, the expunge log for
QRESYNC, subscriptions and SORT/THREAD summaries. The tables belong to the
``store`` component of :func:`mailstead.pgsql.migrate.migrate`; a new
version is a new entry at the end of :data:`MIGRATIONS`, never an edit.

Every change to a mailbox's messages locks its ``mail_mailboxes`` row
(``UPDATE … RETURNING``) for the transaction, which is what makes UIDs and
modseqs ascend without gaps in commit order between nodes: RFC 9051
§2.3.1.1 (UIDs strictly ascending, never reused) and RFC 7162 §3.1
(modseqs never go backwards).
"""

from __future__ import annotations

import logging

from mailstead.pgsql.connect import DatabaseUnavailable, Pool
from mailstead.pgsql.migrate import SchemaTooNew, migrate
from mailstead.store.pg_search import ensure_text_index

__all__ = ["COMPONENT", "MIGRATIONS", "StoreUnavailable", "ensure_schema"]

COMPONENT = "store"

log = logging.getLogger("mailstead.store")

_VERSION_1 = (
    # One row per mail address that ever had a mailbox. The highest
    # UIDVALIDITY handed out stays when its mailbox is deleted, so a
    # mailbox created again under the name gets a higher one.
    """
    CREATE TABLE mail_accounts (
        id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        address          text NOT NULL UNIQUE,
        last_uidvalidity bigint NOT NULL DEFAULT 0,
        -- RFC 1939 §8: the POP3 session holding the maildrop, until a lease
        -- ends (a node that died holding it loses it then).
        pop3_holder      text,
        pop3_until       timestamptz
    )
    """,
    """
    CREATE TABLE mail_mailboxes (
        id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        account         bigint NOT NULL REFERENCES mail_accounts (id) ON DELETE CASCADE,
        name            text NOT NULL,            -- IMAP name, "/" separated, or "INBOX"
        special_use     text,                     -- RFC 6154 attribute, e.g. '\\Sent'
        uidvalidity     bigint NOT NULL,
        uidnext         bigint NOT NULL DEFAULT 1,
        highestmodseq   bigint NOT NULL DEFAULT 1,
        -- The expunge log was pruned up to this modseq (QRESYNC reloads below it).
        expunge_horizon bigint NOT NULL DEFAULT 0,
        -- RFC 3501 §2.3.2: messages from this UID on are \\Recent for the next
        -- session that claims them.
        recent_floor    bigint NOT NULL DEFAULT 1,
        -- The keywords used in the mailbox, in order of first use (FLAGS).
        keywords        text[] NOT NULL DEFAULT '{}',
        UNIQUE (account, name)
    )
    """,
    # Message bodies by SHA-256, shared by every copy with the same bytes
    # (the recipients of one delivery, COPY, the same APPEND twice). Removed by the garbage
    # collection once no message row names them and no session may still
    # read them (RFC 2180 §4.1: mail_orphans).
    """
    CREATE TABLE mail_bodies (
        hash bytea PRIMARY KEY,
        data bytea NOT NULL
    )
    """,
    """
    CREATE TABLE mail_messages (
        mailbox      bigint NOT NULL REFERENCES mail_mailboxes (id) ON DELETE CASCADE,
        uid          bigint NOT NULL,
        modseq       bigint NOT NULL,
        flags        text NOT NULL DEFAULT '',   -- space separated, e.g. '\\Seen $Forwarded'
        size         bigint NOT NULL,            -- octets with CRLF line ends (RFC822.SIZE)
        internaldate double precision NOT NULL,
        -- The copy's own first bytes (its trace headers: Return-Path,
        -- Delivered-To, Received), then the body every copy shares.
        head         bytea NOT NULL DEFAULT ''::bytea,
        body         bytea NOT NULL REFERENCES mail_bodies (hash),
        -- The staged copy's name (StoredAs), for telling a delivery's UID later.
        delivery     text,
        PRIMARY KEY (mailbox, uid)
    )
    """,
    "CREATE INDEX mail_messages_modseq ON mail_messages (mailbox, modseq)",
    "CREATE INDEX mail_messages_body ON mail_messages (body)",
    "CREATE UNIQUE INDEX mail_messages_delivery ON mail_messages (delivery)"
    " WHERE delivery IS NOT NULL",
    # RFC 7162 §3.2.5.2 QRESYNC: which UIDs went, at which modseq.
    """
    CREATE TABLE mail_expunged (
        mailbox bigint NOT NULL REFERENCES mail_mailboxes (id) ON DELETE CASCADE,
        uid     bigint NOT NULL,
        modseq  bigint NOT NULL,
        head    bytea,            -- for sessions not yet told (RFC 2180 §4.1)
        PRIMARY KEY (mailbox, uid)
    )
    """,
    "CREATE INDEX mail_expunged_modseq ON mail_expunged (mailbox, modseq)",
    # Bodies that lost a message row, and since when: collected once no
    # session may still read the expunged message (store/retention.py).
    """
    CREATE TABLE mail_orphans (
        body  bytea PRIMARY KEY,
        since timestamptz NOT NULL DEFAULT now()
    )
    """,
    "CREATE INDEX mail_orphans_since ON mail_orphans (since)",
    # RFC 9051 §6.3.7: names, which need not exist as mailboxes.
    """
    CREATE TABLE mail_subscriptions (
        account bigint NOT NULL REFERENCES mail_accounts (id) ON DELETE CASCADE,
        name    text NOT NULL,
        PRIMARY KEY (account, name)
    )
    """,
    # SORT/THREAD/OBJECTID summaries (proto/imap/summary.py): rebuildable.
    """
    CREATE TABLE mail_summaries (
        mailbox bigint NOT NULL REFERENCES mail_mailboxes (id) ON DELETE CASCADE,
        uid     bigint NOT NULL,
        value   bytea NOT NULL,
        PRIMARY KEY (mailbox, uid)
    )
    """,
)

_VERSION_2 = (
    # SEARCH's full-text rows (store/pg_search.py): the casefolded text of
    # each message, written by the first SEARCH that needs it; rebuildable,
    # and gone with the message. The trigram index on it needs extensions
    # the database may lack, so ensure_schema makes it outside this list.
    """
    CREATE TABLE mail_search (
        mailbox  bigint NOT NULL,
        uid      bigint NOT NULL,
        complete boolean NOT NULL,   -- false: cut or not decoded; every search reads it
        fields   text NOT NULL,      -- header field values, decoded (FROM, SUBJECT, HEADER …)
        text     text NOT NULL,      -- what BODY and TEXT compare with
        PRIMARY KEY (mailbox, uid),
        FOREIGN KEY (mailbox, uid) REFERENCES mail_messages (mailbox, uid) ON DELETE CASCADE
    )
    """,
    "CREATE INDEX mail_search_incomplete ON mail_search (mailbox, uid) WHERE NOT complete",
)

#: Migration *n* takes the store's tables from version *n − 1* to *n*.
MIGRATIONS: tuple[tuple[str, ...], ...] = (_VERSION_1, _VERSION_2)


class StoreUnavailable(OSError):
    """The mail store's database cannot be used (unreachable, or newer than this code).

    An ``OSError``, as a mail directory that cannot be opened is: ``serve``
    reports it in one line and stops.
    """


def ensure_schema(pool: Pool) -> int:
    """Create or upgrade the store's tables; how many migrations ran.

    Also makes SEARCH's trigram index if it is missing; where the database
    cannot (no ``pg_trgm``), one line says so and SEARCH reads every message.
    """
    try:
        with pool.connection() as conn:
            ran = migrate(conn, COMPONENT, MIGRATIONS)
            refused = ensure_text_index(conn)
    except (DatabaseUnavailable, SchemaTooNew) as exc:
        raise StoreUnavailable(f"mail store: {exc}") from None
    if refused is not None:
        log.warning("full-text search index unavailable, SEARCH reads every message: %s", refused)
    return ran
