"""Keeping the full-text indexes up to date, in the background.

Why a thread in the IMAP-serving process rather than a process of its own:
the index matters only to SEARCH, the messages that need indexing are the
ones of mailboxes this process has open, and the process already knows when
they change (a SELECT opens one, a SEARCH finds messages above the mark).
Delivery, in whatever process, only writes the Maildir and the mailbox
index; it never waits for this. The thread runs at the lowest CPU priority
(``nice 19`` for the thread alone, on Linux) and indexes in batches of
:data:`~mailstead.store.search_index.BATCH` messages, taking turns between
mailboxes and resting between batches as long as each took
(:data:`PAUSE_SHARE`), so that the sessions of the process, which share its
GIL, keep most of the CPU. Until it catches up, SEARCH reads
the messages above the mark itself: the answer is the same, only slower.
Several worker processes may index one account at once: the marks keep the
work from being done twice (store/search_index.py).
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import threading
import time
from collections.abc import Container, Iterable
from pathlib import Path
from typing import Protocol

from mailstead.proto.imap.search_plan import Prefilter
from mailstead.store.index import INDEX_NAME
from mailstead.store.maildir_records import read_file
from mailstead.store.search_index import (
    SEARCH_INDEX_NAME,
    IndexSource,
    SearchIndex,
    SearchIndexUnavailable,
)

log = logging.getLogger(__name__)

TURN_BATCHES = 1
"""Batches one mailbox gets before the next waiting one has its turn."""
PAUSE_SHARE = 1.0
"""After each turn the thread sleeps this many times as long as the turn took:
at most half a CPU, and the sessions of this process get the GIL back."""


class AccountTextIndex:
    """One account's full-text index as its open mailboxes use it.

    Opens the database at first use; answers SEARCH's look-ups and asks the
    background indexer to catch up a mailbox that is behind.
    """

    def __init__(self, root: Path, indexer: BackgroundIndexer | None = None) -> None:
        self.root = Path(root)
        self.indexer = indexer if indexer is not None else BACKGROUND
        self._index: SearchIndex | None = None
        self._unavailable = False
        self._lock = threading.Lock()

    def search_index(self) -> SearchIndex | None:
        """The database, opened now if need be; None where SQLite lacks FTS5 trigrams."""
        with self._lock:
            if self._index is None and not self._unavailable:
                try:
                    self._index = SearchIndex(self.root / SEARCH_INDEX_NAME)
                except SearchIndexUnavailable as exc:
                    log.warning("full-text search index unavailable: %s", exc)
                    self._unavailable = True
            return self._index

    def candidates(
        self, mailbox_id: int, uidvalidity: int, folder: Path, prefilter: Prefilter
    ) -> Container[int] | None:
        """The UIDs that may match (store/search_index.py); the indexer is told
        to catch up whatever it has not indexed."""
        index = self.search_index()
        if index is None:
            return None
        self.indexer.kick(self, mailbox_id, folder)
        return index.candidates(mailbox_id, uidvalidity, prefilter)

    def catch_up(self, mailbox_id: int, folder: Path, *, batches: int = 0) -> bool:
        """Index what the mailbox gained and drop what it lost; True when done."""
        index = self.search_index()
        if index is None:
            return True
        root = str(folder)
        source = IndexSource(self.root / INDEX_NAME, lambda location: read_file(root, location))
        try:
            return index.catch_up(source, mailbox_id, batches=batches)
        finally:
            source.close()

    def rebuild(self, mailboxes: Iterable[tuple[int, Path]]) -> int:
        """Index ``(mailbox id, folder)`` anew, in the caller's thread; messages indexed."""
        index = self.search_index()
        if index is None:
            raise SearchIndexUnavailable("this SQLite has no FTS5 trigram tokenizer")
        index.clear()
        for mailbox_id, folder in mailboxes:
            self.catch_up(mailbox_id, folder)
        return index.count()

    def close(self) -> None:
        with self._lock:
            if self._index is not None:
                self._index.close()
                self._index = None


class CatchesUp(Protocol):
    """What :class:`BackgroundIndexer` catches up: an account's index (here), or a
    mailbox's rows in the cluster database (store/pg_search.py)."""

    def catch_up(self, mailbox_id: int, folder: Path, *, batches: int = 0) -> bool: ...


class BackgroundIndexer:
    """One daemon thread per process that catches up the mailboxes it is told of.

    :meth:`kick` is cheap and never blocks on the indexing: SEARCH and
    SELECT call it freely.
    """

    def __init__(self) -> None:
        self._waiting: collections.OrderedDict[tuple[int, int], tuple[CatchesUp, Path]] = (
            collections.OrderedDict()
        )
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._busy = 0

    def kick(self, account: CatchesUp, mailbox_id: int, folder: Path) -> None:
        """Have mailbox ``mailbox_id`` of ``account`` caught up soon."""
        with self._wake:
            self._waiting.setdefault((id(account), mailbox_id), (account, folder))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="search-indexer", daemon=True
                )
                self._thread.start()
            self._wake.notify()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is waiting or being indexed (tests, benchmarks)."""
        with self._wake:
            return self._wake.wait_for(lambda: not self._waiting and not self._busy, timeout)

    def _run(self) -> None:
        # Linux schedules threads as tasks: this lowers this thread alone.
        with contextlib.suppress(AttributeError, OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        while True:
            with self._wake:
                while not self._waiting:
                    self._wake.wait()
                key, (account, folder) = self._waiting.popitem(last=False)
                self._busy += 1
            done = True
            started = time.monotonic()
            try:
                done = account.catch_up(key[1], folder, batches=TURN_BATCHES)
            except Exception:  # a broken message or database must not stop the thread
                log.exception("full-text indexing of %s failed", folder)
            if not done:
                time.sleep((time.monotonic() - started) * PAUSE_SHARE)
            with self._wake:
                self._busy -= 1
                if not done:
                    self._waiting.setdefault(key, (account, folder))  # at the back: turns
                self._wake.notify_all()


BACKGROUND = BackgroundIndexer()
"""The indexer of this process."""
