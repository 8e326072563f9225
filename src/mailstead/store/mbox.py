"""mbox delivery in the mboxrd variant (RFC 4155; docs/durability.md).

Each message is appended as a ``From `` separator line, the message with
every line matching ``^>*From `` quoted by one more ``>`` (so a reader can
undo it exactly), and one blank line. Writers exclude each other with a
dotlock and then an fcntl lock, the order Postfix and Dovecot use, so
whichever of the two another program honours, it sees us. A failed append is
truncated away, leaving the file byte for byte as it was.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import logging
import os
import re
import stat
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from mailstead.durable import Buffer, fsync_dir, publish_all, write_all
from mailstead.store.stored_as import StoredAs

log = logging.getLogger(__name__)

# Read access too: _append reads the last two bytes before writing.
_OPEN_FLAGS = os.O_RDWR | os.O_APPEND | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
_LOCK_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)

# mboxrd: quote every line of the form ">*From " with one more ">".
_FROM_LINE = re.compile(rb"^(?=>*From )", re.MULTILINE)
# Bytes that would break the one-line "From " separator (RFC 4155 App. A wants
# an addr-spec there; a space or newline in a quoted local part must not split it).
_UNSAFE_SENDER = re.compile(r"[\x00-\x20\x7f]")


# The part of a message the fingerprint covers besides its length and its
# From_ line: enough to tell messages apart, cheap to hash on every read.
FINGERPRINT_HEAD = 4096


def fingerprint(from_line: bytes, head: bytes, length: int) -> str:
    """What identifies a message across rewrites of the file: sha1 of its From_
    line, its first :data:`FINGERPRINT_HEAD` bytes and its length."""
    h = hashlib.sha1(from_line, usedforsecurity=False)
    h.update(b"\n")
    h.update(head[:FINGERPRINT_HEAD])
    h.update(b"\n%d" % length)
    return h.hexdigest()


def staged_fingerprint(record: Sequence[bytes]) -> str:
    """The fingerprint a reader will find for ``[From_ line, escaped message, trailer]``.

    A reader's message ends before the blank line that closes it (the
    trailer's last newline), so a message without a final newline is one
    byte longer than its bytes: the trailer's first newline.
    """
    line, escaped, trailer = record
    length = len(escaped) + len(trailer) - 1
    head = escaped[:FINGERPRINT_HEAD]
    if length > len(escaped) and len(head) < FINGERPRINT_HEAD:
        head += trailer[:1]
    return fingerprint(line.rstrip(b"\n"), head, length)


class MboxLockTimeout(TimeoutError):
    """The mbox stayed locked by another writer for longer than the wait allowed."""


def escape_mboxrd(message: bytes) -> bytes:
    """``message`` with every ``^>*From `` line quoted once more (mboxrd)."""
    if b"From " not in message:
        return message
    return _FROM_LINE.sub(b">", message)


def from_line(envelope_sender: str, received_at: float) -> bytes:
    """The ``From <sender> <asctime in UTC>`` separator line, newline included.

    RFC 4155 App. A: the envelope sender, or ``MAILER-DAEMON`` for the null
    reverse-path, then the delivery time in asctime() format in UTC.
    """
    sender = _UNSAFE_SENDER.sub("_", envelope_sender) or "MAILER-DAEMON"
    stamp = time.asctime(time.gmtime(received_at))
    return f"From {sender} {stamp}\n".encode("utf-8", "surrogateescape")


class Mbox:
    """Owns one mbox file (mboxrd) and its dotlock ``<path>.lock``.

    ``deliver`` is safe to call from many threads: they queue on an in-process
    lock first, so only one of them contends for the file locks at a time.
    """

    def __init__(
        self,
        path: Path,
        *,
        lock_timeout: float = 30.0,
        stale_lock_age: float = 300.0,
    ) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        # Longest total wait for the locks before MboxLockTimeout (Postfix
        # waits deliver_lock_attempts x deliver_lock_delay = 20 s).
        self.lock_timeout = lock_timeout
        # A dotlock older than this is left over from a crash (Postfix
        # stale_lock_time = 500 s; Dovecot mbox_dotlock_change_timeout = 120 s).
        self.stale_lock_age = stale_lock_age
        self._thread_lock = threading.Lock()

    def deliver(self, parts: Sequence[Buffer], envelope_sender: str, received_at: float) -> None:
        """Append one message (LF line endings) durably to the mbox.

        Creates the file (mode 0600) if absent. When this returns the message
        is fsynced; on error the file is truncated back to its old length and
        the error re-raised.
        """
        publish_all([self.stage(parts, envelope_sender, received_at)])

    def stage(
        self, parts: Sequence[Buffer], envelope_sender: str, received_at: float
    ) -> StagedMboxAppend:
        """The record to append, formatted now so the locks are held only while writing.

        Raises FileNotFoundError if the mbox's directory is gone, so the
        store can make it again before anything is promised.
        """
        if not self.path.parent.is_dir():
            raise FileNotFoundError(errno.ENOENT, "mbox directory is gone", str(self.path.parent))
        body = escape_mboxrd(b"".join(parts))
        trailer = b"\n" if body.endswith(b"\n") or not body else b"\n\n"
        return StagedMboxAppend(self, [from_line(envelope_sender, received_at), body, trailer])

    def _open(self) -> tuple[int, bool]:
        """Open the mbox for appending, creating it 0600 if absent."""
        while True:
            try:
                fd = os.open(self.path, _OPEN_FLAGS)
                created = False
            except FileNotFoundError:
                try:
                    fd = os.open(self.path, _OPEN_FLAGS | os.O_CREAT | os.O_EXCL, 0o600)
                    created = True
                except FileExistsError:
                    continue  # created meanwhile by someone else: open theirs
            # O_NOFOLLOW refused a symlink; refuse devices and FIFOs too.
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                raise OSError(f"mbox is not a regular file: {self.path}")
            return fd, created

    def _append(self, fd: int, record: list[bytes], created: bool) -> int:
        """Append ``record`` and fsync; return the old length (to truncate back to)."""
        old_size = os.fstat(fd).st_size
        if old_size:
            # The previous message must end with a blank line, or our "From "
            # line would not start a message (a foreign writer may omit it).
            tail = os.pread(fd, 2, old_size - 2) if old_size >= 2 else b"?" + os.pread(fd, 1, 0)
            if tail != b"\n\n":
                record = [b"\n" if tail.endswith(b"\n") else b"\n\n", *record]
        try:
            write_all(fd, record)
            os.fsync(fd)
            if created:
                fsync_dir(self.path.parent)
        except BaseException as exc:
            try:
                os.ftruncate(fd, old_size)
                os.fsync(fd)
            except OSError as undo:
                exc.add_note(f"truncating {self.path} back to {old_size} bytes failed: {undo}")
                log.error("mbox %s may hold a partial message: %s", self.path, undo)
            raise
        return old_size

    def _acquire_dotlock(self, deadline: float) -> None:
        """Create ``<mbox>.lock`` exclusively, breaking a stale one, or time out."""
        delay = 0.01
        while True:
            try:
                fd = os.open(self.lock_path, _LOCK_FLAGS, 0o600)
            except FileExistsError:
                if self._break_stale_dotlock():
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise MboxLockTimeout(f"mbox dotlock held too long: {self.lock_path}") from None
                time.sleep(min(delay, remaining))
                delay = min(delay * 2, 0.5)
                continue
            try:
                # The pid is for people reading the lock; its absence is harmless.
                with contextlib.suppress(OSError):
                    os.write(fd, f"{os.getpid()}\n".encode())
            finally:
                os.close(fd)
            return

    def _break_stale_dotlock(self) -> bool:
        """Remove the dotlock if it is stale; True if the caller should retry at once."""
        try:
            age = time.time() - os.stat(self.lock_path).st_mtime
        except FileNotFoundError:
            return True  # released meanwhile
        if age < self.stale_lock_age:
            return False
        # A lock taken between the stat and the unlink would be broken too;
        # procmail, mutt and Dovecot accept the same one-syscall window.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.lock_path)
        log.warning("removed stale mbox dotlock %s (%.0f s old)", self.lock_path, age)
        return True

    def _acquire_fcntl(self, fd: int, deadline: float) -> None:
        delay = 0.01
        while True:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except (BlockingIOError, PermissionError):  # EAGAIN / EACCES: held
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise MboxLockTimeout(f"mbox fcntl lock held too long: {self.path}") from None
                time.sleep(min(delay, remaining))
                delay = min(delay * 2, 0.5)

    def _release_dotlock(self) -> None:
        try:
            os.unlink(self.lock_path)
        except FileNotFoundError:
            log.warning("mbox dotlock %s vanished while held (broken as stale?)", self.lock_path)


class StagedMboxAppend:
    """One formatted mbox record; :meth:`publish` appends it and keeps the locks.

    The locks (in-process, dotlock, fcntl) stay held until :meth:`close`, so
    :meth:`undo` can truncate the append away while no other writer can
    have appended after it.
    """

    def __init__(self, mbox: Mbox, record: list[bytes]) -> None:
        self._mbox = mbox
        self._record = record
        self._fd: int | None = None
        self._dotlocked = False
        self._thread_locked = False
        self._old_size: int | None = None

    @property
    def stored_as(self) -> StoredAs:
        """The mbox and the fingerprint its index will know this message by."""
        return StoredAs("mbox", str(self._mbox.path), staged_fingerprint(self._record))

    def publish(self) -> None:
        mbox = self._mbox
        deadline = time.monotonic() + mbox.lock_timeout
        if not mbox._thread_lock.acquire(timeout=mbox.lock_timeout):
            raise MboxLockTimeout(f"mbox busy in this process: {mbox.path}")
        self._thread_locked = True
        mbox._acquire_dotlock(deadline)
        self._dotlocked = True
        self._fd, created = mbox._open()
        mbox._acquire_fcntl(self._fd, deadline)
        self._old_size = mbox._append(self._fd, self._record, created)

    def undo(self) -> None:
        if self._fd is not None and self._old_size is not None:
            os.ftruncate(self._fd, self._old_size)
            os.fsync(self._fd)
            self._old_size = None

    def close(self) -> None:
        mbox = self._mbox
        try:
            if self._fd is not None:
                os.close(self._fd)  # also releases the fcntl lock
                self._fd = None
        finally:
            try:
                if self._dotlocked:
                    self._dotlocked = False
                    mbox._release_dotlock()
            finally:
                if self._thread_locked:
                    self._thread_locked = False
                    mbox._thread_lock.release()
