"""Maildir delivery (https://cr.yp.to/proto/maildir.html), durable per docs/durability.md.

A delivery writes the message to ``tmp/`` under a name unique to this host,
process and moment, fsyncs it, hard-links it into ``new/`` and fsyncs
``new/``. Only then is it delivered; a crash before that leaves at most a
file in ``tmp/``, which readers never look at. The name in ``new/`` carries
Dovecot's ``,S=<size>`` and ``,W=<size with CRLF>`` attributes so readers
learn both sizes without reading the file.
"""

from __future__ import annotations

import errno
import os
import socket
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from mailstead.durable import (
    Buffer,
    DirectorySyncer,
    buffer_size,
    fsync_dir,
    make_dirs,
    unlink_quietly,
    write_all,
)
from mailstead.store.stored_as import StoredAs

_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
# A clash of unique names needs a clock step back and a recycled pid; a few
# fresh names settle it, more would mean something else is wrong.
_NAME_ATTEMPTS = 5
# link(2) refusals that mean "this file system has no hard links".
NO_HARD_LINKS = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP})


def _sanitised_hostname() -> str:
    # Maildir spec: "/" becomes \057 and ":" becomes \072 in the host part.
    host = socket.gethostname() or "localhost"
    return host.replace("/", "\\057").replace(":", "\\072")


class _UniqueNames:
    """Process-wide source of Maildir unique names: ``<sec>.M<usec>P<pid>Q<n>.<host>``.

    The spec's uniqueness argument is host + pid + time; the ``Q`` delivery
    counter makes names unique among the threads of one process even within
    the same microsecond.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0
        self._pid = os.getpid()
        self._host = _sanitised_hostname()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._after_fork)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        self._count = 0
        self._pid = os.getpid()

    def next(self) -> str:
        with self._lock:
            self._count += 1
            count = self._count
        now = time.time_ns()
        sec, usec = divmod(now // 1000, 1_000_000)
        return f"{sec}.M{usec}P{self._pid}Q{count}.{self._host}"


_names = _UniqueNames()


def crlf_size(parts: Sequence[Buffer]) -> int:
    """Octets of the concatenated ``parts`` once every bare LF is a CRLF."""
    total = 0
    bare_lf = 0
    prev_cr = False
    for part in parts:
        data = part.tobytes() if isinstance(part, memoryview) else part
        total += len(data)
        bare_lf += data.count(b"\n") - data.count(b"\r\n")
        if prev_cr and data[:1] == b"\n":
            bare_lf -= 1  # a CRLF split across two parts
        prev_cr = data[-1:] == b"\r"
    return total + bare_lf


def unique_name() -> str:
    """A Maildir base name unique to this host, process and moment."""
    return _names.next()


class Maildir:
    """Owns one Maildir directory (``tmp/``, ``new/``, ``cur/``) and delivery into it.

    Safe to use from many threads at once; deliveries racing into ``new/``
    share directory fsyncs through one :class:`DirectorySyncer`.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.tmp = self.path / "tmp"
        self.new = self.path / "new"
        self.cur = self.path / "cur"
        self._new_sync = DirectorySyncer(self.new)

    def create(self) -> bool:
        """Make ``tmp/``, ``new/`` and ``cur/`` (mode 0700) and any missing parent.

        Each parent whose entries change is fsynced before this returns.
        Returns whether anything was created.
        """
        return make_dirs(self.tmp, self.new, self.cur, mode=0o700)

    def deliver(self, parts: Sequence[Buffer]) -> str:
        """Store the concatenation of ``parts`` as a new message; return its file name.

        ``parts`` is the message as it should be on disk (LF line endings).
        When this returns, the file and its name in ``new/`` are durable. On
        any error nothing is left in ``tmp/`` or ``new/`` and the error is
        re-raised.
        """
        staged = self.stage(parts)
        try:
            return staged.publish_name()
        finally:
            staged.close()

    def stage(self, parts: Sequence[Buffer]) -> StagedMaildirMessage:
        """Write ``parts`` to ``tmp/`` and fsync it; readers do not see it yet.

        On error nothing is left in ``tmp/`` and the error is re-raised.
        """
        size = buffer_size(parts)
        # Dovecot's ",W=": the size with CRLF line ends, which IMAP and POP3
        # report, so that listing a mailbox never has to read the files.
        vsize = crlf_size(parts)
        fd, unique, tmp_path = self._create_tmp()
        try:
            try:
                write_all(fd, parts)
                os.fsync(fd)
            finally:
                os.close(fd)
        except BaseException:
            unlink_quietly(tmp_path)
            raise
        return StagedMaildirMessage(self, tmp_path, unique, f",S={size},W={vsize}")

    def _create_tmp(self) -> tuple[int, str, str]:
        tmp_dir = os.fspath(self.tmp)
        for _ in range(_NAME_ATTEMPTS):
            unique = _names.next()
            tmp_path = os.path.join(tmp_dir, unique)
            try:
                fd = os.open(tmp_path, _OPEN_FLAGS, 0o600)
            except FileExistsError:
                continue
            return fd, unique, tmp_path
        raise FileExistsError(errno.EEXIST, "no unique name free in Maildir tmp/", tmp_dir)

    def _move_into_new(self, tmp_path: str, unique: str, attributes: str) -> str:
        """Move the tmp file to a name in ``new/``, never replacing an existing file."""
        new_dir = os.fspath(self.new)
        for attempt in range(_NAME_ATTEMPTS):
            name = unique if attempt == 0 else _names.next()
            final_path = os.path.join(new_dir, f"{name}{attributes}")
            try:
                # link(2) fails with EEXIST where rename(2) would overwrite
                # (the Maildir spec's delivery step).
                os.link(tmp_path, final_path)
            except FileExistsError:
                continue
            except OSError as exc:
                if exc.errno not in NO_HARD_LINKS:
                    raise
                return self._rename_into_new(tmp_path, final_path)
            # The tmp/ unlink need not be durable: a link resurrected there by
            # a crash is invisible to readers and removed by tmp/ clean-up.
            try:
                os.unlink(tmp_path)
            except BaseException:
                unlink_quietly(final_path)
                raise
            return final_path
        raise FileExistsError(errno.EEXIST, "no unique name free in Maildir new/", new_dir)

    @staticmethod
    def _rename_into_new(tmp_path: str, final_path: str) -> str:
        # Fallback for file systems without hard links. The name is unique to
        # this process (pid + counter), so the check-then-rename window can
        # only lose to another program reusing our name; refuse if visible.
        if os.path.lexists(final_path):
            raise FileExistsError(errno.EEXIST, "Maildir name taken", final_path)
        os.rename(tmp_path, final_path)
        return final_path


