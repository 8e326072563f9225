"""A throw-away Postfix instance that delivers example.test to a Maildir.

Everything lives under one temporary directory: its own ``config_directory``
(passed with ``postfix -c``), ``queue_directory``, ``data_directory`` and
virtual mailbox base, so the system Postfix (``/etc/postfix``,
``/var/spool/postfix``, port 25) is never read, written or bound. The
only listener is one ``smtpd`` on 127.0.0.1 at the port we choose.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "POSTFIX_INSTALL_HINT",
    "PostfixInstance",
    "postfix_missing",
    "postfix_version",
    "running_postfix",
]

POSTFIX_INSTALL_HINT = "apt-get install -y postfix"
_TOOLS = ("postfix", "postconf", "smtp-source")
_SBIN = "/usr/sbin"
# virtual(8) refuses uids below virtual_minimum_uid (100), so root cannot own
# the mailbox; "nobody" is on every Debian system and owns nothing else here.
_MAILBOX_USER = "nobody"


def _tool(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path=_SBIN)


def postfix_missing() -> list[str]:
    """The Postfix programs the benchmark needs that are not installed."""
    return [name for name in _TOOLS if _tool(name) is None]


def postfix_version() -> str:
    """``mail_version`` of the installed Postfix, e.g. ``3.7.11``."""
    out = subprocess.run(
        [_require("postconf"), "-d", "-h", "mail_version"],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


def _require(name: str) -> str:
    path = _tool(name)
    if path is None:
        raise FileNotFoundError(f"{name} not found; install it with: {POSTFIX_INSTALL_HINT}")
    return path


def _main_cf(root: Path, uid: int, gid: int) -> str:
    # Debian's defaults everywhere except what isolates the instance and
    # makes it a virtual-mailbox (Maildir) host for example.test.
    return f"""\
compatibility_level = 3.6
queue_directory = {root}/queue
data_directory = {root}/data
maillog_file_prefixes = {root}
maillog_file = {root}/maillog
myhostname = mx.postfix.test
mydomain = postfix.test
myorigin = $myhostname
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
biff = no
virtual_mailbox_domains = example.test
virtual_mailbox_base = {root}/mail
virtual_mailbox_maps = texthash:{root}/etc/vmailbox
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{gid}
"""


def _master_cf(port: int) -> str:
    # Only the services a local virtual delivery needs; chroot off (column 5)
    # because the chroot would need copies of /etc files in the queue dir.
    services = [
        f"127.0.0.1:{port} inet n - n - - smtpd",
        "cleanup   unix n - n - 0 cleanup",
        "qmgr      unix n - n 300 1 qmgr",
        "rewrite   unix - - n - - trivial-rewrite",
        "bounce    unix - - n - 0 bounce",
        "defer     unix - - n - 0 bounce",
        "trace     unix - - n - 0 bounce",
        "verify    unix - - n - 1 verify",
        "flush     unix n - n 1000? 0 flush",
        "proxymap  unix - - n - - proxymap",
        "proxywrite unix - - n - 1 proxymap",
        "showq     unix n - n - - showq",
        "error     unix - - n - - error",
        "retry     unix - - n - - error",
        "discard   unix - - n - - discard",
        "virtual   unix - n n - - virtual",
        "anvil     unix - - n - 1 anvil",
        "scache    unix - - n - 1 scache",
        "postlog   unix-dgram n - n - 1 postlogd",
    ]
    return "\n".join(services) + "\n"


@dataclass(frozen=True)
class PostfixInstance:
    """A running private Postfix: where it listens and where alice's mail lands."""

    config_dir: Path
    port: int
    maildir: Path
    log: Path
    queue_dir: Path

    def master_pid(self) -> int:
        """Process id of this instance's master(8), from its pid file."""
        return int((self.queue_dir / "pid" / "master.pid").read_text().split()[0])


@contextmanager
def running_postfix(root: Path, port: int, recipient: str) -> Iterator[PostfixInstance]:
    """Start a private Postfix under ``root`` on 127.0.0.1:``port``; stop it on exit.

    ``recipient`` (``local@example.test``) gets the Maildir
    ``<root>/mail/example.test/<local>/Maildir/``.
    """
    if os.geteuid() != 0:
        raise PermissionError("Postfix's master must start as root; run the benchmark as root")
    postfix = _require("postfix")
    owner = pwd.getpwnam(_MAILBOX_USER)
    local, domain = recipient.split("@")
    etc = root / "etc"
    etc.mkdir(parents=True)
    (etc / "main.cf").write_text(_main_cf(root, owner.pw_uid, owner.pw_gid))
    (etc / "master.cf").write_text(_master_cf(port))
    # texthash: read as is, no postmap step. Trailing "/" = Maildir (virtual(8)).
    (etc / "vmailbox").write_text(f"{recipient} {domain}/{local}/Maildir/\n")
    # "postfix start" creates the queue's subdirectories, not the roots.
    (root / "queue").mkdir(mode=0o755)
    (root / "data").mkdir(mode=0o700)
    postfix_user = pwd.getpwnam("postfix")
    os.chown(root / "data", postfix_user.pw_uid, postfix_user.pw_gid)
    # virtual(8) creates the Maildir itself, as the mailbox owner.
    base = root / "mail"
    base.mkdir()
    os.chown(base, owner.pw_uid, owner.pw_gid)
    instance = PostfixInstance(
        etc, port, base / domain / local / "Maildir", root / "maillog", root / "queue"
    )
    cmd = [postfix, "-c", str(etc)]
    # Postfix reports errors on stderr only when it is a terminal, else in
    # maillog: leave stderr alone so that a failure to start is visible.
    subprocess.run([*cmd, "start"], check=True, stdout=subprocess.DEVNULL)
    try:
        yield instance
    finally:
        # "stop" waits for master to exit, so the port is free afterwards.
        subprocess.run([*cmd, "stop"], check=False, stdout=subprocess.DEVNULL)
