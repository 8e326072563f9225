"""Template data from the command line: ``--data JSON``, ``--data @file.json`` or,
for one message per record, ``--data @file.jsonl`` (JSON lines, one object each).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from mailstead.limits import TemplateLimits
from mailstead.templates.errors import TemplateError
from mailstead.templates.source import read_text

__all__ = ["Record", "count_records", "is_lines", "load_data", "records"]

#: One data set: the variables of one rendering.
Record = dict[str, object]


def is_lines(value: str) -> bool:
    """Whether ``value`` names a JSON-lines file (``@….jsonl``)."""
    return value.startswith("@") and value.lower().endswith(".jsonl")


def load_data(value: str | None, limits: TemplateLimits | None = None) -> Record:
    """The one object ``value`` gives: JSON text, or ``@FILE`` holding it."""
    limits = limits or TemplateLimits()
    if value is None:
        return {}
    if value.startswith("@"):
        path = Path(value[1:])
        return _object(read_text(path, limits.data_bytes), f"{path}")
    if len(value.encode("utf-8")) > limits.data_bytes:
        raise TemplateError(f"--data is larger than {limits.data_bytes} bytes")
    return _object(value, "--data")


def records(value: str, limits: TemplateLimits | None = None) -> Iterator[tuple[str, Record]]:
    """Each record ``value`` gives with where it came from (``people.jsonl:3``):
    one per non-blank line of a JSON-lines file, else the one object."""
    limits = limits or TemplateLimits()
    if not is_lines(value):
        yield ("--data", load_data(value, limits))
        return
    path = Path(value[1:])
    try:
        with path.open("rb") as f:
            for number, line in enumerate(f, 1):
                where = f"{path}:{number}"
                if len(line) > limits.data_bytes:
                    raise TemplateError(f"{where}: line longer than {limits.data_bytes} bytes")
                if line.strip():
                    yield (where, _object(_utf8(line, where), where))
    except OSError as exc:
        raise TemplateError(f"{path}: {exc.strerror or exc}") from None


def count_records(value: str) -> int:
    """How many records :func:`records` will give (for a progress bar)."""
    if not is_lines(value):
        return 1
    path = Path(value[1:])
    try:
        with path.open("rb") as f:
            return sum(1 for line in f if line.strip())
    except OSError as exc:
        raise TemplateError(f"{path}: {exc.strerror or exc}") from None


def _utf8(line: bytes, where: str) -> str:
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        raise TemplateError(f"{where}: not UTF-8 text") from None


def _object(text: str, where: str) -> Record:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TemplateError(f"{where} is not valid JSON: {exc}") from None
    except RecursionError:
        raise TemplateError(f"{where} is nested too deeply") from None
    if not isinstance(value, dict):
        raise TemplateError(f"{where} must be a JSON object")
    return value
