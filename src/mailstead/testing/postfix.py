"""A throw-away Postfix (Debian's package) as a real peer for tests and benchmarks.

Everything of an instance lives under one directory: its own
``config_directory`` (passed with ``postfix -c``), ``queue_directory``,
``data_directory``, log file and virtual mailbox base, so the system Postfix
(``/etc/postfix``, ``/var/spool/postfix``, port 25) is never read, written
or bound. The only listener is one ``smtpd`` on the loopback address and
port the caller chooses::

    with running_postfix(tmp / "pf", port=port, mailboxes=["bob@pf.test"],
                         transports={"example.test": f"smtp:[127.0.0.1]:{ours}"}) as pf:
        ...  # SMTP to 127.0.0.1:port; bob's mail appears in pf.maildir("bob@pf.test")

It can be a final destination (``mailboxes``: addresses delivered by
virtual(8) into Maildirs) and a relay (``transports``: a transport(5) map,
domain to ``smtp:[host]:port``); clients on 127.0.0.0/8 may relay.

:func:`running_smtp_sink` runs Postfix's ``smtp-sink``, an SMTP server that
accepts and discards everything, as fast as it can.

Postfix's master(8) starts as root, so both need root; they raise
:class:`PermissionError` otherwise. :func:`postfix_missing` says what is
not installed (``apt-get install -y postfix``).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import pwd
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "POSTFIX_INSTALL_HINT",
    "PostfixInstance",
    "SmtpSink",
    "postfix_missing",
    "postfix_version",
    "running_postfix",
    "running_smtp_sink",
]

POSTFIX_INSTALL_HINT = "apt-get install -y postfix"
_TOOLS = ("postfix", "postconf", "smtp-source", "smtp-sink")
_SBIN = "/usr/sbin"
# virtual(8) refuses uids below virtual_minimum_uid (100), so root cannot own
# the mailboxes; "nobody" is on every Debian system and owns nothing else here.
_MAILBOX_USER = "nobody"
# Queues a message can be in (postconf queue_directory layout).
_QUEUES = ("maildrop", "incoming", "active", "deferred", "hold")
_START_TIMEOUT = 30.0
_POLL = 0.05


def _tool(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path=_SBIN)


def _require(name: str) -> str:
    path = _tool(name)
    if path is None:
        raise FileNotFoundError(f"{name} not found; install it with: {POSTFIX_INSTALL_HINT}")
    return path


def _require_root(what: str) -> None:
    if os.geteuid() != 0:
        raise PermissionError(f"{what} must start as root")


def _require_loopback(host: str) -> None:
    if not ipaddress.ip_address(host).is_loopback:
        raise ValueError(f"{host} is not a loopback address; private instances stay on it")


def _require_walkable(root: Path) -> None:
    # virtual(8) opens the Maildirs as the mailbox owner, not as root.
    for parent in root.resolve().parents:
        if not parent.stat().st_mode & 0o001:
            raise PermissionError(
                f"{parent} is not searchable by others; Postfix's unprivileged"
                " processes must reach the instance (use a directory under /tmp)"
            )


def postfix_missing(tools: Sequence[str] = _TOOLS) -> list[str]:
    """Those of ``tools`` (default: every Postfix program used here) not installed."""
    return [name for name in tools if _tool(name) is None]


def postfix_version() -> str:
    """``mail_version`` of the installed Postfix, e.g. ``3.7.11``."""
    out = subprocess.run(
        [_require("postconf"), "-d", "-h", "mail_version"],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


def _wait_for_port(host: str, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"nothing listens on {host}:{port} after {timeout:.0f} s"
                ) from None
            time.sleep(_POLL)


def _main_cf(
    root: Path,
    *,
    hostname: str,
    uid: int,
    gid: int,
    domains: Sequence[str],
    relay_domains: Sequence[str],
    tls: tuple[Path, Path] | None,
    settings: Mapping[str, str],
) -> str:
    # Debian's defaults everywhere except what isolates the instance and
    # what the caller asked for (virtual mailboxes, relay transports, TLS).
    lines = {
        "compatibility_level": "3.6",
        "queue_directory": f"{root}/queue",
        "data_directory": f"{root}/data",
        "maillog_file_prefixes": str(root),
        "maillog_file": f"{root}/maillog",
        "myhostname": hostname,
        "mydomain": hostname.partition(".")[2] or hostname,
        "myorigin": "$myhostname",
        "mydestination": "",
        # master.cf names the one listener's address; this only has to be valid.
        "inet_interfaces": "loopback-only",
        "inet_protocols": "ipv4",
        "mynetworks": "127.0.0.0/8",
        # No reverse DNS for clients: the resolver may be unreachable here.
        "smtpd_peername_lookup": "no",
        "alias_maps": "",
        "alias_database": "",
        "biff": "no",
        "virtual_mailbox_domains": " ".join(domains),
        "virtual_mailbox_base": f"{root}/mail",
        "virtual_mailbox_maps": f"texthash:{root}/etc/vmailbox",
        "virtual_uid_maps": f"static:{uid}",
        "virtual_gid_maps": f"static:{gid}",
        "relay_domains": " ".join(relay_domains),
        # texthash: read as is, no postmap step.
        "transport_maps": f"texthash:{root}/etc/transport",
        # Opportunistic TLS towards peers that offer STARTTLS (RFC 7435).
        "smtp_tls_security_level": "may",
    }
    if tls is not None:
        lines["smtpd_tls_cert_file"] = str(tls[0])
        lines["smtpd_tls_key_file"] = str(tls[1])
        lines["smtpd_tls_security_level"] = "may"
    lines.update(settings)
    return "".join(f"{name} = {value}\n" for name, value in lines.items())


def _master_cf(host: str, port: int) -> str:
    # Only the services a virtual delivery or an SMTP relay needs; chroot off
    # (column 5) because the chroot would need copies of /etc in the queue dir.
    services = [
        f"{host}:{port} inet n - n - - smtpd",
        "pickup    unix n - n 60 1 pickup",
        "cleanup   unix n - n - 0 cleanup",
        "qmgr      unix n - n 300 1 qmgr",
        "tlsmgr    unix - - n 1000? 1 tlsmgr",
        "rewrite   unix - - n - - trivial-rewrite",
        "bounce    unix - - n - 0 bounce",
        "defer     unix - - n - 0 bounce",
        "trace     unix - - n - 0 bounce",
        "verify    unix - - n - 1 verify",
        "flush     unix n - n 1000? 0 flush",
        "proxymap  unix - - n - - proxymap",
        "proxywrite unix - - n - 1 proxymap",
        "smtp      unix - - n - - smtp",
        "relay     unix - - n - - smtp",
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
    """A running private Postfix: where it listens, its directories and its log."""

    root: Path
    config_dir: Path
    host: str
    port: int
    log: Path
    queue_dir: Path
    mail_base: Path

    def maildir(self, address: str) -> Path:
        """The Maildir virtual(8) delivers ``address`` to (one of ``mailboxes``)."""
        local, domain = address.rsplit("@", 1)
        return self.mail_base / domain / local / "Maildir"

    def master_pid(self) -> int:
        """Process id of this instance's master(8), from its pid file."""
        return int((self.queue_dir / "pid" / "master.pid").read_text().split()[0])

    def run(self, tool: str, *args: str) -> str:
        """Run a Postfix command (``postsuper``, ``postqueue`` …) on this instance."""
        out = subprocess.run(
            [_require(tool), "-c", str(self.config_dir), *args],
            check=False,
            capture_output=True,
            text=True,
        )
        if out.returncode != 0:
            raise RuntimeError(f"{tool} {' '.join(args)} failed: {out.stderr.strip()}")
        return out.stdout

    def queued(self) -> int:
        """Messages in this instance's queues (maildrop, incoming, active, deferred, hold)."""
        count = 0
        for queue in _QUEUES:
            for _, _, files in os.walk(self.queue_dir / queue):
                count += len(files)
        return count

    def log_text(self) -> str:
        """What this instance logged so far (for assertion messages)."""
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""


