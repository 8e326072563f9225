"""An mbox file as the mailbox code sees it: boundaries, fingerprints, flags, locks.

A message starts with a ``From `` line at the start of the file or right
after a blank line; the ``From `` line and the blank line that ends the
message are not part of it. A ``From `` line inside a body that does not
follow a blank line is body text (mboxo writers leave such lines alone), and
every ``^>+From `` line loses one ``>`` when read (mboxrd).

Nothing here keeps state: :mod:`mailstead.store.mbox_mailbox` parses with
the file mapped while it holds the delivery locks (:func:`hold_locks`, the
same locks :class:`~mailstead.store.mbox.Mbox` takes to deliver).
"""

from __future__ import annotations

import calendar
import contextlib
import mmap
import os
import re
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

from mailstead.durable import fsync_dir, unlink_quietly, write_all
from mailstead.store.maildir import crlf_size
from mailstead.store.mbox import FINGERPRINT_HEAD, Mbox, MboxLockTimeout, fingerprint

#: A whole mbox file: mapped (large files never sit in memory) or, when empty, ``b""``.
MboxBuffer: TypeAlias = bytes | mmap.mmap

# How far before a message read() looks for its From_ line.
_FROM_LINE_MAX = 64 * 1024

_ESCAPED = re.compile(rb"^>(>*From )", re.MULTILINE)
_MONTHS = {b"JanFebMarAprMayJunJulAugSepOctNovDec"[3 * i : 3 * i + 3]: i + 1 for i in range(12)}
# asctime() after the sender: "Thu Jan  1 00:00:00 1970", maybe with a zone
# before the year (some writers) and without the seconds (old ones).
_DATE = re.compile(
    rb" ([A-Z][a-z]{2}) +(\d{1,2}) (\d{1,2}):(\d{2})(?::(\d{2}))?"
    rb"(?: [A-Z]{1,5}| [+-]\d{4})? (\d{4})\b"
)
# RFC 4155 leaves flags out; the de-facto headers (mutt, Pine, Dovecot):
# Status: R (read), O (old); X-Status: A (answered), F (flagged), T (draft),
# D (deleted).
_STATUS = re.compile(rb"^(X-)?Status:[ \t]*([A-Za-z]*)", re.MULTILINE | re.IGNORECASE)
_STATUS_FLAGS = {b"R": "\\Seen"}
_X_STATUS_FLAGS = {b"A": "\\Answered", b"F": "\\Flagged", b"T": "\\Draft", b"D": "\\Deleted"}
_NOT_INHERITED_NOR_LINKED = getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
# fcntl write locks need write access.
_LOCK_OPEN_FLAGS = os.O_RDWR | _NOT_INHERITED_NOR_LINKED
_REWRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _NOT_INHERITED_NOR_LINKED
# Records per writev batch when a file is rewritten.
_REWRITE_BATCH = 256
# Status headers further down than this are not looked for.
_HEADER_SCAN = 64 * 1024


@dataclass(frozen=True, slots=True)
class MboxRecord:
    """Where one message is in the file."""

    start: int  # offset of its From_ line
    from_line: bytes  # without the line end
    offset: int  # offset of the message bytes (as stored: still escaped)
    length: int

    @property
    def location(self) -> str:
        return f"{self.offset}:{self.length}"


def parse_location(location: str) -> tuple[int, int]:
    """``"offset:length"`` → (offset, length)."""
    offset, _, length = location.partition(":")
    return int(offset), int(length)


def record_fingerprint(buf: MboxBuffer, rec: MboxRecord) -> str:
    head = buf[rec.offset : rec.offset + min(rec.length, FINGERPRINT_HEAD)]
    return fingerprint(rec.from_line, head, rec.length)


def key_fingerprint(key: str) -> str:
    """The fingerprint part of an index key (duplicates get ``#2``, ``#3`` …)."""
    return key.partition("#")[0]


def _blank_before(buf: MboxBuffer, nl: int, start: int) -> bool:
    """Whether the line that ends with the newline at ``nl`` is empty."""
    if nl == start:
        return True
    prev = buf[nl - 1]
    if prev == 0x0A:
        return True
    return prev == 0x0D and (nl - 1 == start or buf[nl - 2] == 0x0A)


