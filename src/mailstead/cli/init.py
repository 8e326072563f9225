"""``mailstead init``: the config, data directory, TLS certificate and user database.

With ``[storage] backend = "postgresql"`` it makes every component's tables
in the cluster database (cluster_schema.py), as ``serve`` would.

``init --system`` installs a service instead: ``/etc/mailstead``, the data in
``/var/lib/mailstead``, a system user and a systemd unit (docs/operations.md).
"""

from __future__ import annotations

import grp
import os
import pwd
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import click

from mailstead.cli.common import Failure, config_path, one_line_errors
from mailstead.cluster_schema import ClusterSchemaError, prepare_cluster_schema
from mailstead.config import Config, default_config_text, default_hostname, load_config
from mailstead.config.template import SYSTEM_CONFIG, SYSTEM_DATA_DIR
from mailstead.directory import Directory, prepare_directory
from mailstead.pgsql.connect import redact
from mailstead.system.sendmail_install import (
    BACKUP_SUFFIX,
    SENDMAIL_PATH,
    Found,
    found_at,
    wrapper_text,
)
from mailstead.system.unit import UNIT_PATH, unit_text
from mailstead.tlscert import ensure_self_signed

__all__ = ["init"]

DEFAULT_DOMAIN = "example.test"  # RFC 2606 reserved: can never receive real mail
SYSTEM_USER = "mailstead"


@click.command()
@click.option("--domain", help=f"Mail domain to serve (default {DEFAULT_DOMAIN}).")
@click.option("--hostname", help="This host's fully qualified name (default: the system's).")
@click.option(
    "--system",
    is_flag=True,
    help=f"Install a service: {SYSTEM_CONFIG}, {SYSTEM_DATA_DIR}, a system user and "
    f"{UNIT_PATH} (needs --domain and --hostname).",
)
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("/"),
    show_default=True,
    help="With --system: write into this tree (an image being built); no user is created.",
)
@click.option("--dry-run", is_flag=True, help="With --system: change nothing, print what it would.")
@click.option(
    "--sendmail/--no-sendmail",
    "install_sendmail",
    default=True,
    show_default=True,
    help=f"With --system: install {SENDMAIL_PATH} (a wrapper running `mailstead sendmail`)"
    " unless another MTA's is there.",
)
@click.option(
    "--replace-sendmail",
    is_flag=True,
    help=f"With --system: replace another MTA's {SENDMAIL_PATH}, kept as sendmail{BACKUP_SUFFIX}.",
)
@click.pass_context
@one_line_errors
def init(
    ctx: click.Context,
    domain: str | None,
    hostname: str | None,
    system: bool,
    root: Path,
    dry_run: bool,
    install_sendmail: bool,
    replace_sendmail: bool,
) -> None:
    """Write the config, data directory, TLS certificate and user database if absent.

    \b
    Examples:
      mailstead init --domain example.org --hostname mx.example.org
      mailstead init --system --domain example.org --hostname mx.example.org --dry-run
    """
    if system:
        if not domain or not hostname:
            raise Failure("init --system needs --domain and --hostname")
        if replace_sendmail and not install_sendmail:
            raise Failure("--replace-sendmail and --no-sendmail contradict each other")
        install = _SystemInstall(root, dry_run)
        install.sendmail_mode = "replace" if replace_sendmail else "add" if install_sendmail else ""
        install.run(domain, hostname)
        return
    if root != Path("/") or dry_run:
        raise Failure("--root and --dry-run go with --system")
    if replace_sendmail:
        raise Failure("--replace-sendmail goes with --system")
    path = config_path(ctx)
    created: list[str] = []
    if path.exists():
        if domain or hostname:
            click.echo(f"mailstead: {path} exists; --domain/--hostname ignored", err=True)
    else:
        text = default_config_text(domain or DEFAULT_DOMAIN, hostname or _guessed_hostname())
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
    user_directory = prepare_directory(config)
    if user_directory is not None:
        created.append(user_directory)
    if config.storage.backend == "postgresql":
        created.extend(_cluster_tables(config))
    for item in created:
        click.echo(f"created {item}")
    if not created:
        click.echo(f"nothing to do: {path} is already initialised")


def _cluster_tables(config: Config) -> list[str]:
    """Make or upgrade every component's tables in the cluster database (as
    ``serve`` would at start); what was made, for the operator."""
    try:
        changed = prepare_cluster_schema(config.storage.dsn)
    except ClusterSchemaError as exc:
        raise Failure(str(exc)) from None
    if not changed:
        return []
    return [f"tables of {', '.join(changed)} in {redact(config.storage.dsn)}"]


def _guessed_hostname() -> str:
    hostname = default_hostname()
    if hostname == "localhost":
        click.echo(
            'mailstead: warning: this host has no fully qualified name; hostname = "localhost",'
            " and other servers refuse mail from it: pass --hostname",
            err=True,
        )
    return hostname


