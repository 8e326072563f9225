"""Where each account's mail lives below the mail root (docs/config.md, `[storage]`).

``local@domain`` maps to ``<mail_root>/<domain>/<local>/``; its Maildir INBOX
is ``Maildir/`` and its mbox INBOX is the file ``mbox`` in that directory.
Both parts of the address become path components, so each is checked before
it touches the file system: a local part like ``../../etc`` must never name
a directory outside the mail root.
"""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

from mailstead.addresses import AddressError, is_safe_local_part, split_address


class UnsafePathError(ValueError):
    """An address that cannot safely name a directory below the mail root."""


def _is_safe_domain(domain: str) -> bool:
    # Canonical domains are LDH labels or an address literal; this only has
    # to refuse what could escape or hide: separators, dot-names, controls.
    if not domain or domain.startswith(".") or "/" in domain or "\\" in domain:
        return False
    return all(unicodedata.category(c)[0] != "C" for c in domain)


def account_dir(mail_root: Path, address: str) -> Path:
    """``<mail_root>/<domain>/<local>`` for the canonical address ``local@domain``.

    Raises :class:`UnsafePathError` if either part is unsafe as a single path
    component. Nothing is created.
    """
    try:
        local, domain = split_address(address)
    except AddressError as exc:
        raise UnsafePathError(f"not an address: {address!r}") from exc
    if not is_safe_local_part(local):
        raise UnsafePathError(f"local part unsafe as a directory name: {local!r}")
    if not _is_safe_domain(domain):
        raise UnsafePathError(f"domain unsafe as a directory name: {domain!r}")
    path = mail_root / domain / local
    # Second line of defence: whatever the checks above missed, the result,
    # normalised, must be exactly <domain>/<local> below the root.
    rel = os.path.relpath(os.path.normpath(path), os.path.normpath(mail_root))
    if rel.split(os.sep) != [domain, local]:
        raise UnsafePathError(f"address escapes the mail root: {address!r}")
    return path


def maildir_path(mail_root: Path, address: str) -> Path:
    """The Maildir INBOX of ``address``: ``<mail_root>/<domain>/<local>/Maildir``."""
    return account_dir(mail_root, address) / "Maildir"


def mbox_path(mail_root: Path, address: str) -> Path:
    """The mbox INBOX of ``address``: ``<mail_root>/<domain>/<local>/mbox``."""
    return account_dir(mail_root, address) / "mbox"
