"""Rendering a Jinja2 template into the HTML of an e-mail."""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["TemplateError", "render_template"]


class TemplateError(Exception):
    """The template could not be rendered; the text is one line for its author."""


def render_template(path: Path, data_json: str | None) -> str:
    """Render the Jinja2 template at ``path`` with the JSON object ``data_json``.

    Autoescaping is on for ``.html``/``.htm``/``.xml`` templates, so data
    never becomes markup; an undefined variable is an error rather than an
    empty string (a mail to many people should not say "Dear ,").
    ``{% include %}`` and ``{% extends %}`` find files beside the template.
    """
    import jinja2  # only `send --template` needs it
    from jinja2.sandbox import SandboxedEnvironment

    try:
        data = json.loads(data_json) if data_json is not None else {}
    except json.JSONDecodeError as exc:
        raise TemplateError(f"--data is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise TemplateError("--data must be a JSON object")
    env = SandboxedEnvironment(
        loader=jinja2.FileSystemLoader(path.parent),
        autoescape=jinja2.select_autoescape(["html", "htm", "xml"], default_for_string=False),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    try:
        return env.get_template(path.name).render(data)
    except jinja2.TemplateNotFound as exc:
        raise TemplateError(f"{path}: template not found: {exc.name}") from None
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"{exc.filename or path}:{exc.lineno}: {exc.message}") from None
    except UnicodeDecodeError:
        raise TemplateError(f"{path}: not UTF-8 text") from None
    except jinja2.TemplateError as exc:
        raise TemplateError(f"{path}: {exc}") from None
