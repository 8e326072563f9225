"""What every command shares: one-line errors, ``--json`` output, the config."""

from __future__ import annotations

import functools
import getpass
import json
import sqlite3
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, ParamSpec, TypeVar

import click

from mailstead.config import Config, ConfigError, load_config
from mailstead.directory import Directory, DirectoryError
from mailstead.directory import open_directory as directory_of
from mailstead.tlscert import CertificateError
from mailstead.webhooks.signing import InvalidSecretError

if TYPE_CHECKING:
    from mailstead.mta.queue import Queue

__all__ = [
    "Failure",
    "MailsteadGroup",
    "as_data_owner",
    "config_path",
    "echo_json",
    "human_size",
    "json_option",
    "load",
    "one_line_errors",
    "open_directory",
    "open_queue",
    "printable",
    "read_password",
    "rfc3339",
    "whole_summaries",
]

_P = ParamSpec("_P")
_R = TypeVar("_R")


class Failure(click.ClickException):
    """An expected failure: ``mailstead: <reason>`` on stderr, exit status 1."""

    def show(self, file: object = None) -> None:
        click.echo(f"mailstead: {self.message}", err=True)


def one_line_errors(f: Callable[_P, _R]) -> Callable[_P, _R]:
    """Turn the errors a user can cause or fix into a one-line message, no traceback."""

    @functools.wraps(f)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return f(*args, **kwargs)
        except (ConfigError, DirectoryError, CertificateError, InvalidSecretError) as exc:
            raise Failure(str(exc)) from None
        except sqlite3.Error as exc:
            raise Failure(f"database error: {exc}") from None
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            raise Failure(f"{where}{exc.strerror or exc}") from None

    return wrapper


#: The ``--json`` flag of the listing commands; their JSON shapes are stable.
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def echo_json(value: object) -> None:
    """Print ``value`` as one line of JSON, non-ASCII left as is."""
    click.echo(json.dumps(value, ensure_ascii=False))


def rfc3339(when: float) -> str:
    """RFC 3339 UTC, whole seconds: the stable form of times in --json and listings."""
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def config_path(ctx: click.Context) -> Path:
    """The ``--config`` path given to the root group."""
    path: Path = ctx.find_root().obj
    return path


def load(ctx: click.Context, *, as_root: bool = False) -> Config:
    """The configuration at ``--config``, loaded and checked.

    Run by root on a served data directory, the command then goes on as the
    directory's owner (:func:`as_data_owner`), unless it needs root itself
    (``as_root``: serve binds ports, net changes the host's interfaces,
    backup and restore write outside the data directory).
    """
    config = load_config(config_path(ctx))
    if not as_root:
        as_data_owner(config)
    return config


def as_data_owner(config: Config) -> None:
    """Run by root on a served data directory, go on as its owner (the ``[run]`` account):
    what the command writes (a DKIM key, a mailbox index, a queue file) stays
    writable by the server. See :func:`mailstead.system.privileges.become_data_owner`."""
    from mailstead.system.privileges import PrivilegeError, become_data_owner

    try:
        become_data_owner(config.data_dir)
    except (PrivilegeError, OSError) as exc:
        raise Failure(f"cannot become the owner of {config.data_dir}: {exc}") from None


def open_directory(config: Config) -> Directory:
    """The user and alias directory of ``config`` (a SQLite file, or the cluster's database)."""
    return directory_of(config)


def open_queue(config: Config) -> Queue:
    """The outbound queue of ``config``."""
    from mailstead.mta.queue import open_queue as open_the_queue

    return open_the_queue(config)


def read_password(password_stdin: bool, address: str = "") -> str:
    """The new password: one line of standard input with ``--password-stdin``, else
    asked twice on the terminal without echo (a mismatch is refused, not retried)."""
    if not password_stdin:
        # Never on the command line: it would show in ps and shell history.
        if not sys.stdin.isatty():
            raise Failure("pass --password-stdin and write the password to standard input")
        who = f" for {address}" if address else ""
        try:
            first = getpass.getpass(f"New password{who}: ")
            again = getpass.getpass("Again: ")
        except EOFError:
            raise Failure("no password given") from None
        if first != again:
            raise Failure("the two passwords do not match; nothing changed")
        return first
    line = sys.stdin.readline()
    return line.removesuffix("\n").removesuffix("\r")


def printable(text: str) -> str:
    """``text`` with control characters escaped (``\\x1b``): what a message or a peer
    wrote cannot move the cursor, recolour or clear an operator's terminal."""
    return "".join(c if c.isprintable() or c == "\t" else f"\\x{ord(c):02x}" for c in text)


def human_size(octets: int) -> str:
    """``512 B``, ``4.1 KiB``, ``12.0 MiB``: sizes in listings (JSON has octets)."""
    if octets < 1024:
        return f"{octets} B"
    value = float(octets)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            break
    return f"{value:.1f} {unit}"


class _OneLineUsageError(click.UsageError):
    """A usage error as docs/cli.md promises: one line on stderr, exit status 2."""

    def show(self, file: object = None) -> None:
        reason = " ".join(self.format_message().split())
        where = ""
        if self.ctx is not None:
            where = f" (see '{self.ctx.command_path} --help')"
        click.echo(f"mailstead: {reason}{where}", err=True)


class MailsteadGroup(click.Group):
    """The root group: usage errors anywhere below it become one line (click
    prints the usage, a hint and the reason on four), and command lists show
    whole summaries (:func:`whole_summaries`)."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: object,
    ) -> click.Context:
        whole_summaries(self)  # here, not at import: every command is registered by now
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:
            raise _one_line(exc) from None

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            raise _one_line(exc) from None


def _one_line(exc: click.UsageError) -> click.UsageError:
    if isinstance(exc, _OneLineUsageError):
        return exc
    return _OneLineUsageError(exc.format_message(), exc.ctx)


def whole_summaries(group: click.Group) -> None:
    """Give every command below ``group`` its whole first sentence as ``short_help``.

    Click cuts the summaries in a command list to the terminal's width less
    the longest name (``backup  Copy the data directory into DIRECTORY
    (new or empty),...``); a summary set here is wrapped instead.
    """
    for command in group.commands.values():
        if command.short_help is None and command.help:
            command.short_help = command.get_short_help_str(limit=10_000)
        if isinstance(command, click.Group):
            whole_summaries(command)
