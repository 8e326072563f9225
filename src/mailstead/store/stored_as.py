"""Where a delivered copy went, named the way the account index will know it.

Local delivery does not index: it links a file into ``new/`` or appends to
an mbox, and the UID is given when a process first looks at the mailbox.
A staged copy therefore names its place (:class:`StoredAs`) so that
whoever must tell its UID later (the webhook dispatcher, for
``message.received``) can find it: the Maildir file's base name, or the
mbox message's fingerprint, is the key the index files the message under.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

__all__ = ["StoredAs"]

StoreFormat = Literal["maildir", "mbox", "postgresql"]


@dataclass(frozen=True, slots=True)
class StoredAs:
    """One delivered copy: its mailbox and the name the account index will key it by.

    ``format`` ``"maildir"``: ``path`` is the Maildir folder (the account's
    INBOX, or a Maildir++ folder below it) and ``name`` the file's name in
    ``new/``. ``format`` ``"mbox"``:
    ``path`` is the INBOX mbox file and ``name`` the message's fingerprint
    (``mbox.fingerprint``). ``format`` ``"postgresql"``: ``path`` is the
    account's address and ``name`` the copy's delivery key in the cluster
    database (``store.pg_delivery``).
    """

    format: StoreFormat
    path: str
    name: str

    def encode(self) -> str:
        """A short JSON text for a database column (:meth:`decode` reads it back)."""
        return json.dumps([self.format, self.path, self.name], ensure_ascii=False)

    @classmethod
    def decode(cls, text: str) -> StoredAs | None:
        """The place :meth:`encode` wrote; None for anything else."""
        try:
            fmt, path, name = json.loads(text)
        except (ValueError, TypeError):
            return None
        if (
            fmt not in ("maildir", "mbox", "postgresql")
            or not isinstance(path, str)
            or not isinstance(name, str)
        ):
            return None
        return cls(fmt, path, name)
