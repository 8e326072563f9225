"""``mailstead template``: render an e-mail template, lint it, preview it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from mailstead.cli.common import Failure, one_line_errors

if TYPE_CHECKING:
    from mailstead.templates.pipeline import RenderedEmail

__all__ = ["template"]

_FILE = click.Path(dir_okay=False, path_type=Path)
_data_option = click.option(
    "--data", "data_arg", metavar="JSON|@FILE", help="Template variables: a JSON object or @FILE."
)
_untrusted_option = click.option(
    "--untrusted", is_flag=True, help="Render in Jinja2's sandbox (templates you did not write)."
)


def _render(file: Path, data_arg: str | None, untrusted: bool) -> RenderedEmail:
    from mailstead.templates.errors import TemplateError
    from mailstead.templates.pipeline import EmailTemplate
    from mailstead.templates.variables import load_data

    try:
        return EmailTemplate(file, untrusted=untrusted).render(load_data(data_arg))
    except TemplateError as exc:
        raise Failure(str(exc)) from None


@click.group()
def template() -> None:
    """HTML e-mail templates: render, lint against mail clients, preview.

    \b
    Example:
      mailstead template render welcome.html --data '{"name": "Ana"}' --out welcome.eml --format eml
      mailstead template lint welcome.html --clients outlook,gmail
    """


@template.command()
@click.argument("file", type=_FILE)
@_data_option
@click.option("--out", type=_FILE, help="Write to FILE instead of standard output.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["eml", "html", "text"]),
    default="html",
    show_default=True,
    help="The inlined HTML, its text part, or the whole message.",
)
@click.option(
    "--from", "sender", default="sender@example.invalid", show_default=True, help="Sender (eml)."
)
@click.option(
    "--to", "recipients", multiple=True, help="Recipient (eml; default recipient@example.invalid)."
)
@_untrusted_option
@one_line_errors
def render(
    file: Path,
    data_arg: str | None,
    out: Path | None,
    fmt: str,
    sender: str,
    recipients: tuple[str, ...],
    untrusted: bool,
) -> None:
    """Render FILE (Jinja2 HTML, or MJML if it ends in .mjml) into an e-mail.

    \b
    Example:
      mailstead template render welcome.html --data '{"name": "Ana"}'
      mailstead template render welcome.mjml --data @ana.json --format eml --out welcome.eml
    """
    from mailstead.message.compose import ComposeError, build_message

    rendered = _render(file, data_arg, untrusted)
    if fmt == "eml":
        to = list(recipients) or ["recipient@example.invalid"]
        try:
            output = build_message(sender, to, rendered.subject, rendered.body)
        except ComposeError as exc:
            raise Failure(str(exc)) from None
    else:
        output = (rendered.html if fmt == "html" else rendered.text).encode("utf-8")
    if out is not None:
        out.write_bytes(output)
    else:
        click.echo(output, nl=False)


@template.command()
@click.argument("file", type=_FILE)
@_data_option
@click.option("--clients", help="Client families to check, comma-separated (default: all).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "html"]),
    default="text",
    show_default=True,
)
@click.option(
    "--fail-on",
    type=click.Choice(["error", "warning"]),
    default="error",
    show_default=True,
    help="Exit 1 on findings of this severity or worse.",
)
@_untrusted_option
@one_line_errors
def lint(
    file: Path,
    data_arg: str | None,
    clients: str | None,
    fmt: str,
    fail_on: str,
    untrusted: bool,
) -> None:
    """Check the rendered FILE against what each mail client supports.

    \b
    Example:
      mailstead template lint welcome.html --clients outlook,gmail
      mailstead template lint welcome.html --format json --fail-on warning
    """
    from mailstead.templates.lint import lint as lint_html

    rendered = _render(file, data_arg, untrusted)
    families = [c.strip() for c in clients.split(",") if c.strip()] if clients else None
    try:
        report = lint_html(
            rendered.source_html,
            text=rendered.text,
            clients=families,
            base_dir=file.parent,
            sent_bytes=len(rendered.html.encode("utf-8", "replace")),
        )
    except ValueError as exc:  # an unknown client name
        raise Failure(str(exc)) from None
    if fmt == "json":
        click.echo(json.dumps(report.to_json(), ensure_ascii=False, indent=2))
    elif fmt == "html":
        click.echo(report.to_html())
    else:
        click.echo(report.to_text())
    if report.fails(fail_on):
        raise Failure(f"{file}: findings at or above {fail_on}")


@template.command()
@click.argument("file", type=_FILE)
@_data_option
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for the screenshots and report.html.",
)
@click.option("--outline", is_flag=True, help="Also shots with every table and cell outlined.")
@_untrusted_option
@one_line_errors
def preview(file: Path, data_arg: str | None, out: Path, outline: bool, untrusted: bool) -> None:
    """Screenshots of the rendered FILE in headless Chromium, and an HTML report.

    \b
    Example:
      mailstead template preview welcome.html --data @ana.json --out preview/
    """
    from mailstead.templates.lint import lint as lint_html
    from mailstead.templates.preview import PreviewError
    from mailstead.templates.preview import preview as take

    rendered = _render(file, data_arg, untrusted)
    report = lint_html(
        rendered.source_html,
        text=rendered.text,
        base_dir=file.parent,
        sent_bytes=len(rendered.html.encode("utf-8", "replace")),
    )
    try:
        done = take(rendered.viewable_html(), out, outline=outline, report=report)
    except PreviewError as exc:  # ChromiumMissing says what to install
        raise Failure(str(exc)) from None
    for shot in done.shots:
        note = " (cut)" if shot.cut else ""
        click.echo(f"{shot.path}  {shot.width}x{shot.height}{note}")
    click.echo(f"{done.report}")