class StagedMaildirMessage:
    """A message fsynced in ``tmp/``: :meth:`publish` delivers it, else :meth:`close` removes it."""

    def __init__(self, maildir: Maildir, tmp_path: str, unique: str, attributes: str) -> None:
        self._maildir = maildir
        self._tmp_path = tmp_path
        self._unique = unique
        self._attributes = attributes
        self._final_path: str | None = None

    @property
    def stored_as(self) -> StoredAs:
        """The Maildir and the name in ``new/`` this message gets when published
        (unless another program took that unique name, size included, first)."""
        return StoredAs("maildir", str(self._maildir.path), f"{self._unique}{self._attributes}")

    def publish(self) -> None:
        self.publish_name()

    def publish_name(self) -> str:
        """Link the file into ``new/`` and fsync ``new/``; return its name there."""
        md = self._maildir
        final_path = md._move_into_new(self._tmp_path, self._unique, self._attributes)
        try:
            md._new_sync.sync()
        except BaseException:
            unlink_quietly(final_path)
            raise
        self._final_path = final_path
        return os.path.basename(final_path)

    def undo(self) -> None:
        """Remove the published file again (a reader may have glimpsed it)."""
        if self._final_path is not None:
            os.unlink(self._final_path)
            self._final_path = None
            self._maildir._new_sync.sync()

    def close(self) -> None:
        # After a publish the tmp/ name is gone already; this is for the rest.
        unlink_quietly(self._tmp_path)


def create_folder(path: Path, *, is_inbox: bool) -> None:
    """Make a Maildir (``tmp/``, ``new/``, ``cur/``); a Maildir++ folder gets ``maildirfolder``."""
    make_dirs(path / "tmp", path / "new", path / "cur", mode=0o700)
    if not is_inbox:
        marker = path / "maildirfolder"
        if not marker.exists():
            marker.touch(0o600)
            fsync_dir(path)
