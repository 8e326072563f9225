"""``mailstead dns-records``: what to publish in DNS for a local domain."""

from __future__ import annotations

import click

from mailstead.cli.common import Failure, echo_json, json_option, load, one_line_errors

__all__ = ["dns_records"]


@click.command("dns-records")
@click.argument("domain")
@json_option
@click.pass_context
@one_line_errors
def dns_records(ctx: click.Context, domain: str, as_json: bool) -> None:
    """Print the MX, SPF, DKIM, DMARC and TLS-RPT records to publish for DOMAIN,
    and the PTR record to ask for for each address its mail leaves from.

    Creates the domain's DKIM keys if it has none. Warns on standard error
    when the hostname is localhost: the MX and PTR records would name it.

    \b
    Example:
      mailstead dns-records example.org
      mailstead dns-records example.org --json
    """
    from mailstead.checks.config import hostname_warning
    from mailstead.mailauth.dkim import DKIMError
    from mailstead.mailauth.dnsrecords import DNSRecordsError, records, zone_text

    config = load(ctx)
    if warning := hostname_warning(config.hostname):
        click.echo(f"mailstead: warning: hostname {warning}", err=True)
    try:
        recs = records(config, domain)
    except (DNSRecordsError, DKIMError) as exc:
        raise Failure(str(exc)) from None
    if as_json:
        echo_json([{"type": r.type, "name": r.name, "value": r.value} for r in recs])
    else:
        click.echo(zone_text(recs), nl=False)
