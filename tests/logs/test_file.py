"""The log file serve appends to: shared by the workers, rotated by size, read back."""

from __future__ import annotations

import io
import logging
from pathlib import Path

from mailstead import logs
from mailstead.cli.log import follow


def record(text: str, queue_id: str | None = None) -> logging.LogRecord:
    extra = logs.fields(queue_id=queue_id) if queue_id else {}
    made = logging.getLogger("mailstead.test").makeRecord(
        "mailstead.test", logging.INFO, __file__, 1, text, (), None, extra=extra
    )
    return made


def test_workers_share_the_file_across_a_rotation(tmp_path: Path) -> None:
    path = tmp_path / "log" / "mailstead.log"
    path.parent.mkdir()
    # Two workers: each has the file open, as after the fork.
    first = logs.SharedRotatingFileHandler(path, max_bytes=400, backups=2)
    second = logs.SharedRotatingFileHandler(path, max_bytes=400, backups=2)
    for handler in (first, second):
        handler.setFormatter(logs.LogfmtFormatter())
    try:
        for i in range(4):
            first.handle(record(f"first {i}"))  # about 100 bytes each: rotates once
        second.handle(record("second, after the rotation"))
    finally:
        first.close()
        second.close()
    current = path.read_text()
    rotated = path.with_name("mailstead.log.1").read_text()
    # The second worker saw the new file and wrote there, not into the rotated one.
    assert 'msg="second, after the rotation"' in current
    assert "second" not in rotated
    assert len(rotated.splitlines()) + len(current.splitlines()) == 5


def test_setup_writes_stderr_and_the_file_in_one_format(tmp_path: Path) -> None:
    path = tmp_path / "var" / "log" / "mailstead.log"
    stderr = io.StringIO()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        logs.setup("json", file=path, stream=stderr)
        logging.getLogger("mailstead.test").info("hello", extra=logs.fields(queue_id="Q1"))
    finally:
        for handler in root.handlers:
            handler.close()
        root.handlers[:], root.level = saved
    assert stderr.getvalue() == path.read_text()
    line = logs.parse_line(stderr.getvalue())
    assert line is not None and (line["queue_id"], line["msg"]) == ("Q1", "hello")
    assert path.parent.stat().st_mode & 0o777 == 0o700


def test_follow_reads_rotated_files_oldest_first(tmp_path: Path) -> None:
    old = tmp_path / "mailstead.log.1"
    new = tmp_path / "mailstead.log"
    old.write_text(
        "time=1 session=sA ip=192.0.2.1 msg=connect\n"
        "time=2 session=sA ip=192.0.2.1 queue_id=OTHER msg=received\n"
        "time=3 session=sA ip=192.0.2.1 queue_id=Q1 msg=received\n"
        "not a line of ours\n"
    )
    new.write_text(
        '{"time": "4", "session": "sB", "msg": "connect"}\n'
        'time=5 session=sA ip=192.0.2.1 msg="NOQUEUE: reject: RCPT from unknown[192.0.2.1]"\n'
        "time=6 session=o1 queue_id=Q1 to=<b@x.test> status=sent msg=ok\n"
        'time=7 session=o1 relay=mx.test[192.0.2.9]:25 msg="connect to …: Connection refused"\n'
    )
    times = [logs.parse_line(line) for line in follow("Q1", [old, new])]
    assert [t and t["time"] for t in times] == ["1", "3", "5", "6", "7"]
    assert follow("NOPE", [old, new]) == []
    assert follow("Q1", [tmp_path / "missing.log"]) == []
