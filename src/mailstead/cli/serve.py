"""``mailstead serve``: run every configured listener in the foreground."""

from __future__ import annotations

import click

from mailstead.cli.common import Failure, load, one_line_errors

__all__ = ["serve"]


@click.command()
@click.pass_context
@one_line_errors
def serve(ctx: click.Context) -> None:
    """Run every configured listener until SIGINT or SIGTERM."""
    config = load(ctx)
    from mailstead.app import ListenError  # heavy imports only when serving
    from mailstead.app import serve as run

    try:
        run(config)
    except ListenError as exc:
        raise Failure(str(exc)) from None
