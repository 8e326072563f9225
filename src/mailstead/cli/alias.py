"""``mailstead alias``: addresses that forward to others."""

from __future__ import annotations

import click

from mailstead.cli.common import echo_json, json_option, load, one_line_errors, open_directory
from mailstead.cli.user import warn_aliases

__all__ = ["alias"]


@click.group()
def alias() -> None:
    """Manage aliases (addresses that forward to others).

    \b
    Example:
      mailstead alias add postmaster@example.org alice@example.org
      mailstead alias list
    """


@alias.command("add")
@click.argument("alias_address", metavar="ALIAS")
@click.argument("targets", metavar="TARGET...", nargs=-1, required=True)
@click.pass_context
@one_line_errors
def alias_add(ctx: click.Context, alias_address: str, targets: tuple[str, ...]) -> None:
    """Make ALIAS (an address, or @domain for a catch-all) deliver to TARGETs.

    An existing alias gets its targets replaced. The alias is stored even
    when something is wrong with it, with a warning on stderr: a local
    target that is neither a user nor an alias, a chain of aliases that
    comes back to ALIAS, an alias that delivers to no one.

    \b
    Example:
      mailstead alias add postmaster@example.org alice@example.org
      mailstead alias add team@example.org alice@example.org bob@example.net
      mailstead alias add @example.org alice@example.org
    """
    with open_directory(load(ctx)) as d:
        warnings = d.alias_warnings([d.add_alias(alias_address, targets)])
    click.echo(f"alias {alias_address} -> {', '.join(targets)}")
    warn_aliases(warnings)


@alias.command("list")
@json_option
@click.pass_context
@one_line_errors
def alias_list(ctx: click.Context, as_json: bool) -> None:
    """List aliases and their targets; what is wrong with them goes to stderr.

    JSON: [{"alias", "targets", "warnings"}] (warnings: a list of texts,
    empty when the alias is fine).

    \b
    Example:
      mailstead alias list
      mailstead alias list --json
    """
    with open_directory(load(ctx)) as d:
        aliases = d.aliases()
        warnings = d.alias_warnings()
    if as_json:
        by_alias: dict[str, list[str]] = {}
        for w in warnings:
            by_alias.setdefault(w.alias, []).append(w.text)
        echo_json(
            [
                {"alias": a, "targets": targets, "warnings": by_alias.get(a, [])}
                for a, targets in aliases
            ]
        )
        return
    for a, targets in aliases:
        click.echo(f"{a} -> {', '.join(targets)}")
    warn_aliases(warnings)


@alias.command("del")
@click.argument("alias_address", metavar="ALIAS")
@click.pass_context
@one_line_errors
def alias_del(ctx: click.Context, alias_address: str) -> None:
    """Delete ALIAS.

    \b
    Example:
      mailstead alias del team@example.org
    """
    with open_directory(load(ctx)) as d:
        d.delete_alias(alias_address)
    click.echo(f"deleted alias {alias_address}")
