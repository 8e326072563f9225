"""``[storage]``: how local mailboxes are kept on disk."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from mailstead.config.reader import Reader, show

__all__ = ["StorageConfig", "StorageFormat", "load_storage"]

StorageFormat = Literal["maildir", "mbox"]


@dataclass(frozen=True, slots=True)
class StorageConfig:
    """How local mailboxes are stored on disk."""

    #: ``"maildir"`` (one file per message) or ``"mbox"`` (one file per folder).
    format: StorageFormat = "maildir"


def load_storage(r: Reader, data: Mapping[str, object]) -> StorageConfig:
    """The ``[storage]`` table of ``data``."""
    t = r.table(data, "storage", "", ("format",))
    fmt = r.string(t.get("format", "maildir"), "storage.format")
    if fmt not in ("maildir", "mbox"):
        r.fail("storage.format", f'expected "maildir" or "mbox", got {show(fmt)}')
    return StorageConfig(format="maildir" if fmt == "maildir" else "mbox")
