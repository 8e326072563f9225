"""mbox (mboxrd) delivery: escaping round-trip, locking, and truncation on failure."""

from __future__ import annotations

import errno
import os
import re
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mailstead.store.mbox import Mbox, MboxLockTimeout, escape_mboxrd, from_line

T0 = 0.0  # Thu Jan  1 00:00:00 1970
FROM_T0 = b"Thu Jan  1 00:00:00 1970"


def read_mboxrd(data: bytes) -> list[tuple[bytes, bytes]]:
    """A reference reader: (From line, message) pairs with mboxrd quoting undone."""
    # Every message ends with a newline and is followed by one blank line.
    assert data.startswith(b"From ") and data.endswith(b"\n\n")
    chunks = re.split(rb"\n\n(?=From )", data[:-1])
    out: list[tuple[bytes, bytes]] = []
    for i, chunk in enumerate(chunks):
        sep, _, body = chunk.partition(b"\n")
        if i < len(chunks) - 1:
            body += b"\n"  # the split took the message's last newline
        out.append((sep, re.sub(rb"^>(>*From )", rb"\1", body, flags=re.M)))
    return out


@pytest.fixture
def mbox(tmp_path: Path) -> Mbox:
    return Mbox(tmp_path / "mbox", lock_timeout=2.0)


def test_first_delivery_creates_0600_file(mbox: Mbox) -> None:
    mbox.deliver([b"Subject: hi\n", b"\n", b"body\n"], "alice@example.test", T0)
    assert mbox.path.read_bytes() == (
        b"From alice@example.test " + FROM_T0 + b"\nSubject: hi\n\nbody\n\n"
    )
    assert stat.S_IMODE(mbox.path.stat().st_mode) == 0o600
    assert not mbox.lock_path.exists()


def test_null_sender_is_mailer_daemon() -> None:
    assert from_line("", T0) == b"From MAILER-DAEMON " + FROM_T0 + b"\n"


def test_sender_cannot_break_the_separator_line() -> None:
    assert from_line('"a b\nFrom x"@example.test', T0) == (
        b'From "a_b_From_x"@example.test ' + FROM_T0 + b"\n"
    )


@pytest.mark.parametrize(
    ("line", "escaped"),
    [
        (b"From x", b">From x"),
        (b">From x", b">>From x"),
        (b">>From x", b">>>From x"),
        (b"From", b"From"),  # no space: not a separator
        (b" From x", b" From x"),
        (b"from x", b"from x"),
        (b">>Fromx", b">>Fromx"),
        (b"a From x", b"a From x"),
    ],
)
def test_escape_one_line(line: bytes, escaped: bytes) -> None:
    assert escape_mboxrd(b"Subject: s\n\n" + line + b"\n") == b"Subject: s\n\n" + escaped + b"\n"


def test_escaping_round_trip(mbox: Mbox) -> None:
    messages = [
        b"Subject: one\n\nFrom the start\n>From quoted\n>>From twice\nplain\n",
        b"From: not a separator\nSubject: two\n\nFrom here\n",
        b"Subject: three\n\nno final newline",
    ]
    # Parts split inside "From " lines must not defeat the escaping.
    mbox.deliver([messages[0][:15], messages[0][15:19], messages[0][19:]], "a@x.test", T0)
    mbox.deliver([messages[1]], "", T0)
    mbox.deliver([messages[2]], "b@x.test", T0)
    data = mbox.path.read_bytes()
    assert b"\n>From the start\n>>From quoted\n>>>From twice\n" in data
    assert b"\n>From here\n" in data
    got = read_mboxrd(data)
    assert [sep for sep, _ in got] == [
        b"From a@x.test " + FROM_T0,
        b"From MAILER-DAEMON " + FROM_T0,
        b"From b@x.test " + FROM_T0,
    ]
    assert [body for _, body in got] == [messages[0], messages[1], messages[2] + b"\n"]
    assert data.endswith(b"no final newline\n\n")


def test_appends_after_foreign_message_without_blank_line(mbox: Mbox) -> None:
    mbox.path.write_bytes(b"From x@y Thu Jan  1 00:00:00 1970\nSubject: old\n\nold")
    mbox.path.chmod(0o600)
    mbox.deliver([b"Subject: new\n\nnew\n"], "a@x.test", T0)
    got = read_mboxrd(mbox.path.read_bytes())
    assert [body for _, body in got] == [b"Subject: old\n\nold\n", b"Subject: new\n\nnew\n"]


def test_durability_order_on_creation(mbox: Mbox, monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[tuple[str, str]] = []
    real_fsync, real_writev = os.fsync, os.writev

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def writev(fd: int, bufs: list[bytes]) -> int:
        events.append(("write", os.readlink(f"/proc/self/fd/{fd}")))
        return real_writev(fd, bufs)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "writev", writev)
    mbox.deliver([b"Subject: x\n\nx\n"], "a@x.test", T0)
    assert events == [
        ("write", str(mbox.path)),
        ("fsync", str(mbox.path)),
        ("fsync", str(mbox.path.parent)),  # the new file's name
    ]
    events.clear()
    mbox.deliver([b"Subject: y\n\ny\n"], "a@x.test", T0)
    assert events == [("write", str(mbox.path)), ("fsync", str(mbox.path))]