def parse(buf: MboxBuffer, start: int, end: int) -> list[MboxRecord]:
    """The messages of ``buf[start:end]``, where ``start`` is a message boundary.

    Bytes before the first ``From `` line (a file that is no mbox) are no
    message. Scans with ``find`` for ``"\\nFrom "``, not line by line.
    """
    bounds: list[int] = []
    if buf[start : start + 5] == b"From ":
        bounds.append(start)
    pos = start
    while True:
        nl = buf.find(b"\nFrom ", pos, end)
        if nl < 0:
            break
        if _blank_before(buf, nl, start):
            bounds.append(nl + 1)
        pos = nl + 1
    records = []
    for i, k in enumerate(bounds):
        stop = bounds[i + 1] if i + 1 < len(bounds) else end
        nl = buf.find(b"\n", k, stop)
        if nl < 0:  # a From_ line and nothing else at the end of the file
            records.append(MboxRecord(k, bytes(buf[k:stop]).rstrip(b"\r"), stop, 0))
            continue
        offset = nl + 1
        msg_end = stop
        # The blank line before the next From_ (or at the end) is no part of
        # the message; the From_ line's own newline may be the first of the two.
        if msg_end >= offset + 1 and buf[msg_end - 2 : msg_end] == b"\n\n":
            msg_end -= 1
        elif msg_end >= offset + 2 and buf[msg_end - 4 : msg_end] == b"\r\n\r\n":
            msg_end -= 2
        records.append(
            MboxRecord(k, bytes(buf[k:nl]).rstrip(b"\r"), offset, max(0, msg_end - offset))
        )
    return records


def from_line_start(buf: MboxBuffer, offset: int) -> int | None:
    """Where the From_ line before the message at ``offset`` starts, or None."""
    if offset <= 0 or buf[offset - 1] != 0x0A:
        return None
    lo = max(0, offset - _FROM_LINE_MAX)
    nl = buf.rfind(b"\n", lo, offset - 1)
    if nl < 0 and lo > 0:
        return None
    start = nl + 1
    return start if buf[start : start + 5] == b"From " else None


def unescape_mboxrd(raw: bytes) -> bytes:
    """The message as it was delivered: one ``>`` less on every ``^>+From `` line."""
    if b">From " not in raw:
        return raw
    return _ESCAPED.sub(rb"\1", raw)


def message_size(raw: bytes) -> int:
    """RFC822.SIZE of the stored (escaped) bytes ``raw``: unescaped, with CRLF."""
    escaped = len(_ESCAPED.findall(raw)) if b">From " in raw else 0
    return crlf_size([raw]) - escaped


def from_line_date(from_line: bytes) -> float | None:
    """The delivery time an asctime() From_ line gives (UTC), or None."""
    m = _DATE.search(from_line)
    if m is None or m.group(1) not in _MONTHS:
        return None
    month = _MONTHS[m.group(1)]
    day, hour, minute = int(m.group(2)), int(m.group(3)), int(m.group(4))
    second, year = int(m.group(5) or 0), int(m.group(6))
    if not (1 <= day <= 31 and hour < 24 and minute < 60 and second < 61):
        return None
    return float(calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0)))


def status_flags(raw: bytes) -> str:
    """The flags ``Status:``/``X-Status:`` headers give, space separated, sorted."""
    ends = [
        e
        for e in (raw.find(b"\n\n", 0, _HEADER_SCAN), raw.find(b"\n\r\n", 0, _HEADER_SCAN))
        if e >= 0
    ]
    header = raw[: min(ends) if ends else _HEADER_SCAN]
    if b"tatus:" not in header and b"TATUS:" not in header:
        return ""
    flags: set[str] = set()
    for m in _STATUS.finditer(header):
        table = _X_STATUS_FLAGS if m.group(1) else _STATUS_FLAGS
        for letter in m.group(2).upper():
            flag = table.get(bytes([letter]))
            if flag:
                flags.add(flag)
    return " ".join(sorted(flags))


