"""``mailstead sendmail``: the ``sendmail`` command that cron, mailx, git
send-email and PHP's ``mail()`` call, reading a message on standard input.

``sendmail [-t] [-i|-oi] [-f SENDER] [-F NAME] [RECIPIENT...]``. Accepted
and ignored, as Postfix's sendmail ignores them: ``-oem``, ``-oee``,
``-oep``, ``-oeq``, ``-oew`` and ``-em``/``-ee``/``-ep``/``-eq``/``-ew``
(how errors are reported: here always by exit status and stderr), ``-odb``,
``-odi``, ``-odq``, ``-odd`` (delivery mode: we always queue at once), ``-om``,
``-o7``, ``-o8``, ``-v``, ``-U``, ``-bm`` (the default mode), and the
options with a value ``-B TYPE``, ``-N DSN``, ``-R RET``, ``-V ENVID``,
``-h HOPS``, ``-C FILE``, ``-L TAG``. ``-r SENDER`` is the old name of
``-f``. Any other ``-b`` mode (``-bs``, ``-bp``, ``-bd``, ``-bv``...) and
any other option are refused with EX_USAGE.

Exit status: sysexits.h, one line on stderr when it is not 0:
EX_USAGE 64 (bad command line, no recipient), EX_DATAERR 65 (malformed
address or message, too large), EX_NOUSER 67 (a recipient refused for
good, e.g. a local address nobody has), EX_UNAVAILABLE 69 (the sender
refused), EX_SOFTWARE 70 (a bug), EX_TEMPFAIL 75 (try again: the queue
or the directory could not be written, or a 4xx), EX_CONFIG 78 (no or
bad configuration).

The caller is trusted as Postfix trusts a local sendmail: whoever can
read the configuration and write the queue may name any sender. Run by
root, it goes on as the owner of the data directory before it writes
anything (as ``postsuper`` does), so the server can read what it queued. The
default sender is ``<login>@<hostname>``; recipients without a domain
(``root``, as cron's MAILTO often is) get the first of ``domains``, so
that aliases can route them.
"""

from __future__ import annotations

import os
import pwd
import sqlite3
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.utils import getaddresses
from pathlib import Path
from typing import BinaryIO, TextIO

import click

from mailstead.cli.common import config_path
from mailstead.config.template import SYSTEM_CONFIG
from mailstead.limits import SMTPLimits

__all__ = ["EXIT", "SendmailOptions", "UsageError", "console_main", "parse_args", "sendmail"]

#: sysexits.h (the values, so this also reads right where os lacks them).
EXIT = {
    "usage": 64,
    "data": 65,
    "nouser": 67,
    "unavailable": 69,
    "software": 70,
    "temporary": 75,
    "config": 78,
}
_SUBMIT_EXIT = {"data": "data", "sender": "unavailable", "recipient": "nouser"}

_IGNORED_FLAGS = frozenset(
    [
        "-oem",
        "-oee",
        "-oep",
        "-oeq",
        "-oew",
        "-em",
        "-ee",
        "-ep",
        "-eq",
        "-ew",
        "-odb",
        "-odi",
        "-odq",
        "-odd",
        "-om",
        "-o7",
        "-o8",
        "-v",
        "-U",
        "-bm",
    ]
)
_IGNORED_WITH_VALUE = frozenset("BNRVhCL")
_READ_CHUNK = 64 * 1024
USAGE = "usage: sendmail [-t] [-i|-oi] [-f SENDER] [-F NAME] [RECIPIENT...] < message"


class UsageError(Exception):
    """The command line is not one sendmail takes (EX_USAGE)."""


@dataclass
class SendmailOptions:
    """What the command line asks for."""

    extract: bool = False  # -t
    dot_ends: bool = True  # without -i/-oi a lone "." line ends the input
    sender: str | None = None  # -f / -r
    full_name: str | None = None  # -F
    recipients: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


def _value(args: Sequence[str], i: int, flag: str) -> tuple[str, int]:
    """The value of option ``flag`` at ``args[i]``: glued (``-fme``) or the next word."""
    arg = args[i]
    if len(arg) > len(flag):
        return arg[len(flag) :], i + 1
    if i + 1 >= len(args):
        raise UsageError(f"option {flag} needs a value")
    return args[i + 1], i + 2


def parse_args(args: Sequence[str]) -> SendmailOptions:
    """sendmail's command line (getopt style: options stop at the first non-option)."""
    opts = SendmailOptions()
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            i += 1
            break
        if not arg.startswith("-") or arg == "-":
            break
        if arg == "-t":
            opts.extract, i = True, i + 1
        elif arg in ("-i", "-oi"):
            opts.dot_ends, i = False, i + 1
        elif arg in _IGNORED_FLAGS:
            opts.ignored.append(arg)
            i += 1
        elif arg[:2] in ("-f", "-r"):
            sender, i = _value(args, i, arg[:2])
            opts.sender = sender.strip().removeprefix("<").removesuffix(">")
        elif arg[:2] == "-F":
            opts.full_name, i = _value(args, i, "-F")
        elif len(arg) >= 2 and arg[1] in _IGNORED_WITH_VALUE:
            _, i = _value(args, i, arg[:2])
            opts.ignored.append(arg[:2])
        elif arg.startswith("-b"):
            raise UsageError(f"mode {arg} is not supported (only -bm, the default)")
        else:
            raise UsageError(f"unknown option {arg}")
    opts.recipients = list(args[i:])
    return opts


