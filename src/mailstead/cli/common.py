"""What every command shares: one-line errors, ``--json`` output, the config."""

from __future__ import annotations

import functools
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
from mailstead.tlscert import CertificateError
from mailstead.webhooks.signing import InvalidSecretError

if TYPE_CHECKING:
    from mailstead.mta.queue import Queue

__all__ = [
    "Failure",
    "config_path",
    "echo_json",
    "json_option",
    "load",
    "one_line_errors",
    "open_directory",
    "open_queue",
    "read_password",
    "rfc3339",
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


def load(ctx: click.Context) -> Config:
    """The configuration at ``--config``, loaded and checked."""
    return load_config(config_path(ctx))


def open_directory(config: Config) -> Directory:
    """The user and alias directory of ``config``."""
    return Directory(config.db_path("directory"), config.domains)


def open_queue(config: Config) -> Queue:
    """The outbound queue of ``config``."""
    from mailstead.mta.queue import Queue

    return Queue(config.data_dir)


def read_password(password_stdin: bool) -> str:
    """One line of standard input without its line ending."""
    if not password_stdin:
        # Never on the command line: it would show in ps and shell history.
        raise Failure("pass --password-stdin and write the password to standard input")
    line = sys.stdin.readline()
    return line.removesuffix("\n").removesuffix("\r")