@contextmanager
def running_postfix(
    root: Path,
    *,
    port: int,
    host: str = "127.0.0.1",
    hostname: str = "mx.postfix.test",
    mailboxes: Sequence[str] = (),
    transports: Mapping[str, str] | None = None,
    tls: tuple[Path, Path] | None = None,
    settings: Mapping[str, str] | None = None,
) -> Iterator[PostfixInstance]:
    """Start a private Postfix under ``root`` on ``host:port``; stop it on exit.

    ``root`` may exist (empty); it is made world-searchable, and its
    ancestors must be: Postfix's unprivileged processes walk in.

    ``mailboxes`` (``local@domain``) are delivered to
    ``<root>/mail/<domain>/<local>/Maildir/``, and their domains become
    ``virtual_mailbox_domains``. ``transports`` maps a domain to a next hop
    such as ``smtp:[127.0.0.1]:2525`` and makes it a relay domain. ``tls``
    (certificate, key) lets ``smtpd`` offer STARTTLS. ``settings`` are
    further ``main.cf`` parameters, overriding the ones made here.
    Returns once ``smtpd`` accepts connections.
    """
    _require_root("Postfix's master(8)")
    _require_loopback(host)
    postfix = _require("postfix")
    transports = dict(transports or {})
    owner = pwd.getpwnam(_MAILBOX_USER)
    domains = sorted({address.rsplit("@", 1)[1] for address in mailboxes})
    etc = root / "etc"
    etc.mkdir(parents=True)
    root.chmod(0o755)
    _require_walkable(root)
    (etc / "main.cf").write_text(
        _main_cf(
            root,
            hostname=hostname,
            uid=owner.pw_uid,
            gid=owner.pw_gid,
            domains=domains,
            relay_domains=sorted(transports),
            tls=tls,
            settings=settings or {},
        )
    )
    (etc / "master.cf").write_text(_master_cf(host, port))
    # Trailing "/" = Maildir (virtual(8)).
    (etc / "vmailbox").write_text(
        "".join(f"{a} {a.rsplit('@', 1)[1]}/{a.rsplit('@', 1)[0]}/Maildir/\n" for a in mailboxes)
    )
    (etc / "transport").write_text("".join(f"{d} {hop}\n" for d, hop in transports.items()))
    # "postfix start" creates the queue's subdirectories, not the roots.
    (root / "queue").mkdir(mode=0o755)
    (root / "data").mkdir(mode=0o700)
    postfix_user = pwd.getpwnam("postfix")
    os.chown(root / "data", postfix_user.pw_uid, postfix_user.pw_gid)
    # virtual(8) creates the Maildirs itself, as the mailbox owner.
    base = root / "mail"
    base.mkdir()
    os.chown(base, owner.pw_uid, owner.pw_gid)
    instance = PostfixInstance(root, etc, host, port, root / "maillog", root / "queue", base)
    cmd = [postfix, "-c", str(etc)]
    # Postfix reports errors on stderr only when it is a terminal, else in
    # maillog: leave stderr alone so that a failure to start is visible.
    started = subprocess.run([*cmd, "start"], check=False, stdout=subprocess.DEVNULL)
    if started.returncode != 0:
        # "check" reports configuration errors on stderr even without a terminal.
        check = subprocess.run([*cmd, "check"], check=False, capture_output=True, text=True)
        raise RuntimeError(
            f"postfix start failed ({started.returncode}): {check.stderr.strip()}\n"
            f"{instance.log_text()}"
        )
    try:
        try:
            _wait_for_port(host, port, _START_TIMEOUT)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}; Postfix log:\n{instance.log_text()}") from None
        yield instance
    finally:
        # "stop" waits for master to exit, so the port is free afterwards.
        subprocess.run([*cmd, "stop"], check=False, stdout=subprocess.DEVNULL)


