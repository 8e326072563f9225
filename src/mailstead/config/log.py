"""``[log]``: how ``serve`` writes its log lines, and where ``mailstead log`` reads them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mailstead.config.reader import Reader, data_path, show
from mailstead.logs import FORMATS as LOG_FORMATS

__all__ = ["LOG_FORMATS", "LogConfig", "load_log"]

# Bounds on the file's rotation: below 64 KiB a busy server rotates every
# few seconds; more than 100 kept files is a job for logrotate or journald.
_MIN_BYTES = 64 * 1024
_MAX_BACKUPS = 100
_MAX_BYTES = 10 * 1024 * 1024
_KEEP = 5


@dataclass(frozen=True, slots=True)
class LogConfig:
    """The log's format, and the file ``serve`` appends it to beside stderr."""

    #: ``logfmt`` or ``json``, for stderr and the file alike.
    format: str = "logfmt"
    #: The file (``None``: stderr only, and ``mailstead log`` has nothing to read).
    file: Path | None = None
    #: Size at which the file is rotated (``mailstead.log.1`` …), in bytes.
    max_bytes: int = _MAX_BYTES
    #: Rotated files kept.
    keep: int = _KEEP

    def files(self) -> list[Path]:
        """The file and its rotated copies, oldest first."""
        if self.file is None:
            return []
        rotated = [self.file.with_name(f"{self.file.name}.{i}") for i in range(self.keep, 0, -1)]
        return [*rotated, self.file]


def load_log(r: Reader, data: Mapping[str, object], data_dir: Path) -> LogConfig:
    """The ``[log]`` table of ``data``; the file defaults to ``<data_dir>/log/mailstead.log``."""
    t = r.table(data, "log", "", ("format", "file", "max_bytes", "keep"))
    fmt = r.string(t.get("format", "logfmt"), "log.format")
    if fmt not in LOG_FORMATS:
        r.fail("log.format", f'expected "logfmt" or "json", got {show(fmt)}')
    file: Path | None = data_dir / "log" / "mailstead.log"
    raw = t.get("file")
    if raw is False:
        file = None
    elif raw is not None:
        if not isinstance(raw, str):
            r.fail("log.file", f"expected a path or false, got {show(raw)}")
        file = data_path(r, data_dir, raw, "log.file")
    max_bytes = r.typed(t.get("max_bytes", _MAX_BYTES), "log.max_bytes", int, "bytes")
    if max_bytes < _MIN_BYTES:
        r.fail("log.max_bytes", f"must be at least {_MIN_BYTES}, got {max_bytes}")
    keep = r.typed(t.get("keep", _KEEP), "log.keep", int, "a whole number")
    if not 1 <= keep <= _MAX_BACKUPS:
        r.fail("log.keep", f"must be 1 to {_MAX_BACKUPS}, got {keep}")
    return LogConfig(format=fmt, file=file, max_bytes=max_bytes, keep=keep)
