"""``mailstead backup`` and ``mailstead restore``: a copy of the data directory and back."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

from mailstead.backup import BackupError, restore_backup, serving_evidence, take_backup
from mailstead.cli.common import Failure, load, one_line_errors

if TYPE_CHECKING:
    from click._termui_impl import ProgressBar

__all__ = ["backup", "restore"]


class _Bar:
    """A progress bar on stderr once the total is known; nothing when stderr is no terminal
    (a backup from cron logs only its result)."""

    def __init__(self, label: str, stack: ExitStack) -> None:
        self.label = label
        self._stack = stack
        self._bar: ProgressBar[int] | None = None

    def begin(self, total: int) -> None:
        self._bar = self._stack.enter_context(
            click.progressbar(
                length=max(total, 1),
                label=self.label,
                file=sys.stderr,
                hidden=not sys.stderr.isatty(),
            )
        )

    def advance(self, octets: int) -> None:
        if self._bar is not None:
            self._bar.update(octets)


@contextmanager
def _bar(label: str) -> Iterator[_Bar]:
    with ExitStack() as stack:
        yield _Bar(label, stack)


def _size(octets: int) -> str:
    return f"{octets / 1_000_000:.1f} MB"


@click.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.pass_context
@one_line_errors
def backup(ctx: click.Context, directory: Path) -> None:
    """Copy the data directory into DIRECTORY (new or empty), while the server runs.

    Databases through SQLite's online backup, then the mail, queue and key
    files, then manifest.json with every file's size and SHA-256.
    """
    config = load(ctx)
    try:
        with _bar("backing up") as bar:
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
    directory that is not empty is renamed aside, never deleted.
    """
    config = load(ctx)
    busy = serving_evidence(config)
    if busy is not None:
        raise Failure(f"{config.data_dir}: a server seems to be using it ({busy}); stop it first")
    try:
        with _bar("restoring") as bar:
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
    if done.dropped_queue_ids:
        click.echo(
            f"dropped {len(done.dropped_queue_ids)} queue entries delivered during the backup"
        )
