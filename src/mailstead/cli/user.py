"""``mailstead user``: mailboxes that can log in."""

from __future__ import annotations

import click

from mailstead.addresses import AddressError, canonical_address
from mailstead.cli.common import (
    Failure,
    echo_json,
    human_size,
    json_option,
    load,
    one_line_errors,
    open_directory,
    read_password,
)
from mailstead.config import Config
from mailstead.directory import AliasWarning
from mailstead.store.inspect import account_totals

__all__ = ["user", "warn_aliases"]

_PASSWORD_HELP = (
    "Read the password from one line of standard input"
    " (without it, a terminal asks twice without echo)."
)


@click.group()
def user() -> None:
    """Manage users (mailboxes that can log in).

    \b
    Example:
      mailstead user add alice@example.org
      mailstead user list
    """


@user.command("add")
@click.argument("address")
@click.option("--password-stdin", is_flag=True, help=_PASSWORD_HELP)
@click.pass_context
@one_line_errors
def user_add(ctx: click.Context, address: str, password_stdin: bool) -> None:
    """Create user ADDRESS (of a local domain) with a password.

    On a terminal the password is asked twice without echo; from a script,
    pipe it in with --password-stdin.

    \b
    Example:
      mailstead user add alice@example.org
      echo 'correct horse' | mailstead user add alice@example.org --password-stdin
    """
    config = load(ctx)
    if not password_stdin:
        _check_new_user(config, address)  # before asking, not after two typed passwords
    password = read_password(password_stdin, address)
    with open_directory(config) as d:
        click.echo(f"added user {d.add_user(address, password)}")


def _check_new_user(config: Config, address: str) -> None:
    try:
        canonical = canonical_address(address)
    except AddressError:
        return  # add_user says what is wrong
    with open_directory(config) as d:
        if canonical in d.users():
            raise Failure(f"user {canonical} already exists")
        if not d.is_local_domain(canonical.rpartition("@")[2]):
            raise Failure(f"user {address!r}: {canonical.rpartition('@')[2]} is not a local domain")


@user.command("list")
@json_option
@click.pass_context
@one_line_errors
def user_list(ctx: click.Context, as_json: bool) -> None:
    """List users with the messages and octets stored for each (every folder together).

    JSON: [{"address", "messages", "unseen", "size"}] (size in octets).

    \b
    Example:
      mailstead user list
      mailstead user list --json
    """
    config = load(ctx)
    with open_directory(config) as d:
        users = d.users()
    totals = [account_totals(config.storage.format, config.mail_root, a) for a in users]
    if as_json:
        echo_json(
            [
                {"address": a, "messages": t.messages, "unseen": t.unseen, "size": t.size}
                for a, t in zip(users, totals, strict=True)
            ]
        )
        return
    width = max((len(a) for a in users), default=0)
    for a, t in zip(users, totals, strict=True):
        count = f"{t.messages} message" + ("" if t.messages == 1 else "s")
        click.echo(f"{a:<{width}}  {count:>14}  {t.unseen:>6} unseen  {human_size(t.size):>9}")


def warn_aliases(warnings: list[AliasWarning]) -> None:
    """Each alias warning as one ``mailstead: warning:`` line on stderr."""
    for w in warnings:
        click.echo(f"mailstead: warning: alias {w.alias}: {w.text}", err=True)


@user.command("del")
@click.argument("address")
@click.pass_context
@one_line_errors
def user_del(ctx: click.Context, address: str) -> None:
    """Delete user ADDRESS (stored mail stays on disk).

    Aliases that delivered to the user are kept; each one now pointing
    nowhere is named in a warning.

    \b
    Example:
      mailstead user del alice@example.org
    """
    with open_directory(load(ctx)) as d:
        d.delete_user(address)
        left = d.aliases_targeting(address)
        warnings = d.alias_warnings(left) if left else []
    click.echo(f"deleted user {address}")
    warn_aliases(warnings)


@user.command("passwd")
@click.argument("address")
@click.option("--password-stdin", is_flag=True, help=_PASSWORD_HELP)
@click.pass_context
@one_line_errors
def user_passwd(ctx: click.Context, address: str, password_stdin: bool) -> None:
    """Change the password of user ADDRESS.

    \b
    Example:
      mailstead user passwd alice@example.org
      printf '%s\\n' "$NEW_PASSWORD" | mailstead user passwd alice@example.org --password-stdin
    """
    password = read_password(password_stdin, address)
    with open_directory(load(ctx)) as d:
        d.set_password(address, password)
    click.echo(f"changed password of {address}")
