"""``mailstead check config|dns``: what is wrong with the setup, and what to do about it."""

from __future__ import annotations

import click

from mailstead.cli.common import (
    Failure,
    config_path,
    echo_json,
    json_option,
    load,
    one_line_errors,
)

__all__ = ["check"]


@click.group()
def check() -> None:
    """Check the configuration, or a domain's DNS records.

    \b
    Example:
      mailstead check config
      mailstead check dns example.org
    """


@check.command("config")
@json_option
@click.pass_context
@one_line_errors
def check_config(ctx: click.Context, as_json: bool) -> None:
    """Report every problem of the configuration, each with its key and reason.

    Exits 1 if any is an error (serve would refuse to run); warnings do not.

    \b
    Example:
      mailstead check config
      mailstead check config --json
    """
    from mailstead.checks.config import check_config as run

    path = config_path(ctx)
    report = run(path)
    errors, warnings = len(report.errors), len(report.warnings)
    if as_json:
        problems = [
            {"severity": p.severity, "key": p.key, "value": p.value, "reason": p.reason}
            for p in report.problems
        ]
        echo_json({"config": str(path), "ok": not errors, "problems": problems})
    else:
        for problem in report.problems:
            click.echo(f"{problem.severity}: {problem.line()}")
        verdict = "OK" if not errors else "serve would refuse to run"
        click.echo(f"{path}: {_count(errors, 'error')}, {_count(warnings, 'warning')}; {verdict}")
    if errors:
        ctx.exit(1)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


@check.command("dns")
@click.argument("domain")
@json_option
@click.pass_context
@one_line_errors
def check_dns(ctx: click.Context, domain: str, as_json: bool) -> None:
    """Check DOMAIN's MX, PTR, SPF, DKIM, DMARC, TLS-RPT and MTA-STS records.

    Asks the resolvers of [delivery] dns_servers (else the system's). Each
    check passes, warns or fails, and prints the record to publish when one
    is missing or wrong. Exits 1 if any check fails. Creates the domain's
    DKIM keys if it has none, as dns-records does.

    \b
    Example:
      mailstead check dns example.org
      mailstead check dns example.org --json
    """
    from mailstead.checks.dns import run_checks
    from mailstead.mailauth.dkim import DKIMError
    from mailstead.mailauth.dnsrecords import DNSRecordsError, zone_text

    config = load(ctx)
    try:
        report = run_checks(config, domain)
    except (DNSRecordsError, DKIMError) as exc:
        raise Failure(str(exc)) from None
    resolvers = [
        f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        for host, port in config.delivery.dns_servers
    ]
    if as_json:
        echo_json(
            {
                "domain": report.domain,
                "resolvers": resolvers,
                "ok": not report.failed,
                "counts": report.counts(),
                "checks": [
                    {
                        "check": c.check,
                        "status": c.status,
                        "name": c.name,
                        "message": c.message,
                        "publish": [
                            {"type": r.type, "name": r.name, "value": r.value} for r in c.publish
                        ],
                    }
                    for c in report.checks
                ],
            }
        )
    else:
        via = ", ".join(resolvers) or "the system resolver"
        click.echo(f"{report.domain}: asking {via}")
        for c in report.checks:
            click.echo(f"{c.status.upper():<5} {c.check:<12} {c.name}: {c.message}")
            for rec in c.publish:
                verb = "ask for" if rec.type == "PTR" else "publish"
                line = zone_text([rec]).splitlines()[-1]  # the record, not its comment
                click.echo(f"{'':<5} {verb}: {line}")
        counts = report.counts()
        click.echo(
            f"{counts['pass']} passed, {_count(counts['warn'], 'warning')}, "
            f"{counts['fail']} failed, {counts['info']} for information"
        )
    if report.failed:
        ctx.exit(1)
