"""The manifest of a backup: what it holds, and the checks a restore makes on it.

A backup directory holds ``data/`` (the copied files, by their path below
the data directory) and ``manifest.json``, written last and atomically, so a
backup without a manifest is an interrupted one. The manifest names every
file with its size and SHA-256; a restore reads every byte against it before
it writes anything (docs/backup.md).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from mailstead.durable import write_file_atomically

__all__ = [
    "DATA_DIR",
    "FORMAT",
    "MANIFEST_NAME",
    "VERSION",
    "Advance",
    "BackupError",
    "FileEntry",
    "Manifest",
    "read_manifest",
    "safe_relative",
    "sha256_of",
    "verify_files",
    "write_manifest",
]

FORMAT = "mailstead-backup"
VERSION = 1
MANIFEST_NAME = "manifest.json"
DATA_DIR = "data"
_CHUNK = 1 << 20

#: Told the length of each chunk read or written, for a progress bar.
Advance = Callable[[int], None]


def _ignore(octets: int) -> None:
    pass


class BackupError(Exception):
    """A backup or restore that cannot go on; the text is one line for the operator."""


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One copied file: its path below the data directory and what its bytes must be."""

    path: str  # POSIX, relative, checked by safe_relative
    size: int
    sha256: str
    mode: int  # the permission bits it had in the data directory
    mtime_ns: int  # Maildir: a message without an index row takes its date from it


@dataclass(slots=True)
class Manifest:
    """Owns what ``manifest.json`` says: the files, the directories and the UID counters."""

    created: str  # RFC 3339 UTC: when the backup began
    finished: str  # when the last file was copied
    hostname: str  # the machine the backup was taken on
    source: str  # the data directory it was taken from
    mailstead_version: str
    files: list[FileEntry] = field(default_factory=list)
    dirs: list[str] = field(default_factory=list)
    # Per index file, per mailbox: UIDNEXT as the live index had it when the
    # last file was copied. A restore raises the copied index's UIDNEXT to
    # it, so no UID handed out before the backup finished names another
    # message after the restore (RFC 9051 §2.3.1.1).
    uidnext: dict[str, dict[str, int]] = field(default_factory=dict)

    def total_size(self) -> int:
        return sum(entry.size for entry in self.files)

    def to_json(self) -> dict[str, object]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "created": self.created,
            "finished": self.finished,
            "hostname": self.hostname,
            "source": self.source,
            "mailstead_version": self.mailstead_version,
            "dirs": self.dirs,
            "files": [
                {
                    "path": e.path,
                    "size": e.size,
                    "sha256": e.sha256,
                    "mode": f"{e.mode:04o}",
                    "mtime_ns": e.mtime_ns,
                }
                for e in self.files
            ],
            "uidnext": self.uidnext,
        }


def safe_relative(text: object) -> str:
    """``text`` if it is a relative POSIX path that stays below its root, else BackupError.

    A manifest is input: a path like ``../../etc/passwd`` or ``/etc`` must
    never let a restore write outside the data directory.
    """
    if not isinstance(text, str) or not text or "\\" in text or "\x00" in text:
        raise BackupError(f"manifest names an unsafe path: {text!r}")
    parts = PurePosixPath(text).parts
    if text.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise BackupError(f"manifest names an unsafe path: {text!r}")
    if "/".join(parts) != text:
        raise BackupError(f"manifest names an unsafe path: {text!r}")
    return text


def write_manifest(backup_dir: Path, manifest: Manifest) -> None:
    """Write ``manifest.json`` atomically (temporary file, fsync, rename)."""
    data = json.dumps(manifest.to_json(), indent=1, ensure_ascii=False).encode() + b"\n"
    write_file_atomically(backup_dir / MANIFEST_NAME, data, mode=0o600)


def _field(data: Mapping[str, object], key: str, kind: type, where: str) -> object:
    value = data.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise BackupError(f"{where}: {key!r} missing or not a {kind.__name__}")
    return value


