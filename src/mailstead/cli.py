"""The ``mailstead`` command line (DESIGN.md §3): thin — it parses arguments,
calls the services, and turns their errors into one line on stderr.
"""

from __future__ import annotations

import functools
import json
import os
import sqlite3
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, ParamSpec, TypeVar

import click

from mailstead.config import Config, ConfigError, default_config_text, default_hostname, load_config
from mailstead.directory import Directory, DirectoryError
from mailstead.limits import SMTPLimits
from mailstead.tlscert import CertificateError, ensure_self_signed

if TYPE_CHECKING:
    from mailstead.mta.queue import Queue, QueuedMessage, RecipientStatus

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
    from mailstead.mailauth.dkim import DKIMError
    from mailstead.mailauth.dnsrecords import DNSRecordsError, records, zone_text

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


# --------------------------------------------------------------------------- queue

# The running server's outbound loop looks at the queue this often
# (mailstead.mta.outbound.POLL_INTERVAL); the help texts say so.
_OUTBOUND_POLL_SECONDS = 2
# `queue show` prints at most this much of a message's header section.
_SHOW_HEADER_LIMIT = 64 * 1024


def _queue(config: Config) -> Queue:
    from mailstead.mta.queue import Queue

    return Queue(config.data_dir)


def _printable(text: str) -> str:
    """``text`` with control characters escaped: remote replies and headers
    must not be able to move the cursor or recolour the operator's terminal."""
    return "".join(c if c.isprintable() or c == "\t" else f"\\x{ord(c):02x}" for c in text)


