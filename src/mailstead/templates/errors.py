"""The one error every stage of rendering a template raises."""

from __future__ import annotations

__all__ = ["TemplateError"]


class TemplateError(Exception):
    """The template could not be rendered; the text is one line for its author,
    naming the file and, where known, the line (``welcome.html:12: …``)."""
