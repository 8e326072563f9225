"""``mailstead serve``: run every configured listener in the foreground."""

from __future__ import annotations

import click

from mailstead.cli.common import Failure, load, one_line_errors

__all__ = ["serve"]


@click.command()
@click.pass_context
@one_line_errors
def serve(ctx: click.Context) -> None:
    """Run every configured listener until SIGINT or SIGTERM; SIGHUP reloads the config.

    \b
    Example:
      mailstead --config /etc/mailstead/mailstead.toml serve
    """
    config = load(ctx, as_root=True)
    # Heavy imports only when serving.
    from mailstead.app import ListenError
    from mailstead.daemon import ServeError
    from mailstead.daemon import serve as run
    from mailstead.net.supervisor import WorkerFailed
    from mailstead.system.lock import AlreadyRunning
    from mailstead.system.privileges import PrivilegeError

    try:
        run(config)
    except (ListenError, ServeError, WorkerFailed, AlreadyRunning, PrivilegeError) as exc:
        raise Failure(str(exc)) from None
