"""Wires the directory, the store, the queue and the listeners, and runs them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from mailstead.addresses import AddressError, canonical_address
from mailstead.config import Config, HostPort
from mailstead.directory import Directory
from mailstead.limits import SMTPLimits
from mailstead.mta.queue import Queue
from mailstead.mta.receiver import Receiver, Role
from mailstead.net.listener import ConnectionGate
from mailstead.net.smtp_session import SMTPService
from mailstead.proto.smtp.server import ServerSettings
from mailstead.store import open_store
from mailstead.tlscert import server_context

log = logging.getLogger("mailstead")

# Deliveries fsync, which blocks; enough threads let many sessions' fsyncs
# overlap (the disk and the file system coalesce them).
_DELIVERY_THREADS = 32
# On shutdown, how long sessions may take to finish what they are doing.
_SHUTDOWN_GRACE = 10.0


@dataclass
class RunningServer:
    """The listeners of one ``serve``: their bound addresses and how to stop them."""

    config: Config
    directory: Directory
    queue: Queue
    executor: ThreadPoolExecutor
    servers: dict[str, list[asyncio.Server]] = field(default_factory=dict)
    services: list[SMTPService] = field(default_factory=list)

    def address(self, role: str) -> HostPort:
        """The first bound (host, port) of a role, e.g. after listening on port 0."""
        sock = self.servers[role][0].sockets[0]
        host, port = sock.getsockname()[:2]
        return str(host), int(port)

    async def stop(self) -> None:
        for servers in self.servers.values():
            for server in servers:
                server.close()
        sessions = [s for service in self.services for s in service.sessions]
        for session in sessions:
            session.shutdown()
        if sessions:
            await asyncio.wait(
                [asyncio.ensure_future(s.wait_closed()) for s in sessions], timeout=_SHUTDOWN_GRACE
            )
        for servers in self.servers.values():
            for server in servers:
                await server.wait_closed()
        # Commits still running in threads finish before the store closes.
        await asyncio.get_running_loop().run_in_executor(None, self.executor.shutdown, True)
        self.queue.close()
        self.directory.close()


def _tls_context(config: Config) -> ssl.SSLContext | None:
    if config.tls.cert.exists() and config.tls.key.exists():
        return server_context(config.tls.cert, config.tls.key)
    return None


async def start(config: Config, limits: SMTPLimits | None = None) -> RunningServer:
    """Open every configured SMTP listener and return once they accept connections."""
    limits = limits or SMTPLimits()
    directory = Directory(config.db_path("directory"), config.domains)
    queue = Queue(config.data_dir)
    store = open_store(config.storage.format, config.mail_root)
    executor = ThreadPoolExecutor(_DELIVERY_THREADS, thread_name_prefix="deliver")
    running = RunningServer(config, directory, queue, executor)
    tls = _tls_context(config)

    def authenticate(authcid: str, password: str, authzid: str) -> str | None:
        user = directory.authenticate(authcid, password)
        if user is None or not authzid:
            return user
        # RFC 4616 §2: acting as somebody else is not allowed here.
        try:
            return user if canonical_address(authzid) == user else None
        except AddressError:
            return None

    roles = {
        Role.MTA: (config.listen.smtp, False),
        Role.MSA: (config.listen.submission, False),
        Role.MSA_TLS: (config.listen.submissions, True),
    }
    for name in ("imap", "imaps", "pop3", "pop3s"):
        if getattr(config.listen, name):
            log.warning("listen.%s is configured but not served: no %s server yet", name, name)
    loop = asyncio.get_running_loop()
    try:
        for role, (addresses, implicit_tls) in roles.items():
            if not addresses:
                continue
            if implicit_tls and tls is None:
                raise RuntimeError(
                    f"listen.{role.value} needs a TLS certificate ({config.tls.cert})"
                )
            settings = ServerSettings(
                hostname=config.hostname,
                limits=limits,
                tls_available=tls is not None,
                secure=implicit_tls,
                auth_mechanisms=("PLAIN", "LOGIN") if role.is_submission else (),
                auth_required=role.is_submission,
            )
            receiver = Receiver(
                role,
                hostname=config.hostname,
                domains=config.domains,
                directory=directory,
                store=store,
                queue=queue,
                limits=limits,
            )
            service = SMTPService(
                settings,
                receiver,
                executor,
                authenticate if role.is_submission else None,
                tls,
                ConnectionGate(limits.connections_per_ip, limits.connections_total),
            )
            running.services.append(service)
            for host, port in addresses:
                server = await loop.create_server(
                    service.protocol_factory,
                    host,
                    port,
                    ssl=tls if implicit_tls else None,
                    ssl_handshake_timeout=limits.tls_handshake_timeout if implicit_tls else None,
                    reuse_address=True,
                    backlog=512,
                )
                running.servers.setdefault(role.value, []).append(server)
                log.info("%s listening on %s:%d", role.value, host, running.address(role.value)[1])
    except BaseException:
        await running.stop()
        raise
    return running


async def _serve_until_signalled(config: Config) -> None:
    running = await start(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info("mailstead serving %s as %s", ", ".join(config.domains), config.hostname)
    await stop.wait()
    log.info("shutting down")
    await running.stop()


def serve(config: Config) -> None:
    """Run every configured listener until SIGINT or SIGTERM."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_until_signalled(config))
