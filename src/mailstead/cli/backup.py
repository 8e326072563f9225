"""``mailstead backup`` and ``mailstead restore``: a copy of the data directory and back."""

from __future__ import annotations

import os
from pathlib import Path

import click

from mailstead.backup import BackupError, restore_backup, serving_evidence, take_backup
from mailstead.cli.common import Failure, load, one_line_errors
from mailstead.cli.progress import progress_bar
from mailstead.config import Config

__all__ = ["backup", "restore"]


def _hand_over(config: Config) -> str:
    """Run by root, give the restored tree to the ``[run]`` account the server runs as.

    Says what it did, or why the files stay root's; "" when there was
    nothing to do (not root, or the server stays root).
    """
    if os.geteuid() != 0 or config.run.allow_root:
        return ""
    from mailstead.system.privileges import PrivilegeError, account, give_data_dir

    try:
        owner = account(config.run)
        give_data_dir(config.data_dir, owner, whole=True)
    except PrivilegeError as exc:
        return f"warning: the restored files stay root's: {exc}"
    return f"gave {config.data_dir} to {owner.user}:{owner.group}"


def _refuse_cluster(config: Config, does: str, instead: str) -> None:
    """With the cluster backend the data directory is not where the data is: say so."""
    if config.storage.backend == "postgresql":
        raise Failure(
            f'{does} a node\'s data directory, but with [storage] backend = "postgresql"'
            f" the users, mail, queue and webhooks are in the cluster database: {instead}"
            " (docs/backup.md)"
        )


def _size(octets: int) -> str:
    return f"{octets / 1_000_000:.1f} MB"


@click.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.pass_context
@one_line_errors
def backup(ctx: click.Context, directory: Path) -> None:
    """Copy the data directory into DIRECTORY (new or empty), while the server runs.

    Databases through SQLite's online backup, then the mail, queue and key
    files, then manifest.json with every file's size and SHA-256. A progress
    bar shows on a terminal when the copy takes more than a moment. Refused
    with backend = "postgresql": back up the cluster database with pg_dump.

    \b
    Example:
      mailstead backup /srv/backups/mailstead-$(date +%F)
    """
    config = load(ctx, as_root=True)
    _refuse_cluster(config, "backup copies", "back it up with pg_dump")
    try:
        with progress_bar("backing up") as bar:
            manifest = take_backup(config.data_dir, directory, begin=bar.begin, advance=bar.advance)
    except BackupError as exc:
        raise Failure(str(exc)) from None
    click.echo(
        f"backed up {config.data_dir} to {directory}: {len(manifest.files)} files,"
        f" {_size(manifest.total_size())}"
    )


@click.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Replace a data directory that is not empty.")
@click.pass_context
@one_line_errors
def restore(ctx: click.Context, directory: Path, force: bool) -> None:
    """Check the backup in DIRECTORY against its manifest and restore it as the data directory.

    Refuses while a server uses the data directory. With --force a data
    directory that is not empty is renamed aside, never deleted. Refused
    with backend = "postgresql": restore the cluster database with pg_restore.

    \b
    Example:
      mailstead restore /srv/backups/mailstead-2025-01-31
    """
    config = load(ctx, as_root=True)
    _refuse_cluster(config, "restore writes back", "restore it with pg_restore")
    busy = serving_evidence(config)
    if busy is not None:
        raise Failure(f"{config.data_dir}: a server seems to be using it ({busy}); stop it first")
    try:
        with progress_bar("restoring") as bar:
            done = restore_backup(
                directory, config.data_dir, force=force, begin=bar.begin, advance=bar.advance
            )
    except BackupError as exc:
        raise Failure(str(exc)) from None
    click.echo(
        f"restored {len(done.manifest.files)} files ({_size(done.manifest.total_size())})"
        f" from {directory} taken {done.manifest.created} into {done.data_dir}"
    )
    if done.replaced is not None:
        click.echo(f"the former data directory is now {done.replaced}")
    handed = _hand_over(config)
    if handed:
        click.echo(handed, err=handed.startswith("warning"))
    if done.dropped_queue_ids:
        click.echo(
            f"dropped {len(done.dropped_queue_ids)} queue entries delivered during the backup"
        )
