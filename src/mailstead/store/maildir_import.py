"""Filling a new Maildir++ account from elsewhere, UIDs as they are.

``mailstead migrate --to maildir`` writes the cluster's mailboxes back out
as a node's files and index. Each message goes in through the mailbox's own
APPEND path (file to ``tmp/``, fsync, rename into ``cur/`` with its flag
letters and keywords, fsync, index row), with the index's UIDNEXT set to the
message's UID just before, so it gets the UID it had. Then the counters
clients cache are set as they were: UIDVALIDITY (before the mailbox is
opened), UIDNEXT, HIGHESTMODSEQ, every message's modseq and the expunge log
(RFC 9051 §2.3.1.1, RFC 7162 §3.1).

Only for a mailbox that is empty and that no other process uses: the
caller makes the account directory itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from mailstead.store.account import INBOX, Account
from mailstead.store.pg_import import ImportedMessage, MailboxCounters

__all__ = ["import_maildir_mailbox"]


def import_maildir_mailbox(
    account: Account,
    counters: MailboxCounters,
    messages: Iterable[ImportedMessage],
    expunged: Sequence[tuple[int, int]] = (),
) -> int:
    """Make mailbox ``counters.name`` of ``account`` hold ``messages`` (ascending UIDs)
    with the given counters; how many messages. Raises ``ValueError`` if the
    mailbox has messages already."""
    name = counters.name
    if name != INBOX and not account.exists(name):
        account.create(name)
    index = account.index
    state = index.ensure_mailbox(name)
    with index.transaction() as conn:
        (present,) = conn.execute(
            "SELECT count(*) FROM messages WHERE mailbox = ?", (state.id,)
        ).fetchone()
        if present:
            raise ValueError(f"mailbox {name!r} of {account.root} is not empty")
        # Before the mailbox is opened: it reads its UIDVALIDITY once.
        conn.execute(
            "UPDATE mailboxes SET uidvalidity = ? WHERE id = ?", (counters.uidvalidity, state.id)
        )
        (last,) = conn.execute("SELECT coalesce(max(value), 0) FROM last_uidvalidity").fetchone()
        conn.execute("DELETE FROM last_uidvalidity")
        conn.execute(
            "INSERT INTO last_uidvalidity (value) VALUES (?)",
            (max(int(last), counters.uidvalidity),),
        )
    box = account.mailbox(name)
    box.refresh()
    modseqs: list[tuple[int, int, int]] = []
    for msg in messages:
        with index.transaction() as conn:
            # The next APPEND takes this UID (MailboxWriter reads UIDNEXT from the row).
            conn.execute("UPDATE mailboxes SET uidnext = ? WHERE id = ?", (msg.uid, state.id))
        uid = box.append(msg.data, msg.flags.split(), msg.internaldate)
        if uid != msg.uid:
            raise ValueError(f"mailbox {name!r}: message {msg.uid} got UID {uid}")
        modseqs.append((msg.modseq, state.id, msg.uid))
    with index.transaction() as conn:
        conn.executemany("UPDATE messages SET modseq = ? WHERE mailbox = ? AND uid = ?", modseqs)
        conn.execute(
            "UPDATE mailboxes SET uidnext = ?, highestmodseq = ?, recent_floor = ?,"
            " expunge_horizon = ? WHERE id = ?",
            (
                counters.uidnext,
                counters.highestmodseq,
                counters.recent_floor,
                counters.expunge_horizon,
                state.id,
            ),
        )
        conn.executemany(
            "INSERT OR REPLACE INTO expunged (mailbox, uid, modseq) VALUES (?, ?, ?)",
            [(state.id, uid, modseq) for uid, modseq in expunged],
        )
        # Records as of the appends' modseqs: the rows are the truth now.
        conn.execute("DELETE FROM snapshots WHERE mailbox = ?", (state.id,))
    return len(modseqs)
