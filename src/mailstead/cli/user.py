"""``mailstead user``: mailboxes that can log in."""

from __future__ import annotations

import click

from mailstead.addresses import AddressError, canonical_address
from mailstead.cli.common import (
    Failure,
    as_data_owner,
    echo_json,
    human_size,
    json_option,
    load,
    one_line_errors,
    open_directory,
    read_password,
)
from mailstead.config import Config
from mailstead.directory import AliasWarning, Quota
from mailstead.store.inspect import account_totals
from mailstead.store.pg_inspect import cluster_pool, cluster_totals, cluster_usage
from mailstead.store.usage import account_usage

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
      mailstead user quota alice@example.org --storage 1G
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
    if config.storage.backend == "postgresql":
        totals = cluster_totals(cluster_pool(config.storage.dsn), users)
    else:
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
    """Delete user ADDRESS (stored mail stays, on disk or in the cluster database).

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


_UNITS = {"": 1, "B": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_size(text: str) -> int:
    """``1G``, ``500M``, ``64K``, ``1048576``: octets (binary multiples; KB, MiB … too)."""
    value = text.strip().upper().removesuffix("IB").removesuffix("B")
    number, unit = value, ""
    if value and value[-1] in _UNITS:
        number, unit = value[:-1], value[-1]
    try:
        octets = float(number) * _UNITS[unit]
    except (ValueError, KeyError):
        raise Failure(f"--storage {text!r}: expected a size like 500M, 1G or 1048576") from None
    if octets < 0 or octets != octets:  # negative, NaN
        raise Failure(f"--storage {text!r}: expected a size like 500M, 1G or 1048576")
    return int(octets)


@user.command("quota")
@click.argument("address")
@click.option("--storage", metavar="SIZE", help="Limit on stored octets: 500M, 1G, 1048576 ….")
@click.option("--messages", metavar="N", type=click.IntRange(min=0), help="Limit on messages.")
@click.option("--none", "clear", is_flag=True, help="Remove both limits.")
@click.option("--recount", is_flag=True, help="Recompute the usage from the mailbox index.")
@json_option
@click.pass_context
@one_line_errors
def user_quota(
    ctx: click.Context,
    address: str,
    storage: str | None,
    messages: int | None,
    clear: bool,
    recount: bool,
    as_json: bool,
) -> None:
    """Show or set the quota of user ADDRESS (RFC 9208 STORAGE and MESSAGE).

    With no option, shows usage and limits. --storage and --messages set a
    limit each (the other stays); --none removes both. Over a limit, SMTP
    answers 452 4.2.2 (the sender retries) and IMAP APPEND and COPY answer
    NO [OVERQUOTA]. Usage counts every folder, from the mailbox index (with
    backend = "postgresql", summed in the database: --recount has nothing to do).

    JSON: {"address", "storage": {"used", "limit"}, "messages": {"used", "limit"}}
    (octets; a limit is null when there is none).

    \b
    Example:
      mailstead user quota alice@example.org --storage 1G --messages 100000
      mailstead user quota alice@example.org
      mailstead user quota alice@example.org --none
    """
    if clear and (storage is not None or messages is not None):
        raise Failure("--none cannot go with --storage or --messages")
    config = load(ctx)
    with open_directory(config) as d:
        key = canonical_address(address) if _is_address(address) else address
        quota = d.quota(key)
        if clear:
            key = d.set_quota(address, Quota())
        elif storage is not None or messages is not None:
            quota = Quota(
                parse_size(storage) if storage is not None else quota.storage,
                messages if messages is not None else quota.messages,
            )
            key = d.set_quota(address, quota)
        elif key not in d.users():
            raise Failure(f"no such user {key}")
        quota = d.quota(key)
    if config.storage.backend == "postgresql":
        # Summed from the message rows at each look: nothing to recount.
        used = cluster_usage(cluster_pool(config.storage.dsn), key)
    else:
        if recount:
            as_data_owner(config)
        used = account_usage(config.storage.format, config.mail_root, key, recount=recount)
    if as_json:
        echo_json(
            {
                "address": key,
                "storage": {"used": used.octets, "limit": quota.storage},
                "messages": {"used": used.messages, "limit": quota.messages},
            }
        )
        return
    click.echo(key)
    storage_limit = "no limit" if quota.storage is None else human_size(quota.storage)
    click.echo(f"  storage   {human_size(used.octets)} of {storage_limit}")
    message_limit = "no limit" if quota.messages is None else str(quota.messages)
    click.echo(f"  messages  {used.messages} of {message_limit}")


def _is_address(text: str) -> bool:
    try:
        canonical_address(text)
    except AddressError:
        return False
    return True
