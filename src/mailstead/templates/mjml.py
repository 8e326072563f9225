"""MJML (``.mjml``) compiled to e-mail HTML with ``mrml``, errors given with their line.

``<mj-include>`` reads files from the template's folder only (mrml's local
loader refuses paths leading out of it); nothing is fetched over the network.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from mailstead.templates.errors import TemplateError

__all__ = ["CompiledMjml", "compile_mjml"]

# mrml's errors end "in root template at position START:END" (byte offsets).
_POSITION = re.compile(r" in (?:root|included) template(?: at position (\d+):\d+)?$")


@dataclass(frozen=True, slots=True)
class CompiledMjml:
    """The HTML mrml made, and the ``<mj-title>`` and ``<mj-preview>`` it found."""

    html: str
    title: str | None
    preview: str | None


def compile_mjml(source: str, path: Path) -> CompiledMjml:
    """``source`` (the rendered MJML of ``path``) as HTML, or TemplateError with the line."""
    import mrml  # only MJML templates need it

    options = mrml.ParserOptions(include_loader=mrml.local_loader(str(path.parent)))
    try:
        out = mrml.to_html(source, parser_options=options)
    except OSError as exc:
        raise TemplateError(_located(str(exc), source, path)) from None
    return CompiledMjml(html=out.content, title=out.title or None, preview=out.preview or None)


def _located(message: str, source: str, path: Path) -> str:
    found = _POSITION.search(message)
    if found is None:
        return f"{path}: MJML: {message}"
    reason = message[: found.start()]
    if found.group(1) is None:
        return f"{path}: MJML: {reason}"
    line = source.encode("utf-8")[: int(found.group(1))].count(b"\n") + 1
    return f"{path}:{line}: MJML: {reason}"