def _login() -> tuple[str, str]:
    """The invoking user's login name and full name (GECOS), as sendmail finds them."""
    try:
        entry = pwd.getpwuid(os.getuid())
    except KeyError:
        return os.environ.get("LOGNAME") or os.environ.get("USER") or "nobody", ""
    return entry.pw_name, entry.pw_gecos.split(",", 1)[0]


def read_input(stream: BinaryIO, *, dot_ends: bool, limit: int) -> bytes:
    """Standard input up to EOF, or up to a lone-dot line when ``dot_ends``
    (read no further: an interactive writer may still hold the pipe)."""
    from mailstead.message.sendmail_input import InputError

    data = bytearray()
    at_line_start = True
    while True:
        chunk = stream.readline(_READ_CHUNK)
        if not chunk:
            return bytes(data)
        if dot_ends and at_line_start and chunk.rstrip(b"\r\n") == b"." and chunk.endswith(b"\n"):
            return bytes(data)
        data += chunk
        if len(data) > limit:
            raise InputError(f"message too large (at most {limit} bytes)")
        at_line_start = chunk.endswith(b"\n")


def _qualified(addresses: Sequence[str], domain: str) -> list[str]:
    """Each comma-separated address of ``addresses``; a bare local part gets ``domain``."""
    found = [a for _, a in getaddresses(list(addresses)) if a]
    return [a if "@" in a else f"{a}@{domain}" for a in found]


def run_sendmail(config_file: Path, args: Sequence[str], stdin: BinaryIO, stderr: TextIO) -> int:
    """The whole command: an exit status from :data:`EXIT` (0 when the message is in)."""
    from mailstead.config import ConfigError, load_config
    from mailstead.directory import DirectoryError
    from mailstead.message.sendmail_input import InputError, prepare, to_crlf
    from mailstead.mta.submit import SubmitError
    from mailstead.system.privileges import PrivilegeError, become_data_owner

    def fail(kind: str, reason: str) -> int:
        print(f"sendmail: {' '.join(reason.split())}", file=stderr)
        return EXIT[kind]

    try:
        opts = parse_args(args)
    except UsageError as exc:
        return fail("usage", f"{exc}; {USAGE}")
    try:
        config = load_config(config_file)
    except ConfigError as exc:
        return fail("config", str(exc))
    except OSError as exc:
        return fail("config", f"{config_file}: {exc.strerror or exc}")
    limits = SMTPLimits()
    login, gecos = _login()  # before leaving root: root's mail says it is root's
    try:
        # Run by root (cron, system scripts): write the queue and the
        # mailboxes as the server's account, never files only root can read.
        become_data_owner(config.data_dir)
    except (PrivilegeError, OSError) as exc:
        return fail("temporary", f"cannot become the owner of {config.data_dir}: {exc}")
    sender = opts.sender if opts.sender is not None else f"{login}@{config.hostname}"
    if not sender:
        return fail("usage", "the null sender (-f '<>') is not supported")
    try:
        raw = read_input(stdin, dot_ends=opts.dot_ends, limit=limits.message_size)
        prepared = prepare(
            to_crlf(raw, dot_ends=opts.dot_ends),
            extract=opts.extract,
            sender=sender,
            full_name=opts.full_name if opts.full_name is not None else gecos,
            hostname=config.hostname,
            now=time.time(),
        )
    except InputError as exc:
        return fail("data", str(exc))
    primary = config.domains[0] if config.domains else config.hostname
    recipients = _qualified([*opts.recipients, *prepared.header_recipients], primary)
    if not recipients:
        where = "in the command line or the To, Cc and Bcc fields" if opts.extract else "given"
        return fail("usage", f"no recipient {where}")
    try:
        from mailstead.cli.send import _receiver
        from mailstead.mta.submit import submit

        with _receiver(config) as receiver:
            submit(receiver, sender, recipients, prepared.content, trusted=True)
    except SubmitError as exc:
        return fail(_SUBMIT_EXIT.get(exc.kind, "temporary"), str(exc))
    except (OSError, sqlite3.Error, DirectoryError) as exc:
        return fail("temporary", f"cannot queue the message now: {exc}")
    except Exception as exc:  # a bug: say so in one line, never a traceback to cron
        return fail("software", f"internal error: {type(exc).__name__}: {exc}")
    return 0


@click.command(
    context_settings={"ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def sendmail(ctx: click.Context, args: tuple[str, ...]) -> None:
    """Read a message on standard input and submit it, as sendmail does.

    \b
    sendmail [-t] [-i|-oi] [-f SENDER] [-F NAME] [RECIPIENT...]
    Example:
      printf 'Subject: hi\\n\\nHello.\\n' | mailstead sendmail -i bob@example.org
    """
    if list(args) == ["--help"]:
        click.echo(ctx.get_help())
        return
    ctx.exit(run_sendmail(config_path(ctx), args, sys.stdin.buffer, sys.stderr))


def console_main() -> None:
    """A stand-alone ``sendmail`` (for a ``[project.scripts]`` entry or a symlink):
    the config is ``$MAILSTEAD_CONFIG``, else /etc/mailstead/mailstead.toml if it
    exists, else ./mailstead.toml."""
    path = os.environ.get("MAILSTEAD_CONFIG")
    if path is None:
        path = str(SYSTEM_CONFIG) if SYSTEM_CONFIG.exists() else "mailstead.toml"
    sys.exit(run_sendmail(Path(path), sys.argv[1:], sys.stdin.buffer, sys.stderr))
