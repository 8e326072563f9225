"""Taking a backup of a data directory while the server keeps running.

The order is what makes the copy consistent (docs/backup.md):

1. every SQLite database (``*.sqlite3``: the directory, the queue with the
   webhook outbox, each account's mailbox index) through SQLite's online
   backup API, each one a snapshot of a single read transaction;
2. then the files the databases point at: the queue's message files, the
   keys and certificates, each Maildir folder's ``new/`` then ``cur/`` (a
   file renamed meanwhile by a flag change or a SELECT is looked for again
   by its unique base name; one gone for good was expunged) and then its
   other files, and each mbox file under its delivery locks;
3. the UIDNEXT of every mailbox as the live index has it now;
4. ``manifest.json``, last.

So the copied files are never older than the copied databases: an index
row whose file is missing was expunged during the backup, a file without a
row arrived during it, and a queue row without its file was delivered
during it. The restore settles each of these (:mod:`.restore`).
"""

from __future__ import annotations

import errno
import hashlib
import os
import socket
import sqlite3
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mailstead import __version__
from mailstead.backup.manifest import (
    DATA_DIR,
    Advance,
    BackupError,
    FileEntry,
    Manifest,
    sha256_of,
    write_manifest,
)
from mailstead.durable import write_all
from mailstead.store.index import INDEX_NAME
from mailstead.store.maildir_names import split_name
from mailstead.store.mbox import Mbox
from mailstead.store.mbox_format import hold_locks

__all__ = ["Plan", "plan_backup", "take_backup"]

_CHUNK = 1 << 20
_READ = os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
# Beside a database while it is open; the online backup reads through them.
_SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")
# Directories whose files are in flight, never a promise (docs/durability.md),
# and the metrics' counter files, rewritten while serving, worth nothing restored.
_SKIPPED_DIRS = ("queue/tmp", "metrics")
_MAIL = "mail"


def _rfc3339(when: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))


@dataclass(slots=True)
class Plan:
    """What a data directory holds, sorted by how each part is copied."""

    databases: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)  # plain files: queue messages, keys
    maildirs: list[str] = field(default_factory=list)  # folders holding cur/ and new/
    mboxes: list[str] = field(default_factory=list)
    dirs: list[str] = field(default_factory=list)
    size: int = 0  # octets seen while planning, for the progress bar


def _is_maildir(path: str) -> bool:
    return os.path.isdir(f"{path}/cur") and os.path.isdir(f"{path}/new")


def plan_backup(data_dir: Path) -> Plan:
    """Walk ``data_dir`` and sort what it holds; symlinks, sockets and FIFOs are left out."""
    plan = Plan()
    root = str(data_dir)
    for top, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(top, root).replace(os.sep, "/")
        rel = "" if rel == "." else rel
        prefix = f"{rel}/" if rel else ""
        # os.walk lists symlinked directories as directories: never follow them.
        dirnames[:] = sorted(
            d
            for d in dirnames
            if not os.path.islink(f"{top}/{d}") and f"{prefix}{d}" not in _SKIPPED_DIRS
        )
        if rel:
            plan.dirs.append(rel)
        maildir = _is_maildir(top)
        if maildir:
            plan.maildirs.append(rel)
            # cur/ and new/ are copied message by message, tmp/ never.
            plan.dirs += [f"{prefix}{sub}" for sub in ("cur", "new", "tmp")]
            for sub in ("cur", "new"):
                plan.size += _dir_size(f"{top}/{sub}")
            dirnames[:] = [d for d in dirnames if d not in ("cur", "new", "tmp")]
        for name in sorted(filenames):
            path = f"{top}/{name}"
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            if name.endswith(_SQLITE_SIDE_FILES) and name.rsplit("-", 1)[0].endswith(".sqlite3"):
                continue
            plan.size += st.st_size
            relpath = f"{prefix}{name}"
            if name.endswith(".sqlite3"):
                plan.databases.append(relpath)
            elif rel.startswith(_MAIL + "/") and not maildir and not _in_maildir(plan, rel):
                if not name.endswith(".lock"):  # an mbox dotlock, held right now
                    plan.mboxes.append(relpath)
            elif maildir:
                pass  # dovecot-keywords and the like: copied after the messages
            else:
                plan.files.append(relpath)
    return plan


