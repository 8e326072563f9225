"""A real Mailstead server on 127.0.0.1 for end-to-end tests.

The server runs in its own event loop on a background thread, so tests can
drive it with blocking clients (smtplib, swaks, msmtp) from the test thread,
exactly as a user's mail client would.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from mailstead import app
from mailstead.config import Config, load_config
from mailstead.directory import open_directory
from mailstead.limits import IMAPLimits, SMTPLimits
from mailstead.store.mailbox import arrival_order
from mailstead.testing.dns import DNSServer
from mailstead.tlscert import ensure_self_signed

DOMAIN = "example.test"
USERS = {"alice@example.test": "alice-pw", "bob@example.test": "bob-pw"}


def write_config(
    root: Path,
    *,
    ports: dict[str, int] | None = None,
    storage: str = "maildir",
    workers: int = 0,
    delivery: str = "",
    extra: str = "",
    dsn: str = "",
) -> Path:
    """A mailstead.toml under ``root`` listening on 127.0.0.1 (port 0 = any).

    ``dsn``: keep the shared state in that PostgreSQL database (``[storage]
    backend = "postgresql"``); several servers may share it.
    """
    ports = ports or {}
    listen = "\n".join(
        f'{role} = ["127.0.0.1:{ports.get(role, 0)}"]'
        for role in ("smtp", "submission", "submissions", "imap", "imaps", "pop3", "pop3s")
    )
    # The tests run as root (CI does): serve would drop to the mailstead user.
    run = "" if "[run]" in extra else "[run]\nallow_root = true\n"
    if "dns_servers" not in delivery:
        # Every lookup (the SPF/DKIM/DMARC checks of received mail, on by
        # default) stays on loopback: a server that knows no name.
        delivery = f'dns_servers = ["{_nowhere_dns()}"]\n{delivery}'
    path = root / "mailstead.toml"
    path.write_text(
        f'hostname = "mx.{DOMAIN}"\n'
        f'data_dir = "var"\n'
        f"workers = {workers}\n"
        f'domains = ["{DOMAIN}", "other.test"]\n'
        f"[listen]\n{listen}\n"
        f'[storage]\nformat = "{storage}"\n'
        + (f'backend = "postgresql"\ndsn = "{dsn}"\n' if dsn else "")
        + f"[delivery]\n{delivery}\n{extra}{run}"
    )
    config = load_config(path)
    config.data_dir.mkdir(parents=True, exist_ok=True)
    ensure_self_signed(config.tls.cert, config.tls.key, config.hostname)
    with open_directory(config) as directory:
        for address, password in USERS.items():
            if directory.authenticate(address, password) is None:
                directory.add_user(address, password)
        directory.add_alias("team@example.test", ["alice@example.test", "bob@example.test"])
        directory.add_alias("postmaster@example.test", ["alice@example.test"])
    return path


_dns: DNSServer | None = None


def _nowhere_dns() -> str:
    """``host:port`` of a DNS server answering NXDOMAIN to every name, started once."""
    global _dns
    if _dns is None:
        _dns = DNSServer({})
        _dns.start()
    host, port = _dns.address
    return f"{host}:{port}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerHandle:
    """A running server: its config and bound ports."""

    config: Config
    ports: dict[str, int]

    @property
    def mail_root(self) -> Path:
        return self.config.mail_root

    def maildir(self, address: str) -> Path:
        local, domain = address.split("@")
        return self.config.mail_root / domain / local / "Maildir"

    def new_messages(self, address: str) -> list[bytes]:
        new = self.maildir(address) / "new"
        if not new.exists():
            return []
        # In delivery order: name order is not (the microseconds are not padded).
        paths = sorted(new.iterdir(), key=lambda p: arrival_order((p.name, "", "")))
        return [p.read_bytes() for p in paths]


def client_tls_context() -> ssl.SSLContext:
    """Clients in tests trust the self-signed certificate blindly."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


@contextmanager
def running_server(
    root: Path, *, limits: SMTPLimits | None = None, storage: str = "maildir", dsn: str = ""
) -> Iterator[ServerHandle]:
    """The standard test instance; queued mail stays queued (no outbound MTA).

    ``dsn``: on that PostgreSQL database (``write_config``).
    """
    config = load_config(write_config(root, storage=storage, dsn=dsn))
    with running_config(config, limits=limits) as handle:
        yield handle


@contextmanager
def running_config(
    config: Config,
    *,
    limits: SMTPLimits | None = None,
    outbound: bool = False,
    imap_limits: IMAPLimits | None = None,
) -> Iterator[ServerHandle]:
    """Serve ``config`` in this process, on a background thread's event loop."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    holder: dict[str, object] = {}

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            holder["server"] = loop.run_until_complete(
                app.start(config, limits, outbound=outbound, imap_limits=imap_limits)
            )
        except BaseException as exc:
            holder["error"] = exc
            started.set()
            return
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, name="mailstead-test-server", daemon=True)
    thread.start()
    started.wait(30)
    if "error" in holder:
        raise RuntimeError("server failed to start") from holder["error"]  # type: ignore[arg-type]
    server = holder["server"]
    assert isinstance(server, app.RunningServer)
    ports = {role: server.address(role)[1] for role in server.servers}
    try:
        yield ServerHandle(config, ports)
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()
