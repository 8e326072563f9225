"""An account's usage as delivery sees it: the index's counters plus the mail not yet indexed.

Delivery does not index (store/delivered.py): a copy linked into ``new/``
gets its index row when some process next looks at the INBOX. The quota
check at RCPT and at DATA (mta/quota.py) must count those copies too, or an
account nobody reads would never fill up. So the usage of an account here is
the sum the index keeps (store/usage_columns.py) plus each file in the
INBOX's ``new/`` that has no row yet, its size read from its name (``,W=``,
which every Mailstead delivery writes) or else from ``stat``. Only ``new/``
is listed, never the messages: a reader moves what it has seen to ``cur/``.

For mbox accounts only the indexed messages count (an mbox append is
indexed at the next IMAP or POP3 look): docs/quirks.md.

The index is opened read-only (``mode=ro``); an account without one uses
nothing indexed. Connections are kept for the most recently checked
accounts, like the webhook dispatcher's.
"""

from __future__ import annotations

import collections
import contextlib
import os
import sqlite3
import threading
from pathlib import Path

from mailstead.store.index import INDEX_NAME, AccountIndex
from mailstead.store.maildir_names import crlf_size_named, split_name
from mailstead.store.paths import account_dir, maildir_path
from mailstead.store.usage_columns import Usage

__all__ = ["AccountUsage", "account_usage"]

_KEEP_OPEN = 32
# Keys looked up per query when counting new/.
_CHUNK = 500


class AccountUsage:
    """Owns read-only connections to account indexes, to tell their usage; thread-safe."""

    def __init__(self, keep_open: int = _KEEP_OPEN) -> None:
        self._keep_open = keep_open
        self._lock = threading.Lock()
        self._open: collections.OrderedDict[Path, sqlite3.Connection] = collections.OrderedDict()

    def maildir(self, inbox: Path) -> Usage:
        """The usage of the Maildir++ account whose INBOX is ``inbox``."""
        with self._lock:
            conn = self._connection(inbox / INDEX_NAME)
            indexed = _indexed(conn)
            waiting = _unindexed_new(conn, inbox / "new")
        return Usage(indexed.octets + waiting.octets, indexed.messages + waiting.messages)

    def mbox(self, account: Path) -> Usage:
        """The indexed usage of the mbox account in directory ``account``."""
        with self._lock:
            return _indexed(self._connection(account / INDEX_NAME))

    def close(self) -> None:
        with self._lock:
            for conn in self._open.values():
                conn.close()
            self._open.clear()

    def _connection(self, path: Path) -> sqlite3.Connection | None:
        conn = self._open.get(path)
        if conn is not None:
            self._open.move_to_end(path)
            return conn
        if not path.exists():
            return None  # nobody indexed the account yet; not kept, it may appear
        conn = sqlite3.connect(
            f"file:{path}?mode=ro", uri=True, timeout=30.0, check_same_thread=False
        )
        self._open[path] = conn
        while len(self._open) > self._keep_open:
            _, old = self._open.popitem(last=False)
            old.close()
        return conn


def _indexed(conn: sqlite3.Connection | None) -> Usage:
    if conn is None:
        return Usage(0, 0)
    try:
        octets, messages = conn.execute(
            "SELECT coalesce(sum(used_octets), 0), coalesce(sum(used_messages), 0) FROM mailboxes"
        ).fetchone()
    except sqlite3.OperationalError:
        # An index of schema 3 or older, not yet opened by this version.
        octets, messages = conn.execute(
            "SELECT coalesce(sum(size), 0), count(*) FROM messages"
        ).fetchone()
    return Usage(int(octets), int(messages))


def _unindexed_new(conn: sqlite3.Connection | None, new: Path) -> Usage:
    """The files in ``new/`` the INBOX's index has no row for."""
    try:
        with os.scandir(new) as entries:
            names = {split_name(entry.name)[0]: entry.name for entry in entries}
    except FileNotFoundError:
        return Usage(0, 0)
    names = {base: name for base, name in names.items() if not base.startswith(".")}
    if not names:
        return Usage(0, 0)
    known: set[str] = set()
    if conn is not None:
        row = conn.execute("SELECT id FROM mailboxes WHERE name = 'INBOX'").fetchone()
        keys = list(names)
        for start in range(0, len(keys) if row else 0, _CHUNK):
            chunk = keys[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            known.update(
                key
                for (key,) in conn.execute(
                    f"SELECT key FROM messages WHERE mailbox = ? AND key IN ({marks})",
                    (row[0], *chunk),
                )
            )
    octets = messages = 0
    for base, name in names.items():
        if base in known:
            continue
        size = crlf_size_named(base)
        if size is None:
            with contextlib.suppress(FileNotFoundError):  # read meanwhile: counted below
                size = os.stat(new / name).st_size
        if size is not None:
            octets += size
            messages += 1
    return Usage(octets, messages)


def account_usage(
    storage_format: str, mail_root: Path, address: str, *, recount: bool = False
) -> Usage:
    """What ``address`` uses, for ``mailstead user quota``; ``recount`` first sets
    the index's counters from its message rows."""
    mbox = storage_format == "mbox"
    root = account_dir(mail_root, address) if mbox else maildir_path(mail_root, address)
    if recount and (root / INDEX_NAME).exists():
        index = AccountIndex(root / INDEX_NAME)
        try:
            index.recount_usage()
        finally:
            index.close()
    reader = AccountUsage(keep_open=1)
    try:
        return reader.mbox(root) if mbox else reader.maildir(root)
    finally:
        reader.close()
