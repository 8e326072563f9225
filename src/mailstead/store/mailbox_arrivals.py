"""New messages in a Maildir mailbox: APPEND and COPY, split into steps.

Each arrival is a :data:`~mailstead.proto.imap.storage.Staged` generator:
the steps that touch no shared state (writing and fsyncing the file, the
fsync of ``cur/``) are yielded to run off the event loop; the rename into
``cur/`` and the index commit that gives the UID run on it
(docs/durability.md). :class:`Arrivals` is :class:`~mailstead.store.mailbox.Mailbox`'s
base: it uses the mailbox's records and directory bookkeeping, declared
below, and adds nothing of its own to them.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager

from mailstead.durable import DirectorySyncer, unlink_quietly, write_all
from mailstead.proto.imap.storage import (
    Appender,
    FlagLimitError,
    Staged,
    StagedChanges,
    run_here,
)
from mailstead.store.index import AccountIndex, write
from mailstead.store.maildir import NO_HARD_LINKS, crlf_size, unique_name
from mailstead.store.maildir_names import Keywords
from mailstead.store.maildir_records import Message
from mailstead.store.retention import Retained

__all__ = ["Arrivals"]

# A file made durable in cur/ and waiting for its UID: its base name,
# location, flag text, RFC822.SIZE and internal date (None: now).
_Arrival = tuple[str, str, str, int, float | None]


class Arrivals:
    """APPEND and COPY into one Maildir folder (the base of ``Mailbox``)."""

    # What the mailbox keeps (store/mailbox.py).
    index: AccountIndex
    id: int
    keywords: Keywords
    messages: dict[int, Message]
    retained: Retained[Message]
    _root: str
    _cur_sync: DirectorySyncer
    _changing_files: Callable[[], AbstractContextManager[None]]
    _pull: Callable[[], None]
    read: Callable[[int], bytes]

    def append(self, data: bytes, flags: Sequence[str], internaldate: float | None) -> int:
        """Store a new message (APPEND, COPY); its UID. Durable when this returns."""
        return run_here(self.append_staged(data, flags, internaldate))

    def append_staged(
        self, data: bytes, flags: Sequence[str], internaldate: float | None
    ) -> Staged[int]:
        """:meth:`append` as :data:`Staged` steps: write the file to ``tmp/`` and
        fsync it (off the loop), rename it into ``cur/`` (on it), fsync
        ``cur/`` (off it), then the durable index commit that gives the UID.

        What other sessions may see in between: until the rename, nothing.
        After it, ``cur/`` has a file no record knows. A refresh in this
        process takes the directories as it left them
        (:meth:`_changing_files`), one in another process as an arrival in
        flight (:meth:`refresh`): neither scans, for a dirty window at most.
        A scan after that indexes the file itself, with a durable commit,
        and :meth:`_index_new` then finds that UID. Either way a UID reaches
        :attr:`messages`, and so any session, only after the durable commit
        that gave it (SQLite shows a FULL commit to readers only once it is
        synced), and this APPEND's OK comes only after that commit and the
        fsyncs of the file and of ``cur/`` (docs/durability.md).
        """
        letters = self.keywords.letters(sorted(set(flags)))
        if letters is None:
            raise FlagLimitError()
        size = crlf_size([data])
        base = f"{unique_name()},S={len(data)},W={size}"
        tmp = f"{self._root}/tmp/{base}"
        location = f"cur/{base}:2,{letters}"
        yield functools.partial(_write_new, tmp, data, internaldate)
        try:
            with self._changing_files():
                os.rename(tmp, f"{self._root}/{location}")
        except BaseException:
            unlink_quietly(tmp)
            raise
        yield self._cur_sync.sync
        flag_text = " ".join(sorted(set(flags)))
        return self._index_new([(base, location, flag_text, size, internaldate)])[0]

    def _index_new(self, arrivals: list[_Arrival]) -> list[int]:
        """The UIDs of files made durable in ``cur/``, in one durable commit."""
        uids = []
        with write(self.index, self.id) as w:
            for base, location, flags, size, internaldate in arrivals:
                uid = w.find(base)
                if uid is None:  # a concurrent scan may have indexed it already
                    when = internaldate if internaldate is not None else time.time()
                    uid = w.add(base, location, flags, size, when)
                uids.append(uid)
        self._pull()
        return uids

    def _link_staged(self, sources: list[tuple[str, Message]]) -> Staged[list[int | None]]:
        """COPY into this mailbox by hard links to the sources' files, whose
        content never changes (as Dovecot copies): no second write and fsync
        of the data, and one fsync of ``cur/`` (off the loop) and one index
        commit for them all. None for a file that moved meanwhile, or where
        the file system has no hard links."""
        names = [self.keywords.letters(sorted(msg.flags)) for _, msg in sources]
        if None in names:
            raise FlagLimitError()  # before any link: a COPY all or none
        arrivals: list[_Arrival | None] = []
        with self._changing_files():
            for (source, msg), letters in zip(sources, names, strict=True):
                when = msg.internaldate  # the source's date, before the file can go
                try:
                    base = f"{unique_name()},S={os.stat(source).st_size},W={msg.size}"
                    location = f"cur/{base}:2,{letters}"
                    os.link(source, f"{self._root}/{location}")
                except FileNotFoundError:
                    arrivals.append(None)
                    continue
                except OSError as exc:
                    if exc.errno not in NO_HARD_LINKS:
                        raise
                    arrivals.append(None)
                    continue
                arrivals.append((base, location, " ".join(msg.flags), msg.size, when))
        linked = [a for a in arrivals if a is not None]
        if not linked:
            return [None] * len(arrivals)
        yield self._cur_sync.sync
        uids = iter(self._index_new(linked))
        return [None if a is None else next(uids) for a in arrivals]

    def copy_to(self, uids: Iterable[int], dest: Appender) -> list[tuple[int, int]]:
        """Copy messages into ``dest`` keeping flags and dates; (source, new) UID pairs."""
        return run_here(self.copy_staged(uids, dest))

    def copy_staged(self, uids: Iterable[int], dest: Appender) -> Staged[list[tuple[int, int]]]:
        """:meth:`copy_to` as :data:`Staged` steps: into a Maildir mailbox by
        hard links (:meth:`_link_staged`), else as appends."""
        # RFC 2180 §4.4.1: a message expunged elsewhere is still copied.
        found = [
            (uid, msg)
            for uid in uids
            if (msg := self.messages.get(uid) or self.retained.get(uid)) is not None
        ]
        new: list[int | None] = [None] * len(found)
        if isinstance(dest, Arrivals) and found:
            sources = [(f"{self._root}/{msg.location}", msg) for _, msg in found]
            new = yield from dest._link_staged(sources)
        pairs = []
        for (uid, msg), made in zip(found, new, strict=True):
            if made is None:
                try:
                    data = self.read(uid)  # finds a file moved meanwhile
                except FileNotFoundError:
                    continue
                if isinstance(dest, StagedChanges):
                    made = yield from dest.append_staged(data, msg.flags, msg.internaldate)
                else:
                    made = dest.append(data, msg.flags, msg.internaldate)
            pairs.append((uid, made))
        return pairs


def _write_new(tmp: str, data: bytes, internaldate: float | None) -> None:
    """Write a new message to ``tmp/`` and fsync it; off the event loop, as it
    touches no shared state. Nothing is left behind if it fails."""
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        try:
            write_all(fd, [data])
            if internaldate is not None:
                os.utime(fd, (internaldate, internaldate))
            os.fsync(fd)  # after utime: it makes the date durable too
        finally:
            os.close(fd)
    except BaseException:
        unlink_quietly(tmp)
        raise
