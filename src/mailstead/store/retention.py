"""What a mailbox keeps of expunged messages for the sessions not yet told.

RFC 2180 §4.1 and RFC 9051 §7.5.1: a session learns of an expunge only at
a command that allows an EXPUNGE response; until then it still numbers the
message and may FETCH, SEARCH or COPY it. So a mailbox keeps the record of
every message it saw expunged (by any session or process) for
:data:`RETAIN_SECONDS`, and a Maildir keeps the file, moved into ``tmp/``
where no reader looks, as long (:func:`retained_location`,
:class:`ExpungedFiles`).
"""

from __future__ import annotations

import collections
import os
import time
from collections.abc import Iterator, Mapping
from typing import Protocol, TypeVar

# Longer than RFC 9051 §5.4's 30-minute autologout: a session that has not
# sent a command that allows EXPUNGE for that long is gone, or in IDLE,
# where it was told at once.
RETAIN_SECONDS = 35 * 60
EXPUNGED_SUFFIX = ".expunged"
# Sweeping tmp/ lists the directory: at most this often per mailbox.
_SWEEP_EVERY = 60.0


class _Record(Protocol):
    uid: int


_R = TypeVar("_R", bound=_Record)


class Retained(Mapping[int, _R]):
    """Owns the records of one mailbox's recently expunged messages, by UID."""

    def __init__(self) -> None:
        self._records: dict[int, _R] = {}
        self._order: collections.deque[tuple[float, int]] = collections.deque()

    def __getitem__(self, uid: int) -> _R:
        return self._records[uid]

    def __iter__(self) -> Iterator[int]:
        return iter(self._records)

    def __len__(self) -> int:
        return len(self._records)

    def add(self, records: list[_R]) -> None:
        now = time.monotonic()
        for record in records:
            self._records[record.uid] = record
            self._order.append((now, record.uid))
        self.prune(now)

    def prune(self, now: float | None = None) -> None:
        """Forget records older than :data:`RETAIN_SECONDS`."""
        cut = (time.monotonic() if now is None else now) - RETAIN_SECONDS
        order = self._order
        while order and order[0][0] < cut:
            self._records.pop(order.popleft()[1], None)


def retained_location(location: str) -> str:
    """Where the file of an expunged message waits: ``tmp/<base>.expunged``.

    ``location`` is the message's ``cur/`` or ``new/`` location (or already
    its retained one); the base name never changes, so every process finds
    the file from what it last knew.
    """
    if location.startswith("tmp/"):
        return location
    base = location.partition("/")[2].partition(":")[0]
    return f"tmp/{base}{EXPUNGED_SUFFIX}"


class ExpungedFiles:
    """Removes one Maildir folder's retained files once they are old enough."""

    def __init__(self, tmp_dir: str) -> None:
        self._tmp = tmp_dir
        self._swept = -1e9

    def sweep(self) -> None:
        now = time.monotonic()
        if now - self._swept < _SWEEP_EVERY:
            return
        self._swept = now
        # rename(2) sets the ctime: the moment the message was expunged.
        cut = time.time() - RETAIN_SECONDS
        try:
            entries = os.scandir(self._tmp)
        except FileNotFoundError:
            return
        with entries:
            for entry in entries:
                if not entry.name.endswith(EXPUNGED_SUFFIX):
                    continue
                try:
                    if entry.stat().st_ctime < cut:
                        os.unlink(entry.path)
                except FileNotFoundError:
                    pass  # swept by another process


__all__ = ["RETAIN_SECONDS", "ExpungedFiles", "Retained", "retained_location"]
