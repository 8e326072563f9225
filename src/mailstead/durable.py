"""Durable file-system primitives shared by the mail store and the queue.

What "on disk" means here (docs/durability.md): a file's data is durable after
``fsync`` of the file, and its *name* is durable only after ``fsync`` of the
directory that holds the name. Every helper in this module exists to make one
of those two steps cheap or hard to forget:

* :func:`write_all` writes a message given as several buffers with
  ``writev(2)``, so no caller has to join them into one copy first;
* :func:`fsync_dir` makes the entries of one directory durable;
* :func:`make_dirs` creates missing directories and fsyncs each parent whose
  entries it changed;
* :class:`DirectorySyncer` lets many threads that each renamed a file into one
  directory share a single directory ``fsync`` (group commit);
* :class:`Staged`, :func:`publish_all` and :func:`discard` make a delivery to several places
  all or nothing: the slow, failure-prone writes happen while staging, where
  nothing is visible yet, and a failed publish takes back the others.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, TypeAlias

log = logging.getLogger(__name__)

#: A message fragment: anything ``writev(2)`` takes without a copy.
Buffer: TypeAlias = bytes | bytearray | memoryview

# writev(2) fails with EINVAL beyond IOV_MAX buffers (1024 on Linux).
try:
    _IOV_MAX = max(16, os.sysconf("SC_IOV_MAX"))
except (AttributeError, OSError, ValueError):
    _IOV_MAX = 16  # POSIX _XOPEN_IOV_MAX, the guaranteed minimum

_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)


def buffer_size(parts: Sequence[Buffer]) -> int:
    """Total number of bytes in ``parts`` (``len`` of a memoryview counts items)."""
    return sum(p.nbytes if isinstance(p, memoryview) else len(p) for p in parts)


def write_all(fd: int, parts: Sequence[Buffer]) -> int:
    """Write every byte of ``parts`` to ``fd`` in order; return the byte count.

    The common case is one ``writev`` call. A short write (a signal, or a
    disk filling up mid-way) continues where it stopped, so the next call
    either finishes or raises the real error (``ENOSPC``, ``EDQUOT``, ``EIO``).
    """
    total = buffer_size(parts)
    if total == 0:
        return 0
    written = os.writev(fd, parts) if len(parts) <= _IOV_MAX else 0
    if written == total:
        return total
    # Slow path: byte views of what is left, at most IOV_MAX per call.
    views: list[memoryview] = []
    skip = written
    for part in parts:
        view = memoryview(part).cast("B")
        if skip >= len(view):
            skip -= len(view)
            continue
        views.append(view[skip:] if skip else view)
        skip = 0
    while views:
        n = os.writev(fd, views[:_IOV_MAX])
        if n == 0:  # only possible for a zero-length request; guard against a spin
            raise OSError(errno.EIO, "writev() wrote nothing")
        while n:
            head = views[0]
            if n >= len(head):
                n -= len(head)
                views.pop(0)
            else:
                views[0] = head[n:]
                n = 0
    return total


def fsync_dir(path: Path | str) -> None:
    """Make the entries of directory ``path`` (creations, renames) durable."""
    fd = os.open(path, _DIR_FLAGS)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file_atomically(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Put ``data`` at ``path`` durably: never half-written, never briefly readable.

    A temporary file beside it (O_EXCL, created with ``mode``), fsync,
    rename over ``path``, fsync of the directory. Raises OSError; the
    temporary file is removed on failure.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
        try:
            write_all(fd, [data])
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def make_dirs(*paths: Path, mode: int = 0o700) -> bool:
    """Create each of ``paths`` and any missing ancestor, durably.

    Every directory created here (or found created by a concurrent caller
    between our check and our ``mkdir``) gets its parent fsynced once, so a
    caller may report success for mail stored below it. Directories that
    existed beforehand are taken as already durable. Returns whether anything
    had to be made.
    """
    touched: set[Path] = set()  # parents whose entries changed
    for path in paths:
        missing: list[Path] = []
        p = path
        while not p.is_dir():
            missing.append(p)
            if p.parent == p:
                break
            p = p.parent
        for d in reversed(missing):
            try:
                os.mkdir(d, mode)
            except FileExistsError:
                if not d.is_dir():
                    raise
                # Someone else just made it and may not have fsynced yet.
            touched.add(d.parent)
    for parent in sorted(touched, key=lambda p: len(p.parts), reverse=True):
        fsync_dir(parent)
    return bool(touched)


def unlink_quietly(path: Path | str) -> None:
    """Remove ``path`` during error clean-up, where the first error must win."""
    # Best effort: a leftover in tmp/ is harmless (readers skip it and the
    # periodic clean-up removes it); the error being handled matters more.
    with contextlib.suppress(OSError):
        os.unlink(path)


class _Batch:
    """Waiters covered by one directory fsync that has not started yet."""

    __slots__ = ("done", "error")

    def __init__(self) -> None:
        self.done = False
        self.error: OSError | None = None


class DirectorySyncer:
    """Owns the directory fsyncs of one directory, coalesced across threads.

    A thread calls :meth:`sync` after its ``rename``/``link`` into the
    directory. It returns once an fsync that *started after that call began*
    has completed; only such an fsync is sure to cover the rename. Callers
    arriving while an fsync runs join the next batch, which one of them runs
    as soon as the current fsync ends, so N concurrent deliveries cost about
    two directory fsyncs instead of N (group commit, as in database logs).

    If the fsync covering a batch fails, every thread of that batch gets an
    ``OSError``; a later fsync that succeeds does not excuse it, because Linux
    reports a write-back error to one fsync only.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._cond = threading.Condition(threading.Lock())
        self._running = False  # an fsync is in progress
        self._pending: _Batch | None = None  # the batch the next fsync covers

    def sync(self) -> None:
        """Return once every change made to the directory before this call is durable."""
        with self._cond:
            if self._pending is None:
                self._pending = _Batch()
            batch = self._pending
            # A pending batch has not started its fsync, so joining it is
            # enough. Wait while another fsync runs; if ours is then still
            # not done, nobody leads it yet: lead it.
            while self._running and not batch.done:
                self._cond.wait()
            if batch.done:
                if batch.error is not None:
                    err = batch.error
                    raise OSError(err.errno, err.strerror, str(self.path)) from err
                return
            self._running = True
            self._pending = None  # later arrivals form the next batch
        error: OSError | None = OSError(errno.EIO, "directory fsync did not complete")
        try:
            fsync_dir(self.path)
            error = None
        except OSError as exc:
            error = exc
            raise
        finally:
            # Also on KeyboardInterrupt & co: the batch must never pass as synced.
            with self._cond:
                batch.done = True
                batch.error = error
                self._running = False
                self._cond.notify_all()


