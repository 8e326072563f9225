"""``mailstead send``: submit a message as a local user, without the network."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from mailstead.cli.common import Failure, load, one_line_errors, open_directory, open_queue
from mailstead.limits import SMTPLimits

__all__ = ["send"]

# More recipients than this get a progress bar while they are checked.
_PROGRESS_THRESHOLD = 10


@click.command()
@click.option("--from", "sender", required=True, help="Sender: a local user or its alias.")
@click.option("--to", "recipients", required=True, multiple=True, help="Recipient (repeatable).")
@click.option("--subject", help="Subject header.")
@click.option("--text", help="Plain-text body.")
@click.option(
    "--html",
    "html_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="HTML body from FILE (UTF-8).",
)
@click.option(
    "--template",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Jinja2 template FILE rendered into the HTML body (.html: autoescaped).",
)
@click.option("--data", "data_json", metavar="JSON", help="Template variables, a JSON object.")
@click.pass_context
@one_line_errors
def send(
    ctx: click.Context,
    sender: str,
    recipients: tuple[str, ...],
    subject: str | None,
    text: str | None,
    html_file: Path | None,
    template: Path | None,
    data_json: str | None,
) -> None:
    """Submit a message as a local user, through the same rules as SMTP submission.

    Local recipients get it at once; remote ones go to the queue, which the
    running server delivers (it looks every 2 seconds). With --html or --template
    and no --text, the text part is derived from the HTML. Nothing is sent
    unless every recipient is accepted.
    """
    from mailstead.message.compose import ComposeError, build_message
    from mailstead.mta import submit as sub
    from mailstead.mta.receiver import Receiver, Role
    from mailstead.store import open_store

    config = load(ctx)
    try:
        body = sub.load_body(text, html_file, template, data_json)
        content = build_message(sender, recipients, subject, body)
        with open_directory(config) as directory, open_queue(config) as q:
            receiver = Receiver(
                Role.MSA,
                hostname=config.hostname,
                domains=config.domains,
                directory=directory,
                store=open_store(config.storage.format, config.mail_root),
                queue=q,
                limits=SMTPLimits(),
            )
            if len(set(recipients)) > _PROGRESS_THRESHOLD:
                with click.progressbar(
                    length=len(set(recipients)),
                    label="checking recipients",
                    file=sys.stderr,
                ) as bar:
                    done = sub.submit(
                        receiver, sender, recipients, content, on_routed=lambda _: bar.update(1)
                    )
            else:
                done = sub.submit(receiver, sender, recipients, content)
    except (sub.SubmitError, ComposeError) as exc:
        raise Failure(str(exc)) from None
    click.echo(" ".join(str(x) for x in (done.reply.code, done.reply.enhanced, *done.reply.lines)))
    if done.remote:
        click.echo(f"queue id {done.queue_id} for {len(done.remote)} remote recipient(s)")
