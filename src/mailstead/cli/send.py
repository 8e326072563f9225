"""``mailstead send``: submit a message as a local user, without the network.

With ``--template`` the message is rendered (Jinja2 or MJML, CSS inlined,
a text part, local images attached), linted (errors refuse it unless
``--force``) and submitted; ``--data @FILE.jsonl`` makes one personalised
message per line, each line's ``to`` (if any) taking the place of ``--to``.

``--cc`` recipients are named in a Cc field, ``--bcc`` ones only in the
envelope; ``--attach FILE`` adds a file (its MIME type guessed from its
name); ``--text -`` reads the text body from standard input (UTF-8).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click

from mailstead.cli.common import Failure, load, one_line_errors, open_directory, open_queue
from mailstead.limits import SMTPLimits

if TYPE_CHECKING:
    from mailstead.config import Config
    from mailstead.message.compose import Attachment
    from mailstead.mta.receiver import Committed, Receiver
    from mailstead.templates.pipeline import EmailTemplate
    from mailstead.templates.variables import Record

__all__ = ["send"]

# More recipients than this get a progress bar while they are checked.
_PROGRESS_THRESHOLD = 10


@dataclass(frozen=True, slots=True)
class _Extras:
    """What every message of a run gets besides its --to: copies and attached files."""

    cc: tuple[str, ...] = ()
    bcc: tuple[str, ...] = ()
    attachments: tuple[Attachment, ...] = ()

    def envelope(self, to: Sequence[str]) -> list[str]:
        return [*to, *self.cc, *self.bcc]


@dataclass(slots=True)
class _Tally:
    """What a run of ``send`` did, for its summary line."""

    messages: int = 0
    local: int = 0
    remote: int = 0

    def add(self, done: Committed) -> None:
        self.messages += 1
        self.local += len(done.local)
        self.remote += len(done.remote)


@click.command()
@click.option("--from", "sender", required=True, help="Sender: a local user or its alias.")
@click.option(
    "--to",
    "recipients",
    multiple=True,
    help="Recipient (repeatable; required unless each --data line has its own 'to').",
)
@click.option("--cc", multiple=True, help="Copy to this address, named in a Cc field (repeatable).")
@click.option(
    "--bcc",
    multiple=True,
    help="Blind copy: in the envelope only, never in the headers (repeatable).",
)
@click.option(
    "--attach",
    "attach_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Attach FILE, its MIME type guessed from its name (repeatable).",
)
@click.option("--subject", help="Subject header (default: the template's subject).")
@click.option("--text", help="Plain-text body; - reads it from standard input (UTF-8).")
@click.option(
    "--html",
    "html_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="HTML body from FILE (UTF-8).",
)
@click.option(
    "--template",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Template FILE (Jinja2 HTML, or MJML if .mjml) rendered into the message.",
)
@click.option(
    "--data",
    "data_arg",
    metavar="JSON|@FILE",
    help="Template variables: a JSON object, @FILE.json, or @FILE.jsonl (a message per line).",
)
@click.option("--untrusted", is_flag=True, help="Render the template in Jinja2's sandbox.")
@click.option("--force", is_flag=True, help="Send even if the lint finds errors.")
@click.pass_context
@one_line_errors
def send(
    ctx: click.Context,
    sender: str,
    recipients: tuple[str, ...],
    cc: tuple[str, ...],
    bcc: tuple[str, ...],
    attach_files: tuple[Path, ...],
    subject: str | None,
    text: str | None,
    html_file: Path | None,
    template: Path | None,
    data_arg: str | None,
    untrusted: bool,
    force: bool,
) -> None:
    """Submit a message as a local user, through the same rules as SMTP submission.

    Local recipients get it at once; remote ones go to the queue, which the
    running server delivers (it looks every 2 seconds). With --html or --template
    and no --text, the text part is derived from the HTML. Nothing is sent
    unless every recipient is accepted.

    \b
    Example:
      df -h | mailstead send --from me@example.org --to ops@example.org \\
          --subject "disk space" --text - --attach /var/log/syslog
    """
    from mailstead.message.compose import ComposeError, attachment_from_file, build_message
    from mailstead.mta import submit as sub
    from mailstead.templates.errors import TemplateError

    if html_file is not None and template is not None:
        raise Failure("give --html or --template, not both")
    if data_arg is not None and template is None:
        raise Failure("--data needs --template")
    if text == "-":
        text = _stdin_text()
    config = load(ctx)
    extras = _Extras(cc, bcc, tuple(attachment_from_file(p) for p in attach_files))
    try:
        if template is None:
            if not extras.envelope(recipients):
                raise click.UsageError("Missing option '--to'.")
            content = build_message(
                sender,
                recipients,
                subject,
                sub.load_body(text, html_file),
                cc=cc,
                attachments=extras.attachments,
            )
            with _receiver(config) as receiver:
                done = _submit(receiver, sender, extras.envelope(recipients), content)
            _report(done)
        else:
            _send_template(
                config,
                template,
                data_arg,
                untrusted,
                force,
                sender,
                recipients,
                subject,
                text,
                extras,
            )
    except (sub.SubmitError, ComposeError, TemplateError) as exc:
        raise Failure(str(exc)) from None


def _stdin_text() -> str:
    """The text body from standard input (``--text -``), UTF-8."""
    data = sys.stdin.buffer.read(SMTPLimits().message_size + 1)
    if len(data) > SMTPLimits().message_size:
        raise Failure(f"standard input is too large (at most {SMTPLimits().message_size} bytes)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise Failure("standard input is not UTF-8 text") from None


def _send_template(
    config: Config,
    template: Path,
    data_arg: str | None,
    untrusted: bool,
    force: bool,
    sender: str,
    recipients: Sequence[str],
    subject: str | None,
    text: str | None,
    extras: _Extras,
) -> None:
    """Render, lint and submit one message, or one per line of a JSON-lines file."""
    from mailstead.message.compose import ComposeError
    from mailstead.mta.submit import SubmitError
    from mailstead.templates.errors import TemplateError
    from mailstead.templates.pipeline import EmailTemplate
    from mailstead.templates.variables import count_records, is_lines, records

    compiled = EmailTemplate(template, untrusted=untrusted)
    if data_arg is None or not is_lines(data_arg):
        if not extras.envelope(recipients):
            raise click.UsageError("Missing option '--to'.")
        ((_, record),) = records(data_arg or "{}")
        content = _compose(compiled, record, force, sender, recipients, subject, text, extras)
        with _receiver(config) as receiver:
            _report(_submit(receiver, sender, extras.envelope(recipients), content))
        return
    tally = _Tally()
    with (
        _receiver(config) as receiver,
        click.progressbar(length=count_records(data_arg), label="sending", file=sys.stderr) as bar,
    ):
        for where, record in records(data_arg):
            try:
                to = _record_recipients(record, recipients)
                content = _compose(compiled, record, force, sender, to, subject, text, extras)
                tally.add(_submit(receiver, sender, extras.envelope(to), content, progress=False))
            except (click.ClickException, SubmitError, ComposeError, TemplateError, OSError) as exc:
                sent = f"; {tally.messages} message(s) sent before it" if tally.messages else ""
                raise Failure(f"{where}: {_one_line(exc)}{sent}") from None
            bar.update(1)
    click.echo(
        f"sent {tally.messages} message(s): {tally.local} delivered locally, "
        f"{tally.remote} queued for remote recipients"
    )


def _compose(
    compiled: EmailTemplate,
    record: Record,
    force: bool,
    sender: str,
    recipients: Sequence[str],
    subject: str | None,
    text: str | None,
    extras: _Extras,
) -> bytes:
    from dataclasses import replace

    from mailstead.message.compose import build_message

    rendered = compiled.render(record)
    if not force and compiled.lint(rendered).fails("error"):
        raise Failure(
            f"the lint finds errors (see: mailstead template lint {compiled.path}); "
            "fix them or pass --force"
        )
    body = rendered.body if text is None else replace(rendered.body, text=text)
    return build_message(
        sender,
        recipients,
        subject or rendered.subject,
        body,
        cc=extras.cc,
        attachments=extras.attachments,
    )


def _record_recipients(record: Record, recipients: Sequence[str]) -> Sequence[str]:
    to = record.get("to")
    if to is None:
        if not recipients:
            raise Failure("no 'to' in this line and no --to")
        return recipients
    if isinstance(to, str):
        return [to]
    if isinstance(to, list) and to and all(isinstance(a, str) for a in to):
        return [str(a) for a in to]
    raise Failure("'to' must be an address or a list of addresses")


def _one_line(exc: Exception) -> str:
    if isinstance(exc, click.ClickException):
        return exc.message
    if isinstance(exc, OSError):
        return f"{exc.filename}: {exc.strerror}" if exc.filename else str(exc.strerror or exc)
    return str(exc)


@contextmanager
def _receiver(config: Config) -> Iterator[Receiver]:
    """The MSA receiver of ``config``, with its directory and queue open."""
    from mailstead.mta.receiver import Receiver, Role
    from mailstead.store import open_mail_store

    with open_directory(config) as directory, open_queue(config) as q:
        yield Receiver(
            Role.MSA,
            hostname=config.hostname,
            domains=config.domains,
            directory=directory,
            store=open_mail_store(config).delivery,  # [storage] backend and format
            queue=q,
            limits=SMTPLimits(),
        )


def _submit(
    receiver: Receiver,
    sender: str,
    recipients: Sequence[str],
    content: bytes,
    *,
    progress: bool = True,
) -> Committed:
    from mailstead.mta.submit import submit

    count = len(set(recipients))
    if not progress or count <= _PROGRESS_THRESHOLD:
        return submit(receiver, sender, recipients, content)
    with click.progressbar(length=count, label="checking recipients", file=sys.stderr) as bar:
        return submit(receiver, sender, recipients, content, on_routed=lambda _: bar.update(1))


def _report(done: Committed) -> None:
    click.echo(done.reply.one_line())
    if done.remote:
        click.echo(f"queue id {done.queue_id} for {len(done.remote)} remote recipient(s)")
