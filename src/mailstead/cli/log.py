"""``mailstead log``: one message's story, from the log file ``serve`` appends to."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import click

from mailstead import logs
from mailstead.cli.common import Failure, load, one_line_errors

__all__ = ["follow", "log"]


def _lines(files: list[Path]) -> Iterator[tuple[str, dict[str, str]]]:
    """Each line of ``files`` in order, with its fields; lines of another shape are skipped."""
    for path in files:
        try:
            handle = path.open(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            continue  # rotated away meanwhile
        with handle:
            for raw in handle:
                parsed = logs.parse_line(raw)
                if parsed is not None:
                    yield raw.rstrip("\n"), parsed


def follow(queue_id: str, files: list[Path]) -> list[str]:
    """The lines about message ``queue_id``, in the order they were written:
    its own, and those of its sessions that name no message (the SMTP session
    that received it: connect, login, refused recipients, disconnect; an
    outbound session: a host that refused the connection)."""
    sessions: set[str] = set()
    for _, line in _lines(files):
        if line.get("queue_id") == queue_id and "session" in line:
            sessions.add(line["session"])
    return [
        raw
        for raw, line in _lines(files)
        if line.get("queue_id") == queue_id
        or ("queue_id" not in line and line.get("session") in sessions)
    ]


@click.command("log")
@click.option(
    "--queue-id",
    "queue_id",
    required=True,
    metavar="ID",
    help="The id of a `250 … queued as ID` reply, a Received header or `queue list`.",
)
@click.pass_context
@one_line_errors
def log(ctx: click.Context, queue_id: str) -> None:
    """Follow one message through reception, queueing, attempts and delivery.

    Reads the file `serve` appends its log to ([log] file, by default
    <data_dir>/log/mailstead.log, and its rotated copies), oldest first.

    \b
    Example:
      mailstead log --queue-id 06620E480B8B1ECA3441326A
    """
    config = load(ctx)
    if config.log.file is None:
        raise Failure("[log] file = false: serve keeps no log file to read (see journalctl)")
    files = [path for path in config.log.files() if path.exists()]
    if not files:
        raise Failure(f"no log file at {config.log.file}: has `mailstead serve` run?")
    found = follow(queue_id.strip(), files)
    if not found:
        raise Failure(f"no line about {queue_id} in {config.log.file} or its rotated copies")
    for line in found:
        click.echo(line)