def _in_maildir(plan: Plan, rel: str) -> bool:
    """True if ``rel`` lies inside a Maildir folder already planned (Maildir++ subfolders)."""
    return any(rel.startswith(f"{folder}/") for folder in plan.maildirs)


def _dir_size(path: str) -> int:
    total = 0
    try:
        with os.scandir(path) as entries:
            for entry in entries:
                try:
                    total += entry.stat(follow_symlinks=False).st_size
                except FileNotFoundError:
                    continue
    except FileNotFoundError:
        pass
    return total


class _Writer:
    """Owns the files written into one backup's ``data/`` and their manifest entries."""

    def __init__(self, root: Path, advance: Advance) -> None:
        self.root = root
        self.advance = advance
        self.entries: list[FileEntry] = []

    def copy_fd(self, fd: int, relpath: str, st: os.stat_result) -> None:
        """Copy what ``fd`` holds (from offset 0) to ``data/relpath``, hashing as it goes."""
        digest = hashlib.sha256()
        dest = self.root / relpath
        out = os.open(dest, _CREATE, 0o600)
        size = 0
        try:
            while chunk := os.pread(fd, _CHUNK, size):
                write_all(out, [chunk])
                digest.update(chunk)
                size += len(chunk)
                self.advance(len(chunk))
        finally:
            os.close(out)
        os.utime(dest, ns=(st.st_atime_ns, st.st_mtime_ns))
        self.add(FileEntry(relpath, size, digest.hexdigest(), st.st_mode & 0o7777, st.st_mtime_ns))

    def copy_path(self, source: str, relpath: str) -> bool:
        """Copy the file at ``source``; False if it is gone (or no longer a regular file)."""
        try:
            fd = os.open(source, _READ)
        except FileNotFoundError:
            return False
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # replaced by a symlink: not ours to follow
                return False
            raise
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return False
            self.copy_fd(fd, relpath, st)
        finally:
            os.close(fd)
        return True

    def add(self, entry: FileEntry) -> None:
        self.entries.append(entry)

    def hash_written(self, relpath: str, mode: int, mtime_ns: int) -> None:
        """Enter a file already written into the backup (a database snapshot)."""
        fd = os.open(self.root / relpath, _READ)
        try:
            size, digest = sha256_of(fd)
        finally:
            os.close(fd)
        self.add(FileEntry(relpath, size, digest, mode, mtime_ns))


def _snapshot_database(source: str, dest: Path) -> None:
    """A consistent copy of the SQLite database at ``source`` (one read transaction).

    The whole copy is one ``backup`` step: done in several, a write by the
    server in between would restart it, possibly forever under steady mail.
    The copy leaves WAL mode, so it is one self-contained file. Opened
    read-write though only read: as the last connection to close it
    removes the -wal and -shm files it may have made (a read-only one
    would leave them, owned by whoever runs the backup).
    """
    os.close(os.open(dest, _CREATE, 0o600))  # SQLite would make it 0644
    src = sqlite3.connect(source, timeout=30.0)
    try:
        dst = sqlite3.connect(dest)
        try:
            src.backup(dst)
            dst.execute("PRAGMA journal_mode=DELETE")
        finally:
            dst.close()
    finally:
        src.close()


def _copy_maildir(data_dir: Path, folder: str, writer: _Writer) -> None:
    """new/ then cur/ of one folder, chasing files renamed meanwhile, then its other files."""
    top = data_dir / folder
    prefix = f"{folder}/" if folder else ""
    seen: set[str] = set()
    for sub in ("new", "cur"):
        try:
            names = sorted(os.listdir(top / sub))
        except FileNotFoundError:
            continue
        for name in names:
            if name.startswith("."):
                continue
            base = split_name(name)[0]
            if base in seen:
                continue  # listed in new/ and then again in cur/: copied once
            seen.add(base)
            location = f"{sub}/{name}"
            for _attempt in range(3):
                if writer.copy_path(f"{top}/{location}", f"{prefix}{location}"):
                    break
                # Renamed (a flag change, new/ → cur/) or expunged since the listing.
                found = _find_base(top, base)
                if found is None:
                    break
                location = found
    for entry in sorted(os.listdir(top)):
        path = top / entry
        if entry in ("cur", "new", "tmp") or ".sqlite3" in entry or entry.endswith(".tmp"):
            continue  # the index is a database; a .tmp is a write in flight
        if path.is_file() and not path.is_symlink():
            writer.copy_path(str(path), f"{prefix}{entry}")


