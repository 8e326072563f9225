"""The ``mailstead`` group: the global ``--config`` option and every command group."""

from __future__ import annotations

import os
from pathlib import Path

import click

from mailstead.cli.alias import alias
from mailstead.cli.backup import backup, restore
from mailstead.cli.check import check
from mailstead.cli.dns_records import dns_records
from mailstead.cli.init import init
from mailstead.cli.log import log
from mailstead.cli.net import net
from mailstead.cli.queue import queue
from mailstead.cli.send import send
from mailstead.cli.serve import serve
from mailstead.cli.template import template
from mailstead.cli.tls import tls
from mailstead.cli.user import user
from mailstead.cli.webhook import webhook

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=lambda: os.environ.get("MAILSTEAD_CONFIG") or "mailstead.toml",
    show_default="$MAILSTEAD_CONFIG or ./mailstead.toml",
    help="Configuration file.",
)
@click.pass_context
def main(ctx: click.Context, config_path: Path) -> None:
    """Mailstead: a self-hosted mail system."""
    ctx.obj = config_path


for _command in (
    init,
    serve,
    user,
    alias,
    queue,
    send,
    dns_records,
    check,
    log,
    backup,
    restore,
    webhook,
    net,
    template,
    tls,
):
    main.add_command(_command)
