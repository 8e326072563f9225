"""``mailstead init``: the config, data directory, TLS certificate and user database."""

from __future__ import annotations

import os

import click

from mailstead.cli.common import config_path, one_line_errors, open_directory
from mailstead.config import default_config_text, default_hostname, load_config
from mailstead.tlscert import ensure_self_signed

__all__ = ["init"]

DEFAULT_DOMAIN = "example.test"  # RFC 2606 reserved: can never receive real mail


@click.command()
@click.option("--domain", help=f"Mail domain to serve (default {DEFAULT_DOMAIN}).")
@click.option("--hostname", help="This host's fully qualified name (default: the system's).")
@click.pass_context
@one_line_errors
def init(ctx: click.Context, domain: str | None, hostname: str | None) -> None:
    """Write the config, data directory, TLS certificate and user database if absent."""
    path = config_path(ctx)
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
        open_directory(config).close()
        created.append(f"user directory {db}")
    for item in created:
        click.echo(f"created {item}")
    if not created:
        click.echo(f"nothing to do: {path} is already initialised")