class Staged(Protocol):
    """One copy of a message, written but not yet visible (a Maildir file in
    ``tmp/``, a queue file without its rows, mbox bytes in memory).

    ``publish`` makes it visible and durable; ``undo`` takes a successful
    publish back (only before ``close``: an mbox holds its locks till then);
    ``close`` releases what the copy holds and removes what was never
    published; calling it again does nothing. Staging does the work that
    fails for ordinary reasons (disk full, quota); publishing is a link, a
    row insert or an append under a lock, so it rarely fails.
    """

    def publish(self) -> None: ...

    def undo(self) -> None: ...

    def close(self) -> None: ...


def publish_all(copies: Sequence[Staged]) -> None:
    """Publish every copy in order, or none: a failure undoes the earlier ones.

    The copies are always closed. Callers order them so that locks are taken
    in one global order (no two deliveries wait for each other) and the
    copy most likely to fail goes first. An undo that fails too is logged: the
    copy it could not take back may then be delivered twice, never lost.
    """
    published: list[Staged] = []
    try:
        for copy in copies:
            copy.publish()
            published.append(copy)
    except BaseException:
        for copy in reversed(published):
            try:
                copy.undo()
            except Exception:
                log.exception("could not take back a published copy; it may be duplicated")
        raise
    finally:
        discard(copies)


def discard(copies: Sequence[Staged]) -> None:
    """Close ``copies``: what was never published is removed, what is held released.

    A close that fails is logged, not raised: the caller is already done
    (published) or failing for another reason.
    """
    for copy in copies:
        try:
            copy.close()
        except Exception:
            log.exception("releasing a staged copy failed")
