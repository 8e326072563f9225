"""The ``mailstead`` group: the global ``--config`` option and every command group."""

from __future__ import annotations

import os
from pathlib import Path

import click
from click.core import ParameterSource

from mailstead import __version__
from mailstead.cli.alias import alias
from mailstead.cli.backup import backup, restore
from mailstead.cli.check import check
from mailstead.cli.common import MailsteadGroup
from mailstead.cli.dns_records import dns_records
from mailstead.cli.init import init
from mailstead.cli.log import log
from mailstead.cli.mailbox import mailbox
from mailstead.cli.migrate import migrate
from mailstead.cli.net import net
from mailstead.cli.queue import queue
from mailstead.cli.send import send
from mailstead.cli.serve import serve
from mailstead.cli.status import reload, status, stop
from mailstead.cli.template import template
from mailstead.cli.tls import tls
from mailstead.cli.user import user
from mailstead.cli.webhook import webhook
from mailstead.config.template import SYSTEM_CONFIG

__all__ = ["main"]


@click.group(
    "mailstead", cls=MailsteadGroup, context_settings={"help_option_names": ["-h", "--help"]}
)
@click.version_option(
    __version__, "--version", prog_name="mailstead", message="%(prog)s %(version)s"
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=lambda: os.environ.get("MAILSTEAD_CONFIG") or "mailstead.toml",
    show_default="$MAILSTEAD_CONFIG, else ./mailstead.toml, else /etc/mailstead/mailstead.toml",
    help="Configuration file.",
)
@click.pass_context
def main(ctx: click.Context, config_path: Path) -> None:
    """Mailstead: a self-hosted mail system.

    \b
    Example:
      mailstead init --domain example.org --hostname mx.example.org
      mailstead serve
      mailstead user add alice@example.org
    """
    ctx.obj = _system_config_instead(ctx, config_path)


def _system_config_instead(ctx: click.Context, path: Path) -> Path:
    """``/etc/mailstead/mailstead.toml`` when no config was named and none is here.

    After ``init --system`` an operator runs ``mailstead user add`` from any
    directory; the system config is the one meant. ``init`` itself keeps
    ./mailstead.toml: it is asked to make a new one.
    """
    named = ctx.get_parameter_source("config_path") is not ParameterSource.DEFAULT
    if named or "MAILSTEAD_CONFIG" in os.environ or ctx.invoked_subcommand == "init":
        return path
    if not path.exists() and SYSTEM_CONFIG.exists():
        return SYSTEM_CONFIG
    return path


for _command in (
    init,
    serve,
    status,
    reload,
    stop,
    user,
    alias,
    mailbox,
    queue,
    send,
    dns_records,
    check,
    log,
    backup,
    restore,
    migrate,
    webhook,
    net,
    template,
    tls,
):
    main.add_command(_command)


from mailstead.cli.sendmail import sendmail  # noqa: E402 - registered after the others

main.add_command(sendmail)