def _find_base(top: Path, base: str) -> str | None:
    """Where the message with unique name ``base`` is now: ``cur/…``, ``new/…`` or None."""
    for sub in ("cur", "new"):
        try:
            names = os.listdir(top / sub)
        except FileNotFoundError:
            continue
        for name in names:
            if split_name(name)[0] == base:
                return f"{sub}/{name}"
    return None


def _copy_mbox(data_dir: Path, relpath: str, writer: _Writer) -> None:
    """The mbox file copied under its delivery locks (dotlock, then fcntl), as readers do."""
    with hold_locks(Mbox(data_dir / relpath)) as held:
        if held.fd is not None:
            writer.copy_fd(held.fd, relpath, os.fstat(held.fd))


def _live_uidnext(path: Path) -> dict[str, int]:
    """Each mailbox's UIDNEXT in the live index at ``path`` (empty if it has none yet)."""
    conn = sqlite3.connect(path, timeout=30.0)
    try:
        return {name: int(n) for name, n in conn.execute("SELECT name, uidnext FROM mailboxes")}
    except sqlite3.OperationalError:
        return {}
    finally:
        conn.close()


def take_backup(
    data_dir: Path,
    backup_dir: Path,
    *,
    begin: Callable[[int], None] = lambda total: None,
    advance: Advance = lambda octets: None,
) -> Manifest:
    """Copy ``data_dir`` into ``backup_dir`` (absent or empty) and write its manifest last.

    ``begin`` is told the expected number of octets once, ``advance`` each
    chunk copied: a progress bar. Raises BackupError for a destination that
    cannot be used, OSError and sqlite3.Error as they come.
    """
    data_dir = data_dir.resolve()
    backup_dir = backup_dir.absolute()
    if not data_dir.is_dir():
        raise BackupError(f"{data_dir}: no data directory to back up")
    if backup_dir.resolve().is_relative_to(data_dir):
        raise BackupError(f"{backup_dir}: the backup must not lie inside the data directory")
    if backup_dir.exists() and any(backup_dir.iterdir()):
        raise BackupError(f"{backup_dir}: not empty; give a new or empty directory")
    started = time.time()
    backup_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    root = backup_dir / DATA_DIR
    root.mkdir(mode=0o700)
    plan = plan_backup(data_dir)
    begin(plan.size)
    for rel in plan.dirs:
        (root / rel).mkdir(mode=0o700, parents=True, exist_ok=True)
    writer = _Writer(root, advance)
    for rel in plan.databases:
        source = data_dir / rel
        try:
            st = source.stat()
        except FileNotFoundError:
            continue  # a mailbox index removed with its account meanwhile
        _snapshot_database(str(source), root / rel)
        os.utime(root / rel, ns=(st.st_atime_ns, st.st_mtime_ns))
        writer.hash_written(rel, st.st_mode & 0o7777, st.st_mtime_ns)
        advance(st.st_size)
    for rel in plan.files:
        writer.copy_path(str(data_dir / rel), rel)
    for folder in plan.maildirs:
        _copy_maildir(data_dir, folder, writer)
    for rel in plan.mboxes:
        _copy_mbox(data_dir, rel, writer)
    uidnext = {
        rel: _live_uidnext(data_dir / rel)
        for rel in plan.databases
        if rel.rsplit("/", 1)[-1] == INDEX_NAME and (data_dir / rel).exists()
    }
    os.sync()  # every copied file on disk before the manifest says the backup is whole
    manifest = Manifest(
        created=_rfc3339(started),
        finished=_rfc3339(time.time()),
        hostname=socket.gethostname(),
        source=str(data_dir),
        mailstead_version=__version__,
        files=writer.entries,
        dirs=plan.dirs,
        uidnext=uidnext,
    )
    write_manifest(backup_dir, manifest)
    return manifest
