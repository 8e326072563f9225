"""Restoring: verified first, written aside, settled, then swapped in; what it guarantees."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from mailstead.backup import take
from mailstead.backup.manifest import DATA_DIR, MANIFEST_NAME, BackupError
from mailstead.backup.restore import restore_backup
from mailstead.backup.take import take_backup
from mailstead.mta.queue import Queue
from mailstead.store.account import Account
from mailstead.store.index import INDEX_NAME
from mailstead.store.maildir import Maildir
from tests.backup.conftest import MAILDIR, MBOX, message


def inbox_of(data_dir: Path) -> tuple[int, dict[int, tuple[tuple[str, ...], bytes]]]:
    """UIDVALIDITY and UID → (flags, bytes) of alice's INBOX, as a new process sees it."""
    box = Account(data_dir / MAILDIR).mailbox("INBOX")
    box.refresh()
    return box.uidvalidity, {u: (box.messages[u].flags, box.read(u)) for u in box.uids}


def test_a_restore_gives_back_the_same_uids_flags_and_files(data_dir: Path, tmp_path: Path) -> None:
    before = inbox_of(data_dir)
    take_backup(data_dir, tmp_path / "backup")
    target = tmp_path / "restored"
    done = restore_backup(tmp_path / "backup", target)
    assert (done.replaced, done.dropped_queue_ids) == (None, ())
    assert inbox_of(target) == before
    assert before[1][2][0] == ("\\Flagged", "\\Seen")
    assert (target / MBOX).read_bytes() == (data_dir / MBOX).read_bytes()
    assert (target / "tls/key.pem").read_bytes() == (data_dir / "tls/key.pem").read_bytes()
    with Queue(target) as queue:
        [queued] = queue.list()
        assert queue.open_message(queued.id) == b"Subject: out\r\n\r\nqueued\r\n"
    for top, _, files in os.walk(target):
        assert stat.S_IMODE(os.stat(top).st_mode) == 0o700, top
        for name in files:
            mode = stat.S_IMODE(os.stat(f"{top}/{name}").st_mode)
            assert mode == (0o644 if name == "cert.pem" else 0o600), name
    assert os.listdir(target / MAILDIR / "tmp") == []
    assert not list(tmp_path.glob(".restored.restoring-*"))


def test_what_changed_during_the_backup_is_settled(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Index first, files after: each change made in between has one outcome."""
    live = Account(data_dir / MAILDIR).mailbox("INBOX")
    live.refresh()
    uidvalidity = live.uidvalidity
    with Queue(data_dir) as queue:
        [queued] = queue.list()
    real = take._snapshot_database

    def snapshot_then_serve(source: str, dest: Path) -> None:
        real(source, dest)
        if not source.endswith(INDEX_NAME):
            return
        # The server goes on while the files are copied:
        live.expunge([1])  # a row without its file
        live.store([3], ["\\Answered"], "+")  # a file renamed
        Maildir(data_dir / MAILDIR).deliver([message(4)])
        live.refresh()  # UID 4, handed out after the snapshot
        Maildir(data_dir / MAILDIR).deliver([message(5)])  # not yet indexed
        with Queue(data_dir) as q:
            q.delete(queued.id)  # delivered: a queue row without its file

    monkeypatch.setattr(take, "_snapshot_database", snapshot_then_serve)
    manifest = take_backup(data_dir, tmp_path / "backup")
    assert manifest.uidnext == {f"{MAILDIR}/{INDEX_NAME}": {"INBOX": 5}}
    done = restore_backup(tmp_path / "backup", tmp_path / "restored")
    assert done.dropped_queue_ids == (queued.id,)
    got_validity, got = inbox_of(tmp_path / "restored")
    assert got_validity == uidvalidity
    # UID 1 expunged; 2 and 3 kept with the flags their files carry; the
    # two messages the snapshot lacks take UIDs above every UID handed out
    # before the backup finished (4 named message 4 on the live server).
    assert sorted(got) == [2, 3, 5, 6]
    assert got[2][0] == ("\\Flagged", "\\Seen")
    assert got[3][0] == ("\\Answered",)
    assert b"message 4" in got[5][1] and b"message 5" in got[6][1]
    with Queue(tmp_path / "restored") as queue:
        assert queue.list() == []


def test_a_data_dir_in_use_is_replaced_only_with_force(data_dir: Path, tmp_path: Path) -> None:
    take_backup(data_dir, tmp_path / "backup")
    target = tmp_path / "other"
    target.mkdir()
    (target / "directory.sqlite3").write_bytes(b"someone else's")
    with pytest.raises(BackupError, match=r"other: not empty; pass --force"):
        restore_backup(tmp_path / "backup", target)
    done = restore_backup(tmp_path / "backup", target, force=True)
    assert done.replaced is not None and done.replaced.name.startswith("other.before-restore-")
    assert (done.replaced / "directory.sqlite3").read_bytes() == b"someone else's"
    assert inbox_of(target) == inbox_of(data_dir)


def test_an_empty_data_dir_is_filled_without_force(data_dir: Path, tmp_path: Path) -> None:
    take_backup(data_dir, tmp_path / "backup")
    (tmp_path / "empty").mkdir()
    assert restore_backup(tmp_path / "backup", tmp_path / "empty").replaced is None


@pytest.mark.parametrize("damage", ["byte", "missing", "manifest"])
def test_a_damaged_backup_is_refused_before_anything_is_written(
    data_dir: Path, tmp_path: Path, damage: str
) -> None:
    take_backup(data_dir, tmp_path / "backup")
    copied = tmp_path / "backup" / DATA_DIR / MBOX
    if damage == "byte":
        data = bytearray(copied.read_bytes())
        data[10] ^= 1
        copied.write_bytes(bytes(data))
        reason = f"{copied}: checksum mismatch"
    elif damage == "missing":
        copied.unlink()
        reason = f"{copied}: missing from the backup"
    else:
        (tmp_path / "backup" / MANIFEST_NAME).unlink()
        reason = "interrupted"
    target = tmp_path / "restored"
    with pytest.raises(BackupError, match=reason):
        restore_backup(tmp_path / "backup", target)
    assert not target.exists()
    assert not list(tmp_path.glob(".restored.*"))


def test_a_manifest_pointing_outside_is_refused(data_dir: Path, tmp_path: Path) -> None:
    take_backup(data_dir, tmp_path / "backup")
    path = tmp_path / "backup" / MANIFEST_NAME
    data = json.loads(path.read_text())
    data["dirs"].append("../escape")
    path.write_text(json.dumps(data))
    with pytest.raises(BackupError, match="unsafe path"):
        restore_backup(tmp_path / "backup", tmp_path / "restored")
    assert not (tmp_path / "escape").exists()
