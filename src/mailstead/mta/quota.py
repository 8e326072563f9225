"""Over quota, mail waits: ``452 4.2.2 Mailbox full`` (RFC 3463 §3.3, RFC 5321 §4.2.3).

A user's limits (``mailstead user quota``) live in the directory; the usage
is read from the account's index (store/usage.py), or with ``[storage]
backend = "postgresql"`` summed in the cluster database
(``PgMailStore.usage``), so every node counts the same mail. The receiver asks twice:
at RCPT, whether the mailbox is already full (``incoming`` None: no room for
any message), and at DATA, whether this message would pass a limit. The
queue's local delivery asks the second question too. A 452 is temporary:
the sender retries, and a user who makes room gets the mail.

An account without limits costs nothing more: the recipient's lookup
(``Directory.resolve``) reads each mailbox's limits with it.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from mailstead.directory import Directory, Quota
from mailstead.proto.smtp.replies import Reply
from mailstead.store import MailboxStore, MaildirStore, MboxStore, account_dir, maildir_path
from mailstead.store.usage import AccountUsage
from mailstead.store.usage_columns import Usage

__all__ = ["MAILBOX_FULL", "mailbox_full"]

MAILBOX_FULL = Reply(452, "4.2.2", "Mailbox full")

# Shared by every check of this process: it keeps index connections open.
_USAGE = AccountUsage()


def mailbox_full(
    directory: Directory,
    store: MailboxStore,
    address: str,
    incoming: int | None = None,
    *,
    quota: Quota | None = None,
) -> bool:
    """True if ``address``'s mailbox cannot take a message of ``incoming`` octets
    (None: of any size; the mailbox is at or over a limit already). ``quota``:
    the limits as the recipient's lookup read them (else asked here)."""
    if quota is None:
        quota = directory.quota(address)
    if quota.unlimited:
        return False
    usage = _usage(store, address)
    if usage is None:
        return False
    extra_octets, extra_messages = (0, 0) if incoming is None else (incoming, 1)
    if quota.storage is not None:
        octets = usage.octets + extra_octets
        if octets > quota.storage or (incoming is None and octets >= quota.storage):
            return True
    if quota.messages is not None:
        messages = usage.messages + extra_messages
        if messages > quota.messages or (incoming is None and messages >= quota.messages):
            return True
    return False


@runtime_checkable
class _CountsUsage(Protocol):
    """A store that sums an account's usage itself (the cluster database's)."""

    def usage(self, address: str) -> Usage: ...


def _usage(store: MailboxStore, address: str) -> Usage | None:
    """What the account uses; None for a store kept elsewhere (a test's fake)."""
    if isinstance(store, MaildirStore):
        return _USAGE.maildir(maildir_path(store.mail_root, address))
    if isinstance(store, MboxStore):
        return _USAGE.mbox(account_dir(store.mail_root, address))
    if isinstance(store, _CountsUsage):
        return store.usage(address)
    return None
