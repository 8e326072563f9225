"""The manifest: written last, read back strictly, every file checked against it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from mailstead.backup.manifest import (
    DATA_DIR,
    MANIFEST_NAME,
    BackupError,
    FileEntry,
    Manifest,
    read_manifest,
    safe_relative,
    verify_files,
    write_manifest,
)
from mailstead.backup.restore import file_mode

HELLO_SHA = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"


def backup_with(tmp_path: Path, files: dict[str, bytes]) -> Path:
    """A backup directory holding ``files`` and a manifest that matches them."""
    import hashlib

    root = tmp_path / "bk"
    entries = []
    for rel, data in files.items():
        (root / DATA_DIR / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / DATA_DIR / rel).write_bytes(data)
        entries.append(FileEntry(rel, len(data), hashlib.sha256(data).hexdigest(), 0o600, 0))
    write_manifest(root, Manifest("c", "f", "host", "/var", "0", entries, ["mail"], {}))
    return root


def test_a_manifest_reads_back_as_written(tmp_path: Path) -> None:
    manifest = Manifest(
        created="2026-12-07T16:00:00Z",
        finished="2026-12-07T16:00:05Z",
        hostname="mx",
        source="/var/lib/mailstead",
        mailstead_version="0.1.0",
        files=[FileEntry("tls/key.pem", 5, HELLO_SHA, 0o600, 123)],
        dirs=["tls"],
        uidnext={"mail/d/u/Maildir/mailstead-index.sqlite3": {"INBOX": 7}},
    )
    write_manifest(tmp_path, manifest)
    assert read_manifest(tmp_path) == manifest
    assert (tmp_path / MANIFEST_NAME).stat().st_mode & 0o777 == 0o600
    text = json.loads((tmp_path / MANIFEST_NAME).read_text())
    assert (text["format"], text["version"], text["files"][0]["mode"]) == (
        "mailstead-backup",
        1,
        "0600",
    )


@pytest.mark.parametrize(
    "path", ["", "/etc/passwd", "../x", "a/../../x", "a//b", "a/./b", "a/", "a\\b", "a\x00b", 7]
)
def test_unsafe_paths_are_refused(path: object) -> None:
    with pytest.raises(BackupError, match="unsafe path"):
        safe_relative(path)


def test_safe_paths_pass() -> None:
    assert safe_relative("mail/example.test/alice/Maildir/cur/1.M2P3:2,S") == (
        "mail/example.test/alice/Maildir/cur/1.M2P3:2,S"
    )


def test_no_manifest_is_an_interrupted_backup(tmp_path: Path) -> None:
    with pytest.raises(BackupError, match="interrupted"):
        read_manifest(tmp_path)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("{", "not valid JSON"),
        ("[]", "not a Mailstead backup manifest"),
        ('{"format": "mailstead-backup", "version": 99}', "version 99"),
        ('{"format": "mailstead-backup", "version": 1}', "'files', 'dirs' or 'uidnext' missing"),
    ],
)
def test_malformed_manifests_are_refused(tmp_path: Path, text: str, reason: str) -> None:
    (tmp_path / MANIFEST_NAME).write_text(text)
    with pytest.raises(BackupError, match=reason):
        read_manifest(tmp_path)


def test_a_manifest_escaping_the_data_dir_is_refused(tmp_path: Path) -> None:
    root = backup_with(tmp_path, {"a": b"hello"})
    data = json.loads((root / MANIFEST_NAME).read_text())
    data["files"][0]["path"] = "../../etc/cron.d/x"
    (root / MANIFEST_NAME).write_text(json.dumps(data))
    with pytest.raises(BackupError, match=re.escape("unsafe path: '../../etc/cron.d/x'")):
        read_manifest(root)


def test_every_file_is_checked(tmp_path: Path) -> None:
    root = backup_with(tmp_path, {"a": b"hello", "mail/b": b"world"})
    verify_files(root, read_manifest(root))


def test_a_changed_byte_is_named(tmp_path: Path) -> None:
    root = backup_with(tmp_path, {"a": b"hello", "mail/b": b"world"})
    (root / DATA_DIR / "mail/b").write_bytes(b"wOrld")
    with pytest.raises(BackupError) as caught:
        verify_files(root, read_manifest(root))
    assert (
        str(caught.value)
        == f"{root}/data/mail/b: checksum mismatch (SHA-256 differs from the manifest)"
    )


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    root = backup_with(tmp_path, {"a": b"hello", "mail/b": b"world"})
    (root / DATA_DIR / "a").unlink()
    with pytest.raises(BackupError, match=r"/data/a: missing from the backup$"):
        verify_files(root, read_manifest(root))


def test_a_truncated_file_is_named(tmp_path: Path) -> None:
    root = backup_with(tmp_path, {"a": b"hello"})
    (root / DATA_DIR / "a").write_bytes(b"hell")
    with pytest.raises(BackupError, match=r"/data/a: 4 bytes, the manifest says 5$"):
        verify_files(root, read_manifest(root))


def test_a_file_listed_twice_is_refused(tmp_path: Path) -> None:
    root = backup_with(tmp_path, {"a": b"hello"})
    data = json.loads((root / MANIFEST_NAME).read_text())
    data["files"].append(data["files"][0])
    (root / MANIFEST_NAME).write_text(json.dumps(data))
    with pytest.raises(BackupError, match="a is listed twice"):
        read_manifest(root)


@pytest.mark.parametrize(
    ("path", "mode", "restored"),
    [
        ("directory.sqlite3", 0o644, 0o600),
        ("tls/key.pem", 0o644, 0o600),
        ("dkim/example.test/s1.rsa.key", 0o640, 0o600),
        ("mail/example.test/alice/Maildir/cur/1:2,S", 0o644, 0o600),
        ("queue/msg/0123", 0o644, 0o600),
        ("tls/cert.pem", 0o644, 0o644),
        ("tls/cert.pem", 0o666, 0o644),
        ("tls/cert.pem", 0o400, 0o600),
    ],
)
def test_restored_modes(path: str, mode: int, restored: int) -> None:
    assert file_mode(FileEntry(path, 0, HELLO_SHA, mode, 0)) == restored
