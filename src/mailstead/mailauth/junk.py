"""Delivery into an account's Junk folder, for mail the checks call junk.

The folder is the RFC 6154 ``\\Junk`` special-use mailbox every account gets
(``store/account.py``: ``Junk``), on disk the Maildir++ folder ``.Junk/``
below the INBOX; it is made here on first use if the account has not logged
in yet. The copy is staged like an INBOX copy (``tmp/``, fsynced) and
published with the others at commit.

mbox accounts keep their folders as files the IMAP server manages under its
own locks; for them junk mail goes to the INBOX, with the verdict in its
Authentication-Results field (docs/mailauth.md says so).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from mailstead.durable import Buffer
from mailstead.store import MailboxStore, MaildirStore, StagedCopy
from mailstead.store.account import folder_dir_name
from mailstead.store.maildir import Maildir, create_folder

__all__ = ["JUNK", "stage_junk"]

#: The special-use name of the folder (RFC 6154 \\Junk), as the store names it.
JUNK = "Junk"

_folders: dict[str, Maildir] = {}
_lock = threading.Lock()


def stage_junk(
    store: MailboxStore,
    address: str,
    parts: Sequence[Buffer],
    envelope_sender: str,
    received_at: float,
) -> StagedCopy:
    """Stage ``parts`` for ``address``'s Junk folder (the INBOX for mbox stores)."""
    if not isinstance(store, MaildirStore):
        return store.stage(address, parts, envelope_sender, received_at)
    inbox = store.maildir(address)  # makes the account's INBOX if it is new
    path = inbox.path / folder_dir_name(JUNK)
    key = str(path)
    with _lock:
        folder = _folders.get(key)
        if folder is None or not path.is_dir():
            create_folder(path, is_inbox=False)
            folder = _folders[key] = Maildir(path)
    return folder.stage(parts)
