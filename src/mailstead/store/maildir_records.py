"""The in-memory record of each Maildir message, the index snapshot of them
all, and the file look-ups of a Maildir folder they need.

The internal date of a message another program put into the Maildir is its
file's mtime (as Dovecot reads it too). Asking for it when a client first
needs it, rather than a ``stat`` per file at the first scan, took a quarter
off the first SELECT of a 10,000-message folder.

A second process opening a large mailbox would read every index row
(20 ms at 10,000 messages); one snapshot blob of all records, written by the
process that last had them all, loads in 2 ms, and the rows changed since
its modseq come as in any pull.
"""

from __future__ import annotations

import marshal
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from mailstead.store.maildir_names import name_time
from mailstead.store.records import flag_tuple
from mailstead.store.retention import retained_location

# An internal date not read yet: the file's mtime, looked up at first use.
UNKNOWN_DATE = float("-inf")

# Mailboxes smaller than this load from their rows as fast as from a blob.
SNAPSHOT_MIN = 1000
_SNAPSHOT_FORMAT = 1
_READ_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)


class DateSource(Protocol):
    def file_date(self, msg: Message) -> float: ...


@dataclass(slots=True)
class Message:
    """One message of a mailbox as this process last saw it."""

    uid: int
    location: str  # "cur/<name>" or "new/<name>", relative to the folder
    flags: tuple[str, ...]  # sorted, interned: equal flag sets share one tuple
    size: int  # RFC822.SIZE: octets with CRLF line ends
    date: float  # the internal date, or UNKNOWN_DATE
    modseq: int
    folder: DateSource = field(compare=False, repr=False)

    @property
    def internaldate(self) -> float:
        if self.date == UNKNOWN_DATE:
            self.date = self.folder.file_date(self)
        return self.date


def encode_snapshot(messages: Iterable[Message]) -> bytes:
    """The records as one blob (the index's own data: marshal, checked on load)."""
    records = list(messages)
    texts = {flags: " ".join(flags) for flags in {msg.flags for msg in records}}
    return marshal.dumps(
        (
            _SNAPSHOT_FORMAT,
            [msg.uid for msg in records],
            [msg.location for msg in records],
            [texts[msg.flags] for msg in records],
            [msg.size for msg in records],
            [msg.date for msg in records],
            [msg.modseq for msg in records],
        )
    )


def decode_snapshot(data: bytes, folder: DateSource) -> dict[int, Message] | None:
    """The records of :func:`encode_snapshot`, in its order; None if unreadable
    (another Python's marshal format, a damaged row): then the rows are read."""
    try:
        version, uids, locations, flags, sizes, dates, modseqs = marshal.loads(data)
        if version != _SNAPSHOT_FORMAT:
            return None
        tuples = {text: flag_tuple(text) for text in set(flags)}
        return {
            uid: Message(uid, location, tuples[text], size, date, modseq, folder)
            for uid, location, text, size, date, modseq in zip(
                uids, locations, flags, sizes, dates, modseqs, strict=True
            )
        }
    except (EOFError, ValueError, TypeError):
        return None


def read_file(root: str, location: str) -> bytes:
    """The bytes of ``<root>/<location>``: one open, fstat and read (a Path
    join per message read cost more than the open)."""
    fd = os.open(f"{root}/{location}", _READ_FLAGS)
    try:
        size = os.fstat(fd).st_size
        chunks = []
        while size > 0:
            chunk = os.read(fd, size)
            if not chunk:
                break
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def files_as_known(root: str, messages: Iterable[Message]) -> bool:
    """True if ``<root>/new`` and ``<root>/cur`` hold exactly the files of ``messages``.

    A directory read and a set lookup per file: a fifth of a full scan,
    which also reads every index row and reconciles name by name.
    """
    try:
        listed = [f"new/{n}" for n in os.listdir(f"{root}/new") if not n.startswith(".")]
        listed += [f"cur/{n}" for n in os.listdir(f"{root}/cur") if not n.startswith(".")]
    except FileNotFoundError:
        return False
    known = {msg.location for msg in messages}
    return len(listed) == len(known) and all(location in known for location in listed)


def file_date(root: str, location: str, elsewhere: Callable[[], list[str]]) -> float:
    """The internal date of a message indexed without one: its file's mtime at
    ``location``, else at one of ``elsewhere()`` (asked only then) or where an
    expunged file waits; the time in its name once the file is gone."""

    def places() -> Iterator[str]:
        yield location
        others = elsewhere()
        yield from others
        yield retained_location(others[-1] if others else location)

    for where in places():
        try:
            return os.stat(f"{root}/{where}").st_mtime
        except FileNotFoundError:
            continue
    return name_time(location.partition("/")[2])
