"""``mailstead tls``: the ACME certificate as an operator sees it, and renewing it by hand."""

from __future__ import annotations

import asyncio
import logging
import time

import click

from mailstead.cli.common import Failure, echo_json, json_option, load, one_line_errors, rfc3339

__all__ = ["tls"]


@click.group()
def tls() -> None:
    """Automatic TLS certificates with ACME ([tls.acme], docs/tls.md).

    \b
    Example:
      mailstead tls status
      mailstead tls renew
    """


@tls.command()
@json_option
@click.pass_context
@one_line_errors
def status(ctx: click.Context, as_json: bool) -> None:
    """Show the ACME certificate, when it renews, and the last failure.

    \b
    Example:
      mailstead tls status
      mailstead tls status --json
    """
    from mailstead.acme_client import CertificateKeeper

    config = load(ctx)
    if config.tls.acme is None:
        raise Failure("[tls.acme] is not configured; serving " + str(config.tls.cert))
    keeper = CertificateKeeper(config, None)
    validity = keeper.files.validity()
    backoff = keeper.files.backoff()
    due = keeper.due_at()
    info: dict[str, object] = {
        "directory": config.tls.acme.directory,
        "challenge": config.tls.acme.challenge,
        "names": list(keeper.names),
        "certificate": str(keeper.files.cert) if validity else None,
        "not_before": rfc3339(validity.not_before) if validity else None,
        "not_after": rfc3339(validity.not_after) if validity else None,
        "renew_at": rfc3339(max(due, backoff.next_attempt)),
        "failures": backoff.failures,
        "last_error": backoff.last_error or None,
    }
    if as_json:
        echo_json(info)
        return
    click.echo(f"directory: {info['directory']} ({info['challenge']})")
    click.echo(f"names: {', '.join(keeper.names)}")
    if validity is None:
        click.echo(f"certificate: none yet (serving {config.tls.cert} until one is issued)")
    else:
        click.echo(f"certificate: {info['certificate']}")
        click.echo(f"valid: {info['not_before']} to {info['not_after']}")
    when = max(due, backoff.next_attempt)
    click.echo(f"renews: {'now' if when <= time.time() else info['renew_at']}")
    if backoff.failures:
        click.echo(f"failures in a row: {backoff.failures}, last: {backoff.last_error}")


@tls.command()
@click.option("--force", is_flag=True, help="Renew even if the certificate is not due.")
@click.pass_context
@one_line_errors
def renew(ctx: click.Context, force: bool) -> None:
    """Obtain a certificate now if one is due (ignoring the wait after a failure).

    A running server picks the new certificate up within a minute, without
    dropping connections.

    \b
    Example:
      mailstead tls renew
      mailstead tls renew --force
    """
    from mailstead.acme_client import CertificateKeeper, Outcome

    config = load(ctx)
    if config.tls.acme is None:
        raise Failure("[tls.acme] is not configured")
    keeper = CertificateKeeper(config, None)
    # The outcome is printed below; the keeper's log lines are for serve's log.
    logging.getLogger("mailstead.acme").addHandler(logging.NullHandler())
    outcome = asyncio.run(keeper.renew(force=force, ignore_backoff=True))
    if outcome is Outcome.BUSY:
        raise Failure("another process is renewing the certificate now; try again later")
    if outcome is Outcome.FAILED:
        raise Failure(f"renewal failed: {keeper.files.backoff().last_error}")
    validity = keeper.files.validity()
    until = rfc3339(validity.not_after) if validity else "?"
    if outcome is Outcome.RENEWED:
        click.echo(f"renewed: {', '.join(keeper.names)}, valid until {until}")
    else:
        click.echo(f"not due: valid until {until}, renews {rfc3339(keeper.due_at())} (--force)")