@dataclass(frozen=True)
class SmtpSink:
    """A running ``smtp-sink``: where it listens, its process and its counters."""

    host: str
    port: int
    process: subprocess.Popen[bytes]
    counters: Path | None = None

    def messages(self) -> int:
        """Messages accepted so far (needs ``counters``): the last ``mesg=N`` of ``-c``."""
        if self.counters is None:
            raise ValueError("smtp-sink was started without a counters file")
        found = re.findall(rb"mesg=(\d+)", self.counters.read_bytes())
        return int(found[-1]) if found else 0


@contextmanager
def running_smtp_sink(
    *,
    port: int,
    host: str = "127.0.0.1",
    connections: int = 256,
    user: str = "nobody",
    counters: Path | None = None,
) -> Iterator[SmtpSink]:
    """Postfix's smtp-sink on ``host:port``, accepting and discarding all mail.

    ``connections`` bounds the simultaneous sessions (``-m``); the process
    drops root for ``user`` once the socket is open (``-u``). With
    ``counters``, its running counters (``-c``) go to that file, so that
    :meth:`SmtpSink.messages` can tell how many messages it took. Stopped on exit.
    """
    _require_loopback(host)
    args = [_require("smtp-sink"), "-m", str(connections)]
    if os.geteuid() == 0:
        args += ["-u", user]
    if counters is not None:
        args.append("-c")
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(counters.open("wb")) if counters is not None else None
        process = subprocess.Popen(
            [*args, f"{host}:{port}", "1024"],
            stdout=out if out is not None else subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait_for_port(host, port, _START_TIMEOUT)
            yield SmtpSink(host, port, process, counters)
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