def test_disk_full_truncates_to_old_length(mbox: Mbox, monkeypatch: pytest.MonkeyPatch) -> None:
    mbox.deliver([b"Subject: first\n\nfirst\n"], "a@x.test", T0)
    before = mbox.path.read_bytes()
    real_writev = os.writev

    def writev_then_enospc(fd: int, bufs: list[bytes]) -> int:
        real_writev(fd, [bytes(bufs[0])[:7]])  # part of the From line reaches the file
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "writev", writev_then_enospc)
    with pytest.raises(OSError) as err:
        mbox.deliver([b"Subject: second\n\n", b"second\n"], "a@x.test", T0)
    assert err.value.errno == errno.ENOSPC
    assert mbox.path.read_bytes() == before
    assert not mbox.lock_path.exists()


def test_fsync_failure_truncates_to_old_length(mbox: Mbox, monkeypatch: pytest.MonkeyPatch) -> None:
    mbox.deliver([b"Subject: first\n\nfirst\n"], "a@x.test", T0)
    before = mbox.path.read_bytes()
    real_fsync = os.fsync
    calls = 0

    def fsync(fd: int) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OSError(errno.EIO, "Input/output error")
        real_fsync(fd)  # the fsync after the truncation

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(OSError):
        mbox.deliver([b"Subject: second\n\nsecond\n"], "a@x.test", T0)
    assert mbox.path.read_bytes() == before
    assert calls == 2


def test_refuses_symlink(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_bytes(b"")
    (tmp_path / "mbox").symlink_to(target)
    with pytest.raises(OSError):
        Mbox(tmp_path / "mbox").deliver([b"x\n"], "a@x.test", T0)
    assert target.read_bytes() == b""
    assert not (tmp_path / "mbox.lock").exists()


def test_held_dotlock_makes_delivery_wait(mbox: Mbox) -> None:
    mbox.lock_path.write_bytes(b"4242\n")
    done = threading.Event()

    def deliver() -> None:
        mbox.deliver([b"Subject: x\n\nx\n"], "a@x.test", T0)
        done.set()

    t = threading.Thread(target=deliver)
    t.start()
    time.sleep(0.2)
    assert not done.is_set()
    assert not mbox.path.exists()  # nothing opened or written before the dotlock
    mbox.lock_path.unlink()
    t.join(5)
    assert done.is_set()
    assert mbox.path.read_bytes().endswith(b"\nx\n\n")
    assert not mbox.lock_path.exists()


def test_held_dotlock_times_out(tmp_path: Path) -> None:
    box = Mbox(tmp_path / "mbox", lock_timeout=0.2)
    box.lock_path.write_bytes(b"4242\n")
    started = time.monotonic()
    with pytest.raises(MboxLockTimeout):
        box.deliver([b"x\n"], "a@x.test", T0)
    assert 0.2 <= time.monotonic() - started < 2
    assert box.lock_path.read_bytes() == b"4242\n"  # someone else's lock: left alone
    assert not box.path.exists()


def test_stale_dotlock_is_broken(mbox: Mbox) -> None:
    mbox.lock_path.write_bytes(b"4242\n")
    old = time.time() - 301
    os.utime(mbox.lock_path, (old, old))
    started = time.monotonic()
    mbox.deliver([b"Subject: x\n\nx\n"], "a@x.test", T0)
    assert time.monotonic() - started < 1
    assert not mbox.lock_path.exists()
    assert mbox.path.read_bytes().endswith(b"\nx\n\n")


HOLD_FCNTL = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.lockf(fd, fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.readline()
"""


def test_fcntl_lock_of_another_process_is_honoured(tmp_path: Path) -> None:
    box = Mbox(tmp_path / "mbox", lock_timeout=0.3)
    box.path.write_bytes(b"")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_FCNTL, str(box.path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"locked\n"
        with pytest.raises(MboxLockTimeout):
            box.deliver([b"x\n"], "a@x.test", T0)
        assert not box.lock_path.exists()  # our dotlock released after the fcntl attempt
        assert box.path.read_bytes() == b""
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(5)
    box.deliver([b"x\n"], "a@x.test", T0)
    assert box.path.read_bytes() == b"From a@x.test " + FROM_T0 + b"\nx\n\n"


def test_concurrent_deliveries(mbox: Mbox) -> None:
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        try:
            for i in range(20):
                mbox.deliver([f"Subject: {t}-{i}\n\nFrom {t}\n".encode()], "a@x.test", T0)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    got = read_mboxrd(mbox.path.read_bytes())
    assert len(got) == 160
    assert len({body for _, body in got}) == 160
    for _, body in got:
        thread = body.split(b"-")[0].removeprefix(b"Subject: ")
        assert body.endswith(b"\n\nFrom " + thread + b"\n")
