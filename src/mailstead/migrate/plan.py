"""What a migration will copy, and whether it may: the refusals come first.

A copy is refused while a server uses the data directory (the ``serve``
lock of :mod:`mailstead.system.lock`, then the signs ``restore`` looks for:
another process with a file below it open, a listener answering), and when
the target already holds data for the accounts being copied that this
migration did not put there (a half-done run of *this* migration is its
own state, and is resumed instead).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from mailstead.backup.serving import serving_evidence
from mailstead.config import Config
from mailstead.migrate.local_mail import LocalAccount, local_addresses, open_local
from mailstead.migrate.state import Unit
from mailstead.pgsql.compat import Connection
from mailstead.pgsql.connect import DatabaseUnavailable, Pool, connect, open_pool
from mailstead.store.pg_import import account_id_of, mailbox_names
from mailstead.system.lock import running_pid

__all__ = [
    "MailPlan",
    "MigrationError",
    "check_mail_target",
    "local_mail",
    "open_database",
    "refuse_if_serving",
]


class MigrationError(Exception):
    """A migration that cannot be done as asked (one-line message)."""


def open_database(dsn: str) -> Pool:
    """A small pool on ``dsn``; an unreachable database is refused at once, in one
    line without the password (one direct attempt first: a pool retries until
    its timeout and hides libpq's reason)."""
    try:
        connect(dsn).close()
        return open_pool(dsn, max_size=2)
    except DatabaseUnavailable as exc:
        raise MigrationError(str(exc)) from None


def refuse_if_serving(config: Config) -> None:
    """Raise :class:`MigrationError` if a server seems to use ``config``'s data directory."""
    pid = running_pid(config.data_dir)
    if pid is not None:
        raise MigrationError(
            f"mailstead serve (pid {pid or 'unknown'}) uses {config.data_dir}; stop it first"
        )
    busy = serving_evidence(config)
    if busy is not None:
        raise MigrationError(
            f"{config.data_dir}: a server seems to be using it ({busy}); stop it first"
        )


@dataclass
class MailPlan:
    """The node's accounts, each with its mailboxes and their octets (RFC822.SIZE).

    Accounts are opened one at a time (:meth:`open`), so an installation of
    many accounts never holds all their indexes open at once.
    """

    storage_format: str
    mail_root: Path
    accounts: dict[str, dict[str, int]] = field(default_factory=dict)

    def mailbox_units(self) -> Iterator[tuple[Unit, int]]:
        """Every mailbox as a unit of the copy, with its octets."""
        for address, boxes in self.accounts.items():
            for name, octets in boxes.items():
                yield Unit("mailbox", address, name), octets

    @contextmanager
    def open(self, address: str) -> Iterator[LocalAccount]:
        """The account of ``address``, closed when the block ends."""
        account = open_local(self.storage_format, self.mail_root, address)
        if account is None:
            raise MigrationError(f"the mail of {address} vanished during the migration")
        try:
            yield account
        finally:
            account.close()


def local_mail(config: Config) -> MailPlan:
    """Every mailbox of every account below the mail root, brought up to date."""
    plan = MailPlan(config.storage.format, config.mail_root)
    for address in local_addresses(plan.storage_format, plan.mail_root):
        with plan.open(address) as account:
            plan.accounts[address] = {
                name: account.mailbox(name).octets for name in account.names()
            }
    return plan


def check_mail_target(conn: Connection, plan: MailPlan, done: set[Unit]) -> None:
    """Refuse when the target has mail of these accounts that this migration did not copy."""
    for address in plan.accounts:
        account_id = account_id_of(conn, address)
        if account_id is None:
            continue
        ours = {u.mailbox for u in done if u.kind == "mailbox" and u.account == address}
        theirs = [n for n in mailbox_names(conn, account_id) if n not in ours]
        if theirs or not ours:
            what = f"mailbox {theirs[0]!r}" if theirs else "an account row"
            raise MigrationError(
                f"the target already holds {what} of {address} that this migration"
                " did not copy; migrate into an empty database"
            )
