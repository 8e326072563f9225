"""Reading template files: confined to the template's folder, bounded in size,
and their front matter (Subject and preheader) split off.

Front matter is an optional block at the very top of a template::

    ---
    subject: Your receipt for order {{ order.id }}
    preheader: Thanks for shopping with us
    ---
    <!doctype html>…

Each line is ``key: value``; the values are Jinja2 text rendered with the
same data as the template. The block's lines are blanked rather than cut,
so line numbers in errors still match the file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jinja2

from mailstead.limits import TemplateLimits
from mailstead.templates.errors import TemplateError

__all__ = ["FolderLoader", "FrontMatter", "read_text", "split_front_matter"]

_FENCE = "---"
_KEYS = ("subject", "preheader")


@dataclass(frozen=True, slots=True)
class FrontMatter:
    """The header values a template sets for itself, unrendered Jinja2 text."""

    subject: str | None = None
    preheader: str | None = None


def read_text(path: Path, limit: int) -> str:
    """The UTF-8 text of ``path``, refused past ``limit`` bytes before reading it all."""
    try:
        with path.open("rb") as f:
            data = f.read(limit + 1)
    except FileNotFoundError:
        raise TemplateError(f"{path}: no such file") from None
    except OSError as exc:
        raise TemplateError(f"{path}: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise TemplateError(f"{path}: larger than {limit} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise TemplateError(f"{path}: not UTF-8 text") from None


def split_front_matter(text: str, shown: str) -> tuple[FrontMatter, str]:
    """The front matter of ``text`` and the template with its lines blanked."""
    lines = text.split("\n")
    if lines[0].rstrip("\r") != _FENCE:
        return FrontMatter(), text
    values: dict[str, str] = {}
    for number, line in enumerate(lines[1:], start=2):
        line = line.rstrip("\r")
        if line == _FENCE:
            body = "\n" * number + "\n".join(lines[number:])
            return FrontMatter(**values), body
        if not line.strip():
            continue
        key, colon, value = line.partition(":")
        key = key.strip().lower()
        if not colon or key not in _KEYS:
            raise TemplateError(
                f"{shown}:{number}: front matter lines are 'key: value' with a key of "
                + ", ".join(_KEYS)
            )
        if key in values:
            raise TemplateError(f"{shown}:{number}: {key} is given twice")
        values[key] = value.strip()
    raise TemplateError(f"{shown}:1: front matter has no closing '{_FENCE}' line")


class FolderLoader(jinja2.BaseLoader):
    """Loads the template and what it includes or extends from one folder, never
    outside it (no ``..``, no absolute names, no symbolic links leading out),
    each file bounded by ``limits.source_bytes``. Keeps each file's front matter."""

    def __init__(self, folder: Path, limits: TemplateLimits) -> None:
        self.folder = folder
        self._root = folder.resolve()
        self._limits = limits
        self.front_matter: dict[str, FrontMatter] = {}
        #: the file names Jinja2 knows the loaded templates by, for error lines
        self.shown: set[str] = set()

    def path_of(self, name: str) -> Path:
        """The file ``name`` stands for, or TemplateError if it is outside the folder."""
        try:
            pieces = jinja2.loaders.split_template_path(name)
        except jinja2.TemplateNotFound:
            raise TemplateError(f"{name}: outside the template's folder") from None
        path = self.folder.joinpath(*pieces)
        if not path.resolve().is_relative_to(self._root):
            raise TemplateError(f"{name}: outside the template's folder")
        return path

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str, Callable[[], bool]]:
        path = self.path_of(template)
        if not path.is_file():
            raise jinja2.TemplateNotFound(template)
        shown = str(path)
        front, body = split_front_matter(read_text(path, self._limits.source_bytes), shown)
        self.front_matter[template] = front
        self.shown.add(shown)
        mtime = path.stat().st_mtime

        def uptodate() -> bool:
            try:
                return path.stat().st_mtime == mtime
            except OSError:
                return False

        return body, shown, uptodate
