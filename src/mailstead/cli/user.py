"""``mailstead user``: mailboxes that can log in."""

from __future__ import annotations

import click

from mailstead.cli.common import (
    echo_json,
    json_option,
    load,
    one_line_errors,
    open_directory,
    read_password,
)

__all__ = ["user"]


@click.group()
def user() -> None:
    """Manage users (mailboxes that can log in)."""


@user.command("add")
@click.argument("address")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.pass_context
@one_line_errors
def user_add(ctx: click.Context, address: str, password_stdin: bool) -> None:
    """Create user ADDRESS."""
    password = read_password(password_stdin)
    with open_directory(load(ctx)) as d:
        click.echo(f"added user {d.add_user(address, password)}")


@user.command("list")
@json_option
@click.pass_context
@one_line_errors
def user_list(ctx: click.Context, as_json: bool) -> None:
    """List users."""
    with open_directory(load(ctx)) as d:
        users = d.users()
    if as_json:
        echo_json([{"address": a} for a in users])
    else:
        for address in users:
            click.echo(address)


@user.command("del")
@click.argument("address")
@click.pass_context
@one_line_errors
def user_del(ctx: click.Context, address: str) -> None:
    """Delete user ADDRESS (stored mail stays on disk)."""
    with open_directory(load(ctx)) as d:
        d.delete_user(address)
    click.echo(f"deleted user {address}")


@user.command("passwd")
@click.argument("address")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.pass_context
@one_line_errors
def user_passwd(ctx: click.Context, address: str, password_stdin: bool) -> None:
    """Change the password of user ADDRESS."""
    password = read_password(password_stdin)
    with open_directory(load(ctx)) as d:
        d.set_password(address, password)
    click.echo(f"changed password of {address}")
