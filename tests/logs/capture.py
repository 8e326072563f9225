"""Log lines as ``serve`` writes them, captured for a test to read."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager

from mailstead.logs import JSONFormatter, LogfmtFormatter


class Captured:
    """The lines written while the capture was on, as text."""

    def __init__(self) -> None:
        self.stream = io.StringIO()

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    @property
    def lines(self) -> list[str]:
        return self.text.splitlines()

    def matching(self, *parts: str) -> list[str]:
        """The lines containing every one of ``parts``."""
        return [line for line in self.lines if all(p in line for p in parts)]


@contextmanager
def captured(fmt: str = "logfmt") -> Iterator[Captured]:
    """Every ``mailstead`` INFO line, formatted as ``[log] format = fmt`` formats it."""
    out = Captured()
    handler = logging.StreamHandler(out.stream)
    handler.setFormatter(JSONFormatter() if fmt == "json" else LogfmtFormatter())
    logger = logging.getLogger("mailstead")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield out
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
