"""``mailstead alias``: addresses that forward to others."""

from __future__ import annotations

import click

from mailstead.cli.common import echo_json, json_option, load, one_line_errors, open_directory

__all__ = ["alias"]


@click.group()
def alias() -> None:
    """Manage aliases (addresses that forward to others)."""


@alias.command("add")
@click.argument("alias_address", metavar="ALIAS")
@click.argument("targets", metavar="TARGET...", nargs=-1, required=True)
@click.pass_context
@one_line_errors
def alias_add(ctx: click.Context, alias_address: str, targets: tuple[str, ...]) -> None:
    """Make ALIAS (an address, or @domain for a catch-all) deliver to TARGETs.

    An existing alias gets its targets replaced.
    """
    with open_directory(load(ctx)) as d:
        d.add_alias(alias_address, targets)
    click.echo(f"alias {alias_address} -> {', '.join(targets)}")


@alias.command("list")
@json_option
@click.pass_context
@one_line_errors
def alias_list(ctx: click.Context, as_json: bool) -> None:
    """List aliases and their targets."""
    with open_directory(load(ctx)) as d:
        aliases = d.aliases()
    if as_json:
        echo_json([{"alias": a, "targets": targets} for a, targets in aliases])
    else:
        for a, targets in aliases:
            click.echo(f"{a} -> {', '.join(targets)}")


@alias.command("del")
@click.argument("alias_address", metavar="ALIAS")
@click.pass_context
@one_line_errors
def alias_del(ctx: click.Context, alias_address: str) -> None:
    """Delete ALIAS."""
    with open_directory(load(ctx)) as d:
        d.delete_alias(alias_address)
    click.echo(f"deleted alias {alias_address}")
