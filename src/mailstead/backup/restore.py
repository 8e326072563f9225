"""Restoring a backup into a data directory, and what a restore guarantees.

Everything is read against the manifest before anything is written. The
files go into a new directory beside the data directory, are settled
there, and only then take the data directory's place (the old one, when
``--force`` replaces it, is renamed aside, never deleted).

Settling a backup taken while the server ran (:mod:`.take` copies the
databases first, then the files):

* each mailbox index: UIDNEXT is raised to what the live index had when
  the backup finished, HIGHESTMODSEQ jumps past any modseq handed out since
  (RFC 7162: it never goes backwards), and the scan stamp is cleared, so the first access
  reconciles the files with the rows (``store/mailbox.py``): a file without
  a row (delivered during the backup) takes a UID above every UID handed out
  before the backup finished; a row without its file (expunged during the
  backup) is expunged; a file renamed by a flag change keeps its UID and
  takes the flags its name says. UIDVALIDITY is kept (RFC 9051 §2.3.1.1: the
  UIDs it covers still name the same messages);
* the queue: a row whose message file is missing was delivered during the
  backup and is dropped; a file without a row is an orphan the server's
  queue recovery removes.
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from mailstead.backup.manifest import (
    DATA_DIR,
    Advance,
    BackupError,
    FileEntry,
    Manifest,
    read_manifest,
    verify_files,
)
from mailstead.durable import fsync_dir, write_all
from mailstead.mta.queue import Queue
from mailstead.store.index import INDEX_NAME, MODSEQ_RESTORE_GAP

__all__ = ["Restored", "file_mode", "restore_backup", "verify_backup"]

_CHUNK = 1 << 20
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
# Below these, every file is private whatever mode it had: mail, keys.
_PRIVATE_TOPS = ("mail", "dkim", "queue")


@dataclass(frozen=True, slots=True)
class Restored:
    """What a restore did: the manifest it followed and where the old data went."""

    manifest: Manifest
    data_dir: Path
    replaced: Path | None  # the former data directory, renamed aside (``--force``)
    dropped_queue_ids: tuple[str, ...]


def file_mode(entry: FileEntry) -> int:
    """The mode a restored file gets: 0600 for databases, keys and mail; otherwise
    what it had, without group or world write, and never less than 0600."""
    name = entry.path.rsplit("/", 1)[-1]
    private = (
        name.endswith((".sqlite3", ".key"))
        or "key" in name
        or entry.path.split("/", 1)[0] in _PRIVATE_TOPS
    )
    if private:
        return 0o600
    return (entry.mode & 0o644) | 0o600


def verify_backup(backup_dir: Path, advance: Advance = lambda octets: None) -> Manifest:
    """The manifest of ``backup_dir``, every file checked against it; BackupError if not."""
    manifest = read_manifest(backup_dir)
    verify_files(backup_dir, manifest, advance)
    return manifest


def _is_empty(path: Path) -> bool:
    return not path.exists() or (path.is_dir() and not any(path.iterdir()))


def restore_backup(
    backup_dir: Path,
    data_dir: Path,
    *,
    force: bool = False,
    begin: Advance = lambda total: None,
    advance: Advance = lambda octets: None,
) -> Restored:
    """Verify ``backup_dir`` and make ``data_dir`` what it holds.

    Refuses (BackupError) a backup that fails its manifest, and a non-empty
    ``data_dir`` unless ``force``. The caller checks that no server is using
    ``data_dir`` first (:func:`mailstead.backup.serving.serving_evidence`).
    ``begin`` is told the octets to go (each file is read twice: once to
    verify, once to write), ``advance`` each chunk.
    """
    data_dir = data_dir.absolute()
    manifest = read_manifest(backup_dir)
    if not _is_empty(data_dir) and not force:
        raise BackupError(f"{data_dir}: not empty; pass --force to replace it (kept aside)")
    begin(2 * manifest.total_size())
    verify_files(backup_dir, manifest, advance)
    stage = data_dir.with_name(f".{data_dir.name}.restoring-{os.getpid()}")
    if stage.exists():
        raise BackupError(f"{stage}: left by an earlier restore; remove it first")
    data_dir.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    stage.mkdir(mode=0o700)
    for rel in manifest.dirs:
        (stage / rel).mkdir(mode=0o700, parents=True, exist_ok=True)
    root = backup_dir / DATA_DIR
    for entry in manifest.files:
        _write_file(root / entry.path, stage / entry.path, entry, advance)
    _settle_indexes(stage, manifest)
    dropped = _settle_queue(stage)
    for rel in sorted(manifest.dirs, key=lambda d: d.count("/"), reverse=True):
        os.chmod(stage / rel, 0o700)
    os.sync()
    replaced = None
    if data_dir.exists():
        if _is_empty(data_dir):
            data_dir.rmdir()
        else:
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
            replaced = data_dir.with_name(f"{data_dir.name}.before-restore-{stamp}")
            os.rename(data_dir, replaced)
    os.rename(stage, data_dir)
    fsync_dir(data_dir.parent)
    return Restored(manifest, data_dir, replaced, dropped)


def _write_file(source: Path, dest: Path, entry: FileEntry, advance: Advance) -> None:
    dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    out = os.open(dest, _CREATE, file_mode(entry))
    try:
        with open(source, "rb") as f:
            while chunk := f.read(_CHUNK):
                write_all(out, [chunk])
                advance(len(chunk))
    finally:
        os.close(out)
    # Maildir: a message with no index row takes its INTERNALDATE from here.
    os.utime(dest, ns=(entry.mtime_ns, entry.mtime_ns))


def _settle_indexes(stage: Path, manifest: Manifest) -> None:
    """Raise UIDNEXT to the live values at the backup's end and force a rescan.

    The SQL here belongs in ``store/index.py`` (docs/backup.md); it is here
    until the index grows the method.
    """
    for entry in manifest.files:
        if entry.path.rsplit("/", 1)[-1] != INDEX_NAME:
            continue
        counters = manifest.uidnext.get(entry.path, {})
        conn = sqlite3.connect(stage / entry.path, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                "UPDATE mailboxes SET uidnext = max(uidnext, ?) WHERE name = ?",
                [(n, name) for name, n in counters.items()],
            )
            # An empty stamp matches no directory or file: the first
            # access compares the files with the rows.
            conn.execute("UPDATE mailboxes SET stamp = ''")
            # RFC 7162: HIGHESTMODSEQ past any value clients saw since the
            # backup, every message changed at it (a CONDSTORE/QRESYNC
            # client re-reads all flags, not the messages), and no snapshot
            # of the older records left to load.
            conn.execute(
                "UPDATE mailboxes SET highestmodseq = highestmodseq + ?", (MODSEQ_RESTORE_GAP,)
            )
            conn.execute(
                "UPDATE messages SET modseq = (SELECT highestmodseq FROM mailboxes"
                " WHERE mailboxes.id = messages.mailbox)"
            )
            conn.execute("DELETE FROM snapshots")
            conn.execute("COMMIT")
        finally:
            conn.close()


def _settle_queue(stage: Path) -> tuple[str, ...]:
    """Drop queue rows whose message file the backup does not hold."""
    if not (stage / "queue.sqlite3").exists():
        return ()
    with Queue(stage) as queue:
        gone = tuple(m.id for m in queue.list() if not m.path.exists())
        for queue_id in gone:
            queue.delete(queue_id)
    # Queue() opens in WAL mode; the last close checkpoints and removes
    # the side files, leaving one file per database as the manifest lists.
    return gone