def _entry(item: object, where: str) -> FileEntry:
    if not isinstance(item, dict):
        raise BackupError(f"{where}: a file entry is not an object")
    path = safe_relative(item.get("path"))
    size = _field(item, "size", int, where)
    digest = _field(item, "sha256", str, where)
    mode = _field(item, "mode", str, where)
    mtime_ns = _field(item, "mtime_ns", int, where)
    assert isinstance(size, int) and isinstance(digest, str) and isinstance(mode, str)
    assert isinstance(mtime_ns, int)
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise BackupError(f"{where}: {path}: sha256 is not 64 hex digits")
    try:
        bits = int(mode, 8)
    except ValueError:
        raise BackupError(f"{where}: {path}: mode {mode!r} is not octal") from None
    return FileEntry(path, size, digest, bits & 0o7777, mtime_ns)


def read_manifest(backup_dir: Path) -> Manifest:
    """The manifest of the backup in ``backup_dir``; BackupError if absent or malformed."""
    path = backup_dir / MANIFEST_NAME
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise BackupError(
            f"{path}: missing: not a backup, or one that was interrupted before it finished"
        ) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BackupError(f"{path}: not valid JSON: {exc}") from None
    where = str(path)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise BackupError(f"{where}: not a Mailstead backup manifest")
    if data.get("version") != VERSION:
        raise BackupError(
            f"{where}: backup format version {data.get('version')!r};"
            f" this Mailstead reads {VERSION}"
        )
    files, dirs, uidnext = data.get("files"), data.get("dirs"), data.get("uidnext")
    if not isinstance(files, list) or not isinstance(dirs, list) or not isinstance(uidnext, dict):
        raise BackupError(f"{where}: 'files', 'dirs' or 'uidnext' missing")
    counters: dict[str, dict[str, int]] = {}
    for index, boxes in uidnext.items():
        safe_relative(index)
        if not isinstance(boxes, dict) or not all(
            isinstance(n, str) and isinstance(v, int) for n, v in boxes.items()
        ):
            raise BackupError(f"{where}: uidnext of {index} is not a name → number table")
        counters[index] = dict(boxes)
    manifest = Manifest(
        created=str(_field(data, "created", str, where)),
        finished=str(_field(data, "finished", str, where)),
        hostname=str(_field(data, "hostname", str, where)),
        source=str(_field(data, "source", str, where)),
        mailstead_version=str(_field(data, "mailstead_version", str, where)),
        files=[_entry(item, where) for item in files],
        dirs=[safe_relative(d) for d in dirs],
        uidnext=counters,
    )
    seen: set[str] = set()
    for entry in manifest.files:
        if entry.path in seen:
            raise BackupError(f"{where}: {entry.path} is listed twice")
        seen.add(entry.path)
    return manifest


def sha256_of(fd: int, advance: Advance = _ignore) -> tuple[int, str]:
    """``(size, hex SHA-256)`` of everything readable from ``fd`` from where it stands."""
    digest = hashlib.sha256()
    size = 0
    while chunk := os.read(fd, _CHUNK):
        digest.update(chunk)
        size += len(chunk)
        advance(len(chunk))
    return size, digest.hexdigest()


def verify_files(backup_dir: Path, manifest: Manifest, advance: Advance = _ignore) -> None:
    """Read every file of the backup against the manifest; BackupError naming the first bad one."""
    root = backup_dir / DATA_DIR
    for entry in manifest.files:
        path = root / entry.path
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            raise BackupError(f"{path}: missing from the backup") from None
        except OSError as exc:
            raise BackupError(f"{path}: cannot read: {exc.strerror or exc}") from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise BackupError(f"{path}: not a regular file")
            size, digest = sha256_of(fd, advance)
        finally:
            os.close(fd)
        if size != entry.size:
            raise BackupError(f"{path}: {size} bytes, the manifest says {entry.size}")
        if digest != entry.sha256:
            raise BackupError(f"{path}: checksum mismatch (SHA-256 differs from the manifest)")