@contextlib.contextmanager
def mapped(fd: int, size: int) -> Iterator[MboxBuffer]:
    """The first ``size`` bytes of ``fd``, memory-mapped read-only (``b""`` if empty)."""
    if size <= 0:
        yield b""
        return
    mm = mmap.mmap(fd, size, access=mmap.ACCESS_READ)
    try:
        yield mm
    finally:
        mm.close()


def pread_all(fd: int, size: int, offset: int) -> bytes:
    """Up to ``size`` bytes at ``offset`` (fewer only at the end of the file)."""
    chunks = []
    while size > 0:
        chunk = os.pread(fd, size, offset)
        if not chunk:
            break
        chunks.append(chunk)
        size -= len(chunk)
        offset += len(chunk)
    return b"".join(chunks)


@dataclass(slots=True)
class Held:
    """The mbox file while its locks are held: the open fd, or None if absent."""

    fd: int | None
    created: bool = False


@contextlib.contextmanager
def hold_locks(mbox: Mbox, *, create: bool = False) -> Iterator[Held]:
    """Hold ``mbox``'s locks the way :meth:`Mbox.deliver` takes them.

    The same steps, from the same object (its in-process lock, then the
    dotlock, then fcntl on the open file), so readers and rewriters here
    exclude deliveries and any other program that honours either lock.
    ``create``: make the file (0600) if absent; else ``fd`` is None for a
    missing file.
    """
    deadline = time.monotonic() + mbox.lock_timeout
    if not mbox._thread_lock.acquire(timeout=mbox.lock_timeout):
        raise MboxLockTimeout(f"mbox busy in this process: {mbox.path}")
    try:
        mbox._acquire_dotlock(deadline)
        try:
            held = _open_for_lock(mbox) if not create else Held(*mbox._open())
            try:
                if held.fd is not None:
                    mbox._acquire_fcntl(held.fd, deadline)
                yield held
            finally:
                if held.fd is not None:
                    os.close(held.fd)  # also releases the fcntl lock
        finally:
            mbox._release_dotlock()
    finally:
        mbox._thread_lock.release()


def _open_for_lock(mbox: Mbox) -> Held:
    try:
        fd = os.open(mbox.path, _LOCK_OPEN_FLAGS)
    except FileNotFoundError:
        return Held(None)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(f"mbox is not a regular file: {mbox.path}")
    return Held(fd)


def create_mbox(path: Path) -> None:
    """An empty mbox file (0600), durably; ``FileExistsError`` if there is one."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_dir(path.parent)


def write_copy(fd: int, tmp: Path, records: list[MboxRecord]) -> list[str]:
    """Write ``records`` of the mbox open at ``fd`` to ``tmp``, fsynced; their new locations.

    Each message keeps its From_ line and its bytes as stored (escaping and
    all) and gets a blank line after it; a last message without a final
    newline keeps it that way, as its fingerprint covers its length. ``tmp``
    gets the mode of the original and is removed if anything fails.
    """
    st = os.fstat(fd)
    out = os.open(tmp, _REWRITE_FLAGS, 0o600)
    locations: list[str] = []
    try:
        os.fchmod(out, stat.S_IMODE(st.st_mode))
        with mapped(fd, st.st_size) as buf:
            view = memoryview(buf)
            batch: list[bytes | memoryview] = []
            try:
                pos = 0
                for rec in records:
                    line = rec.from_line + b"\n"
                    end = rec.offset + rec.length
                    sep = b"\n" if not rec.length or view[end - 1] == 0x0A else b""
                    locations.append(f"{pos + len(line)}:{rec.length}")
                    batch += [line, view[rec.offset : end], sep]
                    pos += len(line) + rec.length + len(sep)
                    if len(batch) >= 3 * _REWRITE_BATCH:
                        write_all(out, batch)
                        batch.clear()
                write_all(out, batch)
            finally:
                batch.clear()  # no view into the mapping may outlive it
                view.release()
        os.fsync(out)
    except BaseException:
        os.close(out)
        unlink_quietly(tmp)
        raise
    os.close(out)
    return locations