@dataclass
class _SystemInstall:
    """The steps of ``init --system`` under ``root``, done or (``dry_run``) only told."""

    root: Path
    dry_run: bool
    notes: list[str] = field(default_factory=list)
    # "add": install sendmail where there is none; "replace": also over another
    # MTA's; "": leave it alone.
    sendmail_mode: str = "add"

    @property
    def live(self) -> bool:
        """True when ``root`` is this host, where users can be created and files given away."""
        return self.root == Path("/")

    def inside(self, path: Path) -> Path:
        return self.root / path.relative_to("/")

    def say(self, verb: str, what: str) -> None:
        """``would create X`` in a dry run, ``created X`` otherwise."""
        past = {"run": "ran", "give": "gave", "write": "wrote"}.get(verb, f"{verb}d")
        click.echo(f"would {verb} {what}" if self.dry_run else f"{past} {what}")

    def run(self, domain: str, hostname: str) -> None:
        text = default_config_text(domain, hostname, system=True)
        account = self.user()
        config_file = self.inside(SYSTEM_CONFIG)
        if config_file.exists():
            click.echo(f"kept {config_file} (exists)")
            config = load_config(config_file)
        else:
            self.write(config_file, text, 0o640, group=account)
            config = _parse(text)
        data_dir = self.inside(config.data_dir)
        for directory in (data_dir, self.inside(config.mail_root)):
            if not directory.is_dir():
                self.say("create", f"directory {directory} (mode 0700)")
                if not self.dry_run:
                    directory.mkdir(parents=True, mode=0o700)
        cert, key = self.inside(config.tls.cert), self.inside(config.tls.key)
        if not (cert.exists() and key.exists()):
            self.say("create", f"self-signed TLS certificate {cert} for {config.hostname}")
            if not self.dry_run:
                ensure_self_signed(cert, key, config.hostname)
        db = self.inside(config.db_path("directory"))
        if config.storage.backend == "postgresql":
            self.say("create", "every component's tables in the database, if absent")
            if not self.dry_run:
                _cluster_tables(config)
        elif not db.exists():
            self.say("create", f"user directory {db}")
            if not self.dry_run:
                Directory(db, config.domains).close()
        if account is not None:
            self.say("give", f"{data_dir} to {account[0]}:{account[0]}")
            if not self.dry_run:
                _chown_tree(data_dir, account[1], account[2])
        unit = self.inside(UNIT_PATH)
        if unit.exists():
            click.echo(f"kept {unit} (exists)")
        else:
            self.write(unit, self.unit(config), 0o644)
        if self.sendmail_mode:
            self.sendmail()
        for note in self.notes:
            click.echo(f"note: {note}")
        if self.live and not self.dry_run:
            click.echo("next: systemctl daemon-reload && systemctl enable --now mailstead")

    def user(self) -> tuple[str, int, int] | None:
        """The system user (made if missing): name, uid, gid; None under --root."""
        command = [
            "useradd",
            "--system",
            "--user-group",
            "--home-dir",
            SYSTEM_DATA_DIR,
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            "--comment",
            "Mailstead mail server",
            SYSTEM_USER,
        ]
        if not self.live:
            self.notes.append(
                f"no user made under --root; in the image run: {shlex.join(command)}"
                f" && chown -R {SYSTEM_USER}:{SYSTEM_USER} {SYSTEM_DATA_DIR}"
                f" && chgrp {SYSTEM_USER} {SYSTEM_CONFIG}"
            )
            return None
        try:
            entry = pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            self.say("run", shlex.join(command))
            if self.dry_run:
                return None
            program = shutil.which("useradd") or shutil.which("useradd", path="/usr/sbin:/sbin")
            if program is None:
                raise Failure("useradd is missing: apt-get install passwd") from None
            done = subprocess.run([program, *command[1:]], capture_output=True, text=True)
            if done.returncode != 0:
                reason = (done.stderr.strip().splitlines() or ["failed"])[-1]
                raise Failure(f"useradd {SYSTEM_USER}: {reason}") from None
            entry = pwd.getpwnam(SYSTEM_USER)
        else:
            click.echo(f"kept user {SYSTEM_USER} (exists)")
        return SYSTEM_USER, entry.pw_uid, grp.getgrnam(SYSTEM_USER).gr_gid

    def write(
        self, path: Path, text: str, mode: int, group: tuple[str, int, int] | None = None
    ) -> None:
        if self.dry_run:
            self.say("write", f"{path} (mode {mode:04o}):")
            click.echo("".join(f"    {line}\n" for line in text.splitlines()), nl=False)
            return
        self.say("write", f"{path} (mode {mode:04o})")
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode & 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            if group is not None:
                os.fchown(f.fileno(), 0, group[2])  # readable by the service, not by others
            os.fchmod(f.fileno(), mode)
            f.write(text)

    def sendmail(self) -> None:
        """/usr/sbin/sendmail: our wrapper, never over another MTA's unless asked."""
        path = self.inside(SENDMAIL_PATH)
        text = wrapper_text([sys.executable, "-m", "mailstead"], SYSTEM_CONFIG)
        found = found_at(path)
        if found is Found.OURS:
            click.echo(f"kept {path} (Mailstead's)")
            return
        if found is Found.OTHER:
            if self.sendmail_mode != "replace":
                self.notes.append(
                    f"kept {path}: another MTA's sendmail; pass --replace-sendmail to"
                    f" put Mailstead's there (the old one is kept as {path.name}{BACKUP_SUFFIX})"
                )
                return
            backup = path.with_name(path.name + BACKUP_SUFFIX)
            if backup.exists() or backup.is_symlink():
                raise Failure(f"{backup} exists: move it away before --replace-sendmail")
            self.say("rename", f"{path} to {backup}")
            if not self.dry_run:
                path.rename(backup)
        self.write(path, text, 0o755)

    def unit(self, config: Config) -> str:
        return unit_text(
            command=[sys.executable, "-m", "mailstead"],
            config=SYSTEM_CONFIG,
            data_dir=config.data_dir,
            user=config.run.user,
            group=config.run.group,
            stop_timeout=config.limits.shutdown_timeout,
        )


def _parse(text: str) -> Config:
    """The config ``text`` would load as, before it is written anywhere."""
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch, "mailstead.toml")
        path.write_text(text, encoding="utf-8")
        return load_config(path)


def _chown_tree(top: Path, uid: int, gid: int) -> None:
    os.chown(top, uid, gid, follow_symlinks=False)
    for where, dirs, files in os.walk(top):
        for name in (*dirs, *files):
            os.chown(Path(where, name), uid, gid, follow_symlinks=False)
