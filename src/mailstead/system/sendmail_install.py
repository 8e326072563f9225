"""``/usr/sbin/sendmail`` for ``mailstead init --system``: a small shell wrapper.

Programs find the MTA at ``/usr/sbin/sendmail`` (cron, mailx, PHP's
``sendmail_path``, git send-email). The wrapper runs this Python with the
system config, so it works from any directory and whatever ``$PATH`` or
``$MAILSTEAD_CONFIG`` the caller has; a symlink could carry neither.

Another MTA's sendmail (Postfix, Exim, msmtp...) is never replaced unless
asked; when it is, the old one is renamed to ``sendmail.before-mailstead``
beside it, so that removing Mailstead can put it back.
"""

from __future__ import annotations

import enum
import shlex
from collections.abc import Sequence
from pathlib import Path

__all__ = ["BACKUP_SUFFIX", "MARKER", "SENDMAIL_PATH", "Found", "found_at", "wrapper_text"]

SENDMAIL_PATH = Path("/usr/sbin/sendmail")
BACKUP_SUFFIX = ".before-mailstead"
#: The line that says a wrapper is ours (a re-run keeps it, never asks).
MARKER = "# Installed by `mailstead init --system`: Mailstead's sendmail interface."


class Found(enum.Enum):
    """What is at the sendmail path already."""

    NOTHING = "nothing"
    OURS = "ours"
    OTHER = "other"


def found_at(path: Path) -> Found:
    """Whether ``path`` is free, our wrapper, or another program (a symlink counts as another)."""
    if not path.exists() and not path.is_symlink():
        return Found.NOTHING
    if path.is_symlink() or not path.is_file():
        return Found.OTHER
    with path.open("rb") as f:
        head = f.read(4096)
    return Found.OURS if MARKER.encode() in head else Found.OTHER


def wrapper_text(command: Sequence[str], config: Path) -> str:
    """The wrapper script: ``command`` (the mailstead program) with ``--config``."""
    return (
        "#!/bin/sh\n"
        f"{MARKER}\n"
        "# Reads a message on standard input (sendmail -t -i ...); see docs/cli.md.\n"
        f'exec {shlex.join(command)} --config {shlex.quote(str(config))} sendmail "$@"\n'
    )
