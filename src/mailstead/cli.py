"""The ``mailstead`` command line (DESIGN.md §3): thin — it parses arguments,
calls the services, and turns their errors into one line on stderr.
"""

from __future__ import annotations

import functools
import json
import os
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import ParamSpec, TypeVar

import click

from mailstead.config import Config, ConfigError, default_config_text, default_hostname, load_config
from mailstead.directory import Directory, DirectoryError
from mailstead.tlscert import CertificateError, ensure_self_signed

__all__ = ["main"]

_P = ParamSpec("_P")
_R = TypeVar("_R")

DEFAULT_DOMAIN = "example.test"  # RFC 2606 reserved: can never receive real mail


class _Failure(click.ClickException):
    """An expected failure: ``mailstead: <reason>`` on stderr, exit status 1."""

    def show(self, file: object = None) -> None:
        click.echo(f"mailstead: {self.message}", err=True)


def _one_line_errors(f: Callable[_P, _R]) -> Callable[_P, _R]:
    """Turn the errors a user can cause or fix into a one-line message, no traceback."""

    @functools.wraps(f)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return f(*args, **kwargs)
        except (ConfigError, DirectoryError, CertificateError) as exc:
            raise _Failure(str(exc)) from None
        except sqlite3.Error as exc:
            raise _Failure(f"database error: {exc}") from None
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            raise _Failure(f"{where}{exc.strerror or exc}") from None

    return wrapper


def _config(ctx: click.Context) -> Config:
    path: Path = ctx.find_root().obj
    return load_config(path)


def _directory(config: Config) -> Directory:
    return Directory(config.db_path("directory"), config.domains)


def _read_password(password_stdin: bool) -> str:
    if not password_stdin:
        # Never on the command line: it would show in ps and shell history.
        raise _Failure("pass --password-stdin and write the password to standard input")
    line = sys.stdin.readline()
    return line.removesuffix("\n").removesuffix("\r")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=lambda: os.environ.get("MAILSTEAD_CONFIG") or "mailstead.toml",
    show_default="$MAILSTEAD_CONFIG or ./mailstead.toml",
    help="Configuration file.",
)
@click.pass_context
def main(ctx: click.Context, config_path: Path) -> None:
    """Mailstead: a self-hosted mail system."""
    ctx.obj = config_path


@main.command()
@click.option("--domain", help=f"Mail domain to serve (default {DEFAULT_DOMAIN}).")
@click.option("--hostname", help="This host's fully qualified name (default: the system's).")
@click.pass_context
@_one_line_errors
def init(ctx: click.Context, domain: str | None, hostname: str | None) -> None:
    """Write the config, data directory, TLS certificate and user database if absent."""
    path: Path = ctx.find_root().obj
    created: list[str] = []
    if path.exists():
        if domain or hostname:
            click.echo(f"mailstead: {path} exists; --domain/--hostname ignored", err=True)
    else:
        text = default_config_text(domain or DEFAULT_DOMAIN, hostname or default_hostname())
        path.parent.mkdir(parents=True, exist_ok=True)
        # O_EXCL: never clobber a config written concurrently; 0600: it may hold secrets.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        created.append(f"config {path}")
    config = load_config(path)
    for label, directory in (("data directory", config.data_dir), ("mail root", config.mail_root)):
        if not directory.is_dir():
            directory.mkdir(parents=True, mode=0o700)
            created.append(f"{label} {directory}")
    if ensure_self_signed(config.tls.cert, config.tls.key, config.hostname):
        created.append(f"self-signed TLS certificate {config.tls.cert} for {config.hostname}")
    db = config.db_path("directory")
    if not db.exists():
        _directory(config).close()
        created.append(f"user directory {db}")
    for item in created:
        click.echo(f"created {item}")
    if not created:
        click.echo(f"nothing to do: {path} is already initialised")


@main.command()
@click.pass_context
@_one_line_errors
def serve(ctx: click.Context) -> None:
    """Run every configured listener until SIGINT or SIGTERM."""
    config = _config(ctx)
    from mailstead.app import ListenError  # heavy imports only when serving
    from mailstead.app import serve as run

    try:
        run(config)
    except ListenError as exc:
        raise _Failure(str(exc)) from None


