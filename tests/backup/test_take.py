"""Taking a backup: what is copied, in which order, and how files changing meanwhile are met."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from mailstead.backup import take
from mailstead.backup.manifest import DATA_DIR, BackupError, read_manifest, verify_files
from mailstead.backup.take import plan_backup, take_backup
from mailstead.store.index import INDEX_NAME
from mailstead.store.maildir_names import split_name
from tests.backup.conftest import MAILDIR, MBOX, message


def test_the_plan_sorts_what_the_data_dir_holds(data_dir: Path) -> None:
    plan = plan_backup(data_dir)
    assert plan.databases == ["directory.sqlite3", "queue.sqlite3", f"{MAILDIR}/{INDEX_NAME}"]
    assert plan.maildirs == [MAILDIR]
    assert plan.mboxes == [MBOX]
    assert {f for f in plan.files if not f.startswith("queue/msg/")} == {
        "tls/cert.pem",
        "tls/key.pem",
    }
    assert len([f for f in plan.files if f.startswith("queue/msg/")]) == 1
    # In flight, never a promise: the queue's and the Maildir's tmp/.
    assert "queue/tmp" not in plan.dirs
    assert f"{MAILDIR}/tmp" in plan.dirs
    assert not any("in-flight" in f or "being-delivered" in f for f in plan.files)


def test_a_backup_holds_everything_with_a_manifest(data_dir: Path, tmp_path: Path) -> None:
    dest = tmp_path / "backup"
    manifest = take_backup(data_dir, dest)
    assert read_manifest(dest) == manifest
    verify_files(dest, manifest)
    paths = {e.path for e in manifest.files}
    maildir_files = sorted(p for p in paths if p.startswith(f"{MAILDIR}/"))
    assert len([p for p in maildir_files if "/cur/" in p]) == 3
    assert any(p.endswith(":2,FS") for p in maildir_files)
    assert {"directory.sqlite3", "queue.sqlite3", MBOX, "tls/key.pem"} <= paths
    assert not any(p.endswith(("-wal", "-shm", "link", "fifo")) for p in paths)
    assert not any("/tmp/" in p for p in paths)
    assert (dest / DATA_DIR / MAILDIR / "tmp").is_dir()
    assert manifest.uidnext == {f"{MAILDIR}/{INDEX_NAME}": {"INBOX": 4}}
    for entry in manifest.files:
        copied = dest / DATA_DIR / entry.path
        assert copied.stat().st_mode & 0o777 == 0o600
        assert copied.stat().st_mtime_ns == entry.mtime_ns
    assert [e.mode for e in manifest.files if e.path == "tls/key.pem"] == [0o600]
    # A database copy is one file with every committed row.
    with sqlite3.connect(dest / DATA_DIR / "directory.sqlite3") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)
        assert conn.execute("SELECT count(*) FROM users").fetchone() == (1,)


def test_the_destination_must_be_new_or_empty(data_dir: Path, tmp_path: Path) -> None:
    dest = tmp_path / "backup"
    dest.mkdir()
    (dest / "old").write_text("x")
    with pytest.raises(BackupError, match="not empty"):
        take_backup(data_dir, dest)
    with pytest.raises(BackupError, match="must not lie inside the data directory"):
        take_backup(data_dir, data_dir / "backups" / "today")


def test_an_interrupted_backup_has_no_manifest(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(take, "_copy_mbox", crash)
    with pytest.raises(OSError):
        take_backup(data_dir, tmp_path / "backup")
    with pytest.raises(BackupError, match="interrupted"):
        read_manifest(tmp_path / "backup")


def test_a_committed_write_is_in_the_snapshot_an_open_one_is_not(
    data_dir: Path, tmp_path: Path
) -> None:
    writer = sqlite3.connect(data_dir / "directory.sqlite3", isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("DELETE FROM users")
    take_backup(data_dir, tmp_path / "backup")
    writer.execute("ROLLBACK")
    writer.close()
    with sqlite3.connect(tmp_path / "backup" / DATA_DIR / "directory.sqlite3") as conn:
        assert conn.execute("SELECT count(*) FROM users").fetchone() == (1,)


def test_a_message_renamed_during_the_copy_is_found_by_its_base(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cur = data_dir / MAILDIR / "cur"
    victim = sorted(os.listdir(cur))[0]
    base = split_name(victim)[0]
    real = take._Writer.copy_path

    def racing(self: take._Writer, source: str, relpath: str) -> bool:
        if source.endswith(victim):  # a STORE elsewhere renames it first
            os.rename(cur / victim, cur / f"{base}:2,R")
        return real(self, source, relpath)

    monkeypatch.setattr(take._Writer, "copy_path", racing)
    manifest = take_backup(data_dir, tmp_path / "backup")
    names = [e.path.rsplit("/", 1)[-1] for e in manifest.files if "/cur/" in e.path]
    assert f"{base}:2,R" in names and victim not in names
    assert len(names) == 3


def test_a_message_expunged_during_the_copy_is_left_out(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cur = data_dir / MAILDIR / "cur"
    victim = sorted(os.listdir(cur))[0]
    real = take._Writer.copy_path

    def racing(self: take._Writer, source: str, relpath: str) -> bool:
        if source.endswith(victim):
            os.unlink(cur / victim)
        return real(self, source, relpath)

    monkeypatch.setattr(take._Writer, "copy_path", racing)
    manifest = take_backup(data_dir, tmp_path / "backup")
    assert len([e for e in manifest.files if "/cur/" in e.path]) == 2


def test_an_mbox_is_copied_under_its_dotlock(data_dir: Path, tmp_path: Path) -> None:
    mbox = data_dir / MBOX
    lock = mbox.with_name("mbox.lock")
    lock.write_text("4242\n")  # another writer is appending

    def finish_append() -> None:
        time.sleep(0.3)
        with mbox.open("ab") as f:
            f.write(b"From x@example.test Mon Dec  7 16:00:00 2026\n" + message(10) + b"\n")
        lock.unlink()

    appender = threading.Thread(target=finish_append)
    appender.start()
    take_backup(data_dir, tmp_path / "backup")
    appender.join()
    copied = (tmp_path / "backup" / DATA_DIR / MBOX).read_bytes()
    assert copied == mbox.read_bytes()
    assert b"message 10" in copied


def test_the_progress_bar_is_told_the_total_once_and_reaches_it(
    data_dir: Path, tmp_path: Path
) -> None:
    totals: list[int] = []
    done: list[int] = []
    take_backup(data_dir, tmp_path / "backup", begin=totals.append, advance=done.append)
    assert len(totals) == 1 and totals[0] > 0
    assert sum(done) == totals[0]
