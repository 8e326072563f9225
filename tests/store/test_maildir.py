"""Maildir delivery: tmp/ → fsync → new/ → fsync new/, and nothing left on failure."""

from __future__ import annotations

import errno
import os
import re
import stat
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import overload

import pytest

from mailstead.durable import Buffer
from mailstead.store.maildir import Maildir

MESSAGE: list[Buffer] = [
    b"Return-Path: <a@example.net>\n",
    b"Subject: hi\n\n",
    memoryview(b"body\n"),
]
NAME_RE = re.compile(r"^(\d+)\.M(\d{1,6})P(\d+)Q(\d+)\.([^/:,]+),S=(\d+),W=(\d+)$")


def _fd_path(fd: int) -> str:
    return os.readlink(f"/proc/self/fd/{fd}")


@pytest.fixture
def maildir(tmp_path: Path) -> Maildir:
    md = Maildir(tmp_path / "example.test" / "alice" / "Maildir")
    md.create()
    return md


def test_create_makes_0700_subdirectories(maildir: Maildir) -> None:
    for sub in (maildir.tmp, maildir.new, maildir.cur):
        assert stat.S_IMODE(sub.stat().st_mode) == 0o700
    assert maildir.create() is False  # idempotent


def test_deliver_writes_message_into_new(maildir: Maildir) -> None:
    name = maildir.deliver(MESSAGE)
    m = NAME_RE.match(name)
    assert m, name
    assert int(m.group(3)) == os.getpid()
    assert int(m.group(6)) == 47 == sum(len(p) for p in MESSAGE)
    # ,W= is the size IMAP and POP3 report: every LF becomes CRLF.
    assert int(m.group(7)) == 47 + b"".join(bytes(p) for p in MESSAGE).count(b"\n")
    path = maildir.new / name
    assert path.read_bytes() == b"".join(bytes(p) for p in MESSAGE)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.stat().st_nlink == 1
    assert os.listdir(maildir.tmp) == []


def test_names_are_unique_and_hostname_sanitised(
    maildir: Maildir, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mailstead.store import maildir as maildir_mod

    monkeypatch.setattr(maildir_mod._names, "_host", maildir_mod._sanitised_hostname())
    monkeypatch.setattr("socket.gethostname", lambda: "mx/1:2")
    assert maildir_mod._sanitised_hostname() == "mx\\0571\\0722"
    names = {maildir.deliver([b"x\n"]) for _ in range(50)}
    assert len(names) == 50


def test_durability_order(maildir: Maildir, monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[tuple[str, ...]] = []
    real_fsync, real_link, real_rename = os.fsync, os.link, os.rename

    def fsync(fd: int) -> None:
        events.append(("fsync", _fd_path(fd)))
        real_fsync(fd)

    def link(src: str, dst: str) -> None:
        events.append(("link", str(src), str(dst)))
        real_link(src, dst)

    def rename(src: str, dst: str) -> None:
        events.append(("rename", str(src), str(dst)))
        real_rename(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "link", link)
    monkeypatch.setattr(os, "rename", rename)
    name = maildir.deliver(MESSAGE)
    tmp_file = events[0][1]
    assert os.path.dirname(tmp_file) == str(maildir.tmp)
    assert events == [
        ("fsync", tmp_file),  # the file's data
        ("link", tmp_file, str(maildir.new / name)),  # its name in new/
        ("fsync", str(maildir.new)),  # that name, durable
    ]


def _assert_empty(md: Maildir) -> None:
    assert os.listdir(md.tmp) == []
    assert os.listdir(md.new) == []


def test_disk_full_mid_write_leaves_nothing(
    maildir: Maildir, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_writev = os.writev
    calls = 0

    def writev_then_enospc(fd: int, bufs: list[bytes]) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            return real_writev(fd, [bytes(bufs[0])[:5]])  # a short write...
        raise OSError(errno.ENOSPC, "No space left on device")  # ...then the disk is full

    monkeypatch.setattr(os, "writev", writev_then_enospc)
    with pytest.raises(OSError) as err:
        maildir.deliver(MESSAGE)
    assert err.value.errno == errno.ENOSPC
    _assert_empty(maildir)


class _PartsFailingOnWrite(Sequence[bytes]):
    """Parts whose second element can be sized but fails when it is written."""

    def __init__(self) -> None:
        self.reads = 0

    def __len__(self) -> int:
        return 2

    @overload
    def __getitem__(self, i: int) -> bytes: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[bytes]: ...
    def __getitem__(self, i: int | slice) -> bytes | Sequence[bytes]:
        if isinstance(i, slice):
            raise NotImplementedError
        if i >= 2:
            raise IndexError(i)
        if i == 1:
            self.reads += 1
            if self.reads > 1:
                raise OSError(errno.EIO, "source went away")
        return b"part\n"


def test_part_failing_mid_write_leaves_nothing(maildir: Maildir) -> None:
    parts = _PartsFailingOnWrite()
    with pytest.raises(OSError, match="source went away"):
        maildir.deliver(parts)
    assert parts.reads == 2  # it failed while writing, after tmp/ had a file
    _assert_empty(maildir)


def test_file_fsync_failure_leaves_nothing(
    maildir: Maildir, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError):
        maildir.deliver(MESSAGE)
    _assert_empty(maildir)


def test_directory_fsync_failure_withdraws_the_message(
    maildir: Maildir, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.EIO, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(OSError):
        maildir.deliver(MESSAGE)
    _assert_empty(maildir)  # the sender gets 4xx and retries: no duplicate


def test_never_overwrites_an_existing_file(
    maildir: Maildir, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mailstead.store import maildir as maildir_mod

    names = iter(["1.M1P1Q1.h", "1.M1P1Q2.h"])
    monkeypatch.setattr(maildir_mod._names, "next", lambda: next(names))
    (maildir.new / "1.M1P1Q1.h,S=2,W=3").write_bytes(b"old")
    name = maildir.deliver([b"x\n"])
    assert name == "1.M1P1Q2.h,S=2,W=3"
    assert (maildir.new / "1.M1P1Q1.h,S=2,W=3").read_bytes() == b"old"
    assert os.listdir(maildir.tmp) == []


def test_missing_maildir_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        Maildir(tmp_path / "nope").deliver([b"x\n"])


def test_concurrent_deliveries(maildir: Maildir) -> None:
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        try:
            for i in range(50):
                maildir.deliver([f"Subject: {t}-{i}\n\n".encode(), b"body\n"])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(32)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    names = os.listdir(maildir.new)
    assert len(names) == 1600 == len(set(names))
    assert os.listdir(maildir.tmp) == []
    subjects = {(maildir.new / n).read_bytes().split(b"\n")[0] for n in names}
    assert len(subjects) == 1600