# --------------------------------------------------------------------------- users


@main.group()
def user() -> None:
    """Manage users (mailboxes that can log in)."""


@user.command("add")
@click.argument("address")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.pass_context
@_one_line_errors
def user_add(ctx: click.Context, address: str, password_stdin: bool) -> None:
    """Create user ADDRESS."""
    password = _read_password(password_stdin)
    with _directory(_config(ctx)) as d:
        click.echo(f"added user {d.add_user(address, password)}")


@user.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
@_one_line_errors
def user_list(ctx: click.Context, as_json: bool) -> None:
    """List users."""
    with _directory(_config(ctx)) as d:
        users = d.users()
    if as_json:
        click.echo(json.dumps([{"address": a} for a in users], ensure_ascii=False))
    else:
        for address in users:
            click.echo(address)


@user.command("del")
@click.argument("address")
@click.pass_context
@_one_line_errors
def user_del(ctx: click.Context, address: str) -> None:
    """Delete user ADDRESS (stored mail stays on disk)."""
    with _directory(_config(ctx)) as d:
        d.delete_user(address)
    click.echo(f"deleted user {address}")


@user.command("passwd")
@click.argument("address")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.pass_context
@_one_line_errors
def user_passwd(ctx: click.Context, address: str, password_stdin: bool) -> None:
    """Change the password of user ADDRESS."""
    password = _read_password(password_stdin)
    with _directory(_config(ctx)) as d:
        d.set_password(address, password)
    click.echo(f"changed password of {address}")


# --------------------------------------------------------------------------- aliases


@main.group()
def alias() -> None:
    """Manage aliases (addresses that forward to others)."""


@alias.command("add")
@click.argument("alias_address", metavar="ALIAS")
@click.argument("targets", metavar="TARGET...", nargs=-1, required=True)
@click.pass_context
@_one_line_errors
def alias_add(ctx: click.Context, alias_address: str, targets: tuple[str, ...]) -> None:
    """Make ALIAS (an address, or @domain for a catch-all) deliver to TARGETs.

    An existing alias gets its targets replaced.
    """
    with _directory(_config(ctx)) as d:
        d.add_alias(alias_address, targets)
    click.echo(f"alias {alias_address} -> {', '.join(targets)}")


@alias.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
@_one_line_errors
def alias_list(ctx: click.Context, as_json: bool) -> None:
    """List aliases and their targets."""
    with _directory(_config(ctx)) as d:
        aliases = d.aliases()
    if as_json:
        rows = [{"alias": a, "targets": targets} for a, targets in aliases]
        click.echo(json.dumps(rows, ensure_ascii=False))
    else:
        for a, targets in aliases:
            click.echo(f"{a} -> {', '.join(targets)}")


@alias.command("del")
@click.argument("alias_address", metavar="ALIAS")
@click.pass_context
@_one_line_errors
def alias_del(ctx: click.Context, alias_address: str) -> None:
    """Delete ALIAS."""
    with _directory(_config(ctx)) as d:
        d.delete_alias(alias_address)
    click.echo(f"deleted alias {alias_address}")


# --------------------------------------------------------------------------- DNS


@main.command("dns-records")
@click.argument("domain")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
@_one_line_errors
def dns_records(ctx: click.Context, domain: str, as_json: bool) -> None:
    """Print the MX, SPF, DKIM, DMARC and TLS-RPT records to publish for DOMAIN.

    Creates the domain's DKIM keys if it has none.
    """
    from mailstead.mta.dkim import DKIMError
    from mailstead.mta.dnsrecords import DNSRecordsError, records, zone_text

    config = _config(ctx)
    try:
        recs = records(config, domain)
    except (DNSRecordsError, DKIMError) as exc:
        raise _Failure(str(exc)) from None
    if as_json:
        rows = [{"type": r.type, "name": r.name, "value": r.value} for r in recs]
        click.echo(json.dumps(rows, ensure_ascii=False))
    else:
        click.echo(zone_text(recs), nl=False)