def _timestamp(when: float) -> str:
    """RFC 3339 UTC, whole seconds: the stable form of times in --json."""
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _span(seconds: float) -> str:
    """A short human duration: 45s, 12m, 3h, 2d."""
    s = max(0, round(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit}"
    return f"{s}s"


def _next_attempt(when: float, now: float) -> str:
    return "now" if when <= now else f"in {_span(when - now)}"


def _recipient_text(r: RecipientStatus, now: float) -> str:
    text = f"{_printable(r.address)} {r.state}, {r.attempts} attempt(s)"
    if r.open:
        text += f", next {_next_attempt(r.next_attempt, now)}"
    if r.last_error:
        text += f", last error: {_printable(r.last_error)}"
    return text


def _message_json(m: QueuedMessage) -> dict[str, object]:
    return {
        "id": m.id,
        "sender": m.sender,
        "received_at": _timestamp(m.received_at),
        "size": m.size,
        "recipients": [
            {
                "address": r.address,
                "state": r.state,
                "attempts": r.attempts,
                "next_attempt": _timestamp(r.next_attempt) if r.open else None,
                "last_error": r.last_error,
            }
            for r in m.recipients
        ],
    }


def _header_section(path: Path) -> str:
    """The header lines of a queued message file (CRLF), at most _SHOW_HEADER_LIMIT bytes."""
    lines: list[str] = []
    read = 0
    with path.open("rb") as f:
        for raw in f:
            read += len(raw)
            if raw in (b"\r\n", b"\n") or read > _SHOW_HEADER_LIMIT:
                break
            lines.append(_printable(raw.rstrip(b"\r\n").decode("utf-8", "replace")))
    return "\n".join(lines)


@main.group()
def queue() -> None:
    """Inspect and manage the outbound queue (mail waiting for remote servers)."""


@queue.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
@_one_line_errors
def queue_list(ctx: click.Context, as_json: bool) -> None:
    """List queued messages, oldest first, with their recipients still to be delivered.

    Text: one line per message (id, age, size, sender, then each open
    recipient with its state, attempts, next attempt and last error).
    """
    with _queue(_config(ctx)) as q:
        messages = q.list()
    if as_json:
        click.echo(json.dumps([_message_json(m) for m in messages], ensure_ascii=False))
        return
    now = time.time()
    for m in messages:
        open_rcpts = [r for r in m.recipients if r.open]
        rcpts = "; ".join(_recipient_text(r, now) for r in open_rcpts) or "no open recipients"
        click.echo(
            f"{m.id}  {_span(now - m.received_at):>4}  {m.size:>8}  "
            f"<{_printable(m.sender)}>  {rcpts}"
        )


@queue.command("show")
@click.argument("queue_id", metavar="ID")
@click.pass_context
@_one_line_errors
def queue_show(ctx: click.Context, queue_id: str) -> None:
    """Show message ID: envelope, status of each recipient, and the message headers."""
    with _queue(_config(ctx)) as q:
        m = q.get(queue_id.upper())
        if m is None:
            raise _Failure(f"no queued message {queue_id!r}")
        try:
            headers = _header_section(m.path)
        except FileNotFoundError:
            raise _Failure(f"queued message {m.id} has left the queue") from None
    now = time.time()
    click.echo(f"id:       {m.id}")
    click.echo(f"sender:   <{_printable(m.sender)}>")
    click.echo(f"received: {_timestamp(m.received_at)} ({_span(now - m.received_at)} ago)")
    click.echo(f"size:     {m.size} bytes")
    if m.envid is not None:
        click.echo(f"envid:    {_printable(m.envid)}")
    if m.ret is not None:
        click.echo(f"ret:      {m.ret}")
    click.echo("recipients:")
    for r in m.recipients:
        click.echo(f"  {_recipient_text(r, now)}")
    click.echo("headers:")
    for line in headers.splitlines():
        click.echo(f"  {line}")


@queue.command("flush")
@click.pass_context
@_one_line_errors
def queue_flush(ctx: click.Context) -> None:
    """Make every deferred recipient due now.

    The running server's outbound loop picks them up within its poll
    interval of 2 seconds; without a running server nothing is sent.
    """
    with _queue(_config(ctx)) as q:
        n = q.flush(time.time())
    click.echo(
        f"{n} deferred recipient(s) due now; a running server tries them"
        f" within {_OUTBOUND_POLL_SECONDS} seconds"
    )


@queue.command("delete")
@click.argument("queue_id", metavar="ID")
@click.pass_context
@_one_line_errors
def queue_delete(ctx: click.Context, queue_id: str) -> None:
    """Remove message ID from the queue: it is not delivered and no bounce is sent."""
    with _queue(_config(ctx)) as q:
        try:
            q.delete(queue_id.upper())
        except KeyError:
            raise _Failure(f"no queued message {queue_id!r}") from None
    click.echo(f"deleted queued message {queue_id.upper()}")


# --------------------------------------------------------------------------- send

# More recipients than this get a progress bar while they are checked.
_PROGRESS_THRESHOLD = 10


@main.command()
@click.option("--from", "sender", required=True, help="Sender: a local user or its alias.")
@click.option("--to", "recipients", required=True, multiple=True, help="Recipient (repeatable).")
@click.option("--subject", help="Subject header.")
@click.option("--text", help="Plain-text body.")
@click.option(
    "--html",
    "html_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="HTML body from FILE (UTF-8).",
)
@click.option(
    "--template",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Jinja2 template FILE rendered into the HTML body (.html: autoescaped).",
)
@click.option("--data", "data_json", metavar="JSON", help="Template variables, a JSON object.")
@click.pass_context
@_one_line_errors
def send(
    ctx: click.Context,
    sender: str,
    recipients: tuple[str, ...],
    subject: str | None,
    text: str | None,
    html_file: Path | None,
    template: Path | None,
    data_json: str | None,
) -> None:
    """Submit a message as a local user, through the same rules as SMTP submission.

    Local recipients get it at once; remote ones go to the queue, which the
    running server delivers (it looks every 2 seconds). With --html or --template
    and no --text, the text part is derived from the HTML. Nothing is sent
    unless every recipient is accepted.
    """
    from mailstead.message.compose import ComposeError, build_message
    from mailstead.mta import submit as sub
    from mailstead.mta.receiver import Receiver, Role
    from mailstead.store import open_store

    config = _config(ctx)
    try:
        body = sub.load_body(text, html_file, template, data_json)
        content = build_message(sender, recipients, subject, body)
        with _directory(config) as directory, _queue(config) as q:
            receiver = Receiver(
                Role.MSA,
                hostname=config.hostname,
                domains=config.domains,
                directory=directory,
                store=open_store(config.storage.format, config.mail_root),
                queue=q,
                limits=SMTPLimits(),
            )
            if len(set(recipients)) > _PROGRESS_THRESHOLD:
                with click.progressbar(
                    length=len(set(recipients)),
                    label="checking recipients",
                    file=sys.stderr,
                ) as bar:
                    done = sub.submit(
                        receiver, sender, recipients, content, on_routed=lambda _: bar.update(1)
                    )
            else:
                done = sub.submit(receiver, sender, recipients, content)
    except (sub.SubmitError, ComposeError) as exc:
        raise _Failure(str(exc)) from None
    click.echo(" ".join(str(x) for x in (done.reply.code, done.reply.enhanced, *done.reply.lines)))
    if done.remote:
        click.echo(f"queue id {done.queue_id} for {len(done.remote)} remote recipient(s)")
