"""Durable I/O helpers: writev of many parts, durable mkdir, group-committed dir fsync."""

from __future__ import annotations

import errno
import itertools
import os
import threading
import time
from pathlib import Path

import pytest

from mailstead import durable as fsync_mod
from mailstead.durable import Buffer, DirectorySyncer, buffer_size, make_dirs, write_all


def _fd_path(fd: int) -> str:
    return os.readlink(f"/proc/self/fd/{fd}")


def test_write_all_concatenates_without_joining(tmp_path: Path) -> None:
    data = bytearray(b"0123456789")
    parts: list[Buffer] = [b"head\n", memoryview(data)[2:5], bytearray(b"-"), b""]
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        assert write_all(fd, parts) == 9
    finally:
        os.close(fd)
    assert (tmp_path / "f").read_bytes() == b"head\n234-"


def test_write_all_counts_bytes_of_wide_memoryviews(tmp_path: Path) -> None:
    wide = memoryview(b"abcdefgh").cast("I")  # 2 items, 8 bytes
    assert buffer_size([wide]) == 8
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        write_all(fd, [wide])
    finally:
        os.close(fd)
    assert (tmp_path / "f").read_bytes() == b"abcdefgh"


def test_write_all_resumes_after_short_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_writev = os.writev

    def one_byte_at_a_time(fd: int, bufs: list[bytes]) -> int:
        first = next(bytes(b)[:1] for b in bufs if len(b))
        return real_writev(fd, [first])

    monkeypatch.setattr(os, "writev", one_byte_at_a_time)
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        write_all(fd, [b"ab", b"", memoryview(b"cde"), b"f"])
    finally:
        os.close(fd)
    assert (tmp_path / "f").read_bytes() == b"abcdef"


def test_write_all_more_parts_than_iov_max(tmp_path: Path) -> None:
    parts = [bytes([65 + i % 26]) for i in range(5000)]
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        assert write_all(fd, parts) == 5000
    finally:
        os.close(fd)
    assert (tmp_path / "f").read_bytes() == b"".join(parts)


def test_make_dirs_fsyncs_each_changed_parent_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(_fd_path(fd))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    md = tmp_path / "d" / "u" / "Maildir"
    assert make_dirs(md / "tmp", md / "new", md / "cur")
    assert sorted(synced) == sorted(
        str(p) for p in (tmp_path, tmp_path / "d", tmp_path / "d" / "u", md)
    )
    for sub in ("tmp", "new", "cur"):
        assert (md / sub).stat().st_mode & 0o777 == 0o700
    synced.clear()
    assert not make_dirs(md / "tmp", md / "new", md / "cur")
    assert synced == []


def test_make_dirs_refuses_a_file_in_the_way(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"")
    with pytest.raises(OSError):
        make_dirs(tmp_path / "f" / "sub")


class _Recorder:
    """A fake directory fsync that logs (start, end) on a global sequence."""

    def __init__(self, delay: float = 0.002) -> None:
        self.lock = threading.Lock()
        self.seq = 0
        self.fsyncs: list[tuple[int, int]] = []
        self.delay = delay

    def tick(self) -> int:
        with self.lock:
            self.seq += 1
            return self.seq

    def fsync_dir(self, path: object) -> None:
        start = self.tick()
        time.sleep(self.delay)
        end = self.tick()
        with self.lock:
            self.fsyncs.append((start, end))


def test_group_commit_covers_every_caller(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rec = _Recorder()
    monkeypatch.setattr(fsync_mod, "fsync_dir", rec.fsync_dir)
    syncer = DirectorySyncer(tmp_path)
    calls: list[tuple[int, int]] = []
    calls_lock = threading.Lock()

    def deliver() -> None:
        for _ in range(20):
            renamed = rec.tick()  # the "rename into new/" this sync must cover
            syncer.sync()
            returned = rec.tick()
            with calls_lock:
                calls.append((renamed, returned))

    threads = [threading.Thread(target=deliver) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 320
    for renamed, returned in calls:
        # Some fsync started after the rename and ended before sync() returned.
        assert any(renamed < start and end < returned for start, end in rec.fsyncs)
    assert len(rec.fsyncs) < len(calls)  # coalesced
    # Never two directory fsyncs at once.
    spans = sorted(rec.fsyncs)
    assert all(a_end < b_start for (_, a_end), (b_start, _) in itertools.pairwise(spans))


def test_group_commit_failure_reaches_its_batch_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entered = threading.Event()
    release = threading.Event()
    count = 0

    def fake_fsync_dir(path: object) -> None:
        nonlocal count
        count += 1
        if count == 1:
            entered.set()
            release.wait(5)
            raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(fsync_mod, "fsync_dir", fake_fsync_dir)
    syncer = DirectorySyncer(tmp_path)
    results: dict[str, BaseException | None] = {}

    def run(name: str) -> None:
        try:
            syncer.sync()
            results[name] = None
        except OSError as exc:
            results[name] = exc

    a = threading.Thread(target=run, args=("a",))
    a.start()
    assert entered.wait(5)
    followers = [threading.Thread(target=run, args=(n,)) for n in ("b", "c")]
    for t in followers:
        t.start()
    time.sleep(0.05)  # let b and c join the next batch
    release.set()
    for t in [a, *followers]:
        t.join(5)
    err = results["a"]
    assert isinstance(err, OSError) and err.errno == errno.EIO
    assert results["b"] is None and results["c"] is None
    assert count == 2


def test_group_commit_reports_failure_to_followers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # b and c arrive while a's fsync runs; their own batch fails: both see it.
    gate = threading.Event()
    entered = threading.Event()
    count = 0

    def fake_fsync_dir(path: object) -> None:
        nonlocal count
        count += 1
        if count == 1:
            entered.set()
            gate.wait(5)
            return
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(fsync_mod, "fsync_dir", fake_fsync_dir)
    syncer = DirectorySyncer(tmp_path)
    errors: list[BaseException | None] = []
    lock = threading.Lock()

    def run() -> None:
        try:
            syncer.sync()
            err: BaseException | None = None
        except OSError as exc:
            err = exc
        with lock:
            errors.append(err)

    a = threading.Thread(target=run)
    a.start()
    assert entered.wait(5)
    others = [threading.Thread(target=run) for _ in range(2)]
    for t in others:
        t.start()
    time.sleep(0.05)
    gate.set()
    for t in [a, *others]:
        t.join(5)
    assert errors.count(None) == 1
    assert sum(isinstance(e, OSError) for e in errors) == 2
    assert count == 2


def test_real_directory_fsync(tmp_path: Path) -> None:
    DirectorySyncer(tmp_path).sync()
    with pytest.raises(FileNotFoundError):
        DirectorySyncer(tmp_path / "missing").sync()
