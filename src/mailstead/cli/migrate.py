"""``mailstead migrate``: a node's data into the cluster database, or back out."""

from __future__ import annotations

from pathlib import Path

import click

from mailstead.cli.common import Failure, load, one_line_errors
from mailstead.cli.progress import ProgressBar, progress_bar
from mailstead.migrate import MigrationError, Report, Unit, migrate_to_postgresql

__all__ = ["BarProgress", "migrate"]


class BarProgress:
    """The migration's progress drawn as the backup's bar (octets of mail)."""

    def __init__(self, bar: ProgressBar) -> None:
        self._bar = bar

    def begin(self, total: int) -> None:
        self._bar.begin(total)

    def advance(self, octets: int) -> None:
        self._bar.advance(octets)

    def finished(self, unit: Unit) -> None:
        """Nothing: the bar counts octets; the report lists the units."""


def _show(report: Report, what: str) -> None:
    for line in report.lines():
        click.echo(line)
    if not report.ok:
        bad = sum(1 for c in report.checks if not c.ok)
        raise Failure(f"verification failed: {bad} of {len(report.checks)} units differ")
    click.echo(
        f"{what}: {len(report.copied)} units copied in this run,"
        f" {len(report.checks)} verified by counts and SHA-256"
    )


@click.command()
@click.option(
    "--to",
    "to",
    type=click.Choice(["postgresql", "maildir"]),
    required=True,
    help="postgresql: copy this node into the database DSN; maildir: export to DIR.",
)
@click.argument("target")
@click.pass_context
@one_line_errors
def migrate(ctx: click.Context, to: str, target: str) -> None:
    """Move this node's data into the cluster database (TARGET a DSN), or out of it
    into a new Maildir data directory (TARGET a directory).

    Users (password hashes as they are), aliases, quotas, every mailbox with
    its UIDs, UIDVALIDITY, flags and keywords, the outbound queue and the
    webhooks. Refused while a server uses the data directory. Each mailbox
    is copied in its own transaction: a run that stops is resumed by running
    the same command again. Both sides are then compared by counts and
    SHA-256 checksums, one line per mailbox.

    \b
    Example:
      mailstead migrate --to postgresql postgresql://mailstead@db.example/mailstead
      mailstead migrate --to maildir /var/lib/mailstead-export
    """
    config = load(ctx)
    try:
        with progress_bar("migrating") as bar:
            if to == "postgresql":
                report = migrate_to_postgresql(config, target, BarProgress(bar))
            else:
                from mailstead.migrate.to_maildir import migrate_to_maildir

                report = migrate_to_maildir(config, Path(target), BarProgress(bar))
    except MigrationError as exc:
        raise Failure(str(exc)) from None
    _show(report, f"migrated to {to}")
