"""Wires the directory, the store, the queue and the listeners, and runs them.

``start`` runs them in one event loop (the tests use it directly); the
``serve`` command's processes, privileges and signals are in daemon.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import ssl
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from mailstead import metrics
from mailstead.acme_client import keep_certificate, serving_files
from mailstead.addresses import AddressError, canonical_address
from mailstead.clock import SystemClock
from mailstead.config import Config, HostPort
from mailstead.directory import Directory, open_directory
from mailstead.dns import DNSResolver
from mailstead.limits import IMAPLimits, POP3Limits, SMTPLimits, WebhookLimits
from mailstead.mailauth.dkim import DKIMKeys, DKIMSigner
from mailstead.mailauth.setup import receiver_checks, submission_checks
from mailstead.metrics.queue_stats import queue_source
from mailstead.mta.outbound import Outbound
from mailstead.mta.queue import Queue, open_queue
from mailstead.mta.receiver import Receiver, Role
from mailstead.net.auth_penalty import AuthPenalty
from mailstead.net.auth_penalty_db import open_auth_penalty
from mailstead.net.imap_session import IMAPService
from mailstead.net.listener import ConnectionGate, bind
from mailstead.net.memory import limit_idle_memory
from mailstead.net.metrics_http import MetricsService
from mailstead.net.pop3_session import POP3Service
from mailstead.net.smtp_client import SMTPTransport
from mailstead.net.smtp_session import SMTPService
from mailstead.password_cache import PasswordCache
from mailstead.proto.imap.server import IMAPSettings
from mailstead.proto.pop3 import POP3Settings
from mailstead.proto.smtp.server import ServerSettings
from mailstead.store import MailboxStore, open_mail_store
from mailstead.tlscert import CertificateError, server_context
from mailstead.webhooks.dispatcher import Dispatcher
from mailstead.webhooks.endpoints import ConfiguredEndpoint
from mailstead.webhooks.http import WebhookClient
from mailstead.webhooks.outbox import Outbox, connect_outbox
from mailstead.webhooks.ssrf import AddressGuard

log = logging.getLogger("mailstead")

# Deliveries fsync, which blocks; enough threads let many sessions' fsyncs
# overlap (the disk and the file system coalesce them).
_DELIVERY_THREADS = 8
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
    services: list[SMTPService | IMAPService | POP3Service] = field(default_factory=list)
    outbox: Outbox | None = None
    outbound: Outbound | None = None
    _outbound_stop: asyncio.Event = field(default_factory=asyncio.Event)
    _outbound_task: asyncio.Task[None] | None = None
    _webhooks: WebhookClient | None = None
    _dispatcher_task: asyncio.Task[None] | None = None
    _acme_task: asyncio.Task[None] | None = None
    # The [listen] metrics sockets' connections (None: metrics not served).
    _metrics: MetricsService | None = None
    #: The context every TLS listener shares; a reload loads new files into it.
    tls: ssl.SSLContext | None = None
    # Directories replaced by a reload, closed at stop: a login in a thread may still use one.
    _retired: list[Directory] = field(default_factory=list)

    def address(self, role: str) -> HostPort:
        """The first bound (host, port) of a role, e.g. after listening on port 0."""
        sock = self.servers[role][0].sockets[0]
        host, port = sock.getsockname()[:2]
        return str(host), int(port)

    def reload(self, config: Config) -> list[str]:
        """Apply what a changed config allows without dropping a session; return what failed.

        New handshakes use the certificate files as they are now; local
        domains switch for the next RCPT. Users and aliases need nothing:
        they are read from the directory's database at each use.
        """
        failed: list[str] = []
        if self.tls is not None:
            # Tried on a context of its own first: a key that fails to load
            # after its certificate did would leave the live context broken.
            # OpenSSL copies the pair into each connection when it starts, so
            # sessions already running keep theirs.
            cert, key = serving_files(config)  # ACME's, once it has one
            try:
                server_context(cert, key)
                self.tls.load_cert_chain(cert, key)
            except (CertificateError, ssl.SSLError, OSError) as exc:
                failed.append(f"certificate kept: {exc}")
        if config.domains != self.config.domains:
            metrics.set_local_domains(config.domains)
            directory = open_directory(config, PasswordCache(config.auth.password_cache_ttl))
            self._retired.append(self.directory)
            self.directory = directory
            for service in self.services:
                if isinstance(service, SMTPService):
                    service.receiver.directory = directory
                    service.receiver.primary_domain = config.domains[0]
            if self.outbound is not None:
                self.outbound.directory = directory
        self.config = config
        return failed

    async def stop(self, grace: float = _SHUTDOWN_GRACE) -> None:
        """Stop accepting, let sessions end at their next wait for input, close the stores.

        Sessions and the outbound deliveries in progress get ``grace``
        seconds together; the queue stays consistent whatever is cut short
        (docs/durability.md).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        for servers in self.servers.values():
            for server in servers:
                server.close()
        if self._metrics is not None:
            self._metrics.close()
        sessions = [s for service in self.services for s in service.sessions]
        for session in sessions:
            session.shutdown()
        if self._acme_task is not None:
            # An order in progress is abandoned; the next start orders again.
            self._acme_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._acme_task
        if self._dispatcher_task is not None:
            # A POST in flight is abandoned: its lease runs out and the
            # delivery is tried again (receivers deduplicate by webhook-id).
            self._dispatcher_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._dispatcher_task
        if self._webhooks is not None:
            await self._webhooks.aclose()
        self._outbound_stop.set()
        if self._outbound_task is not None:
            # A delivery in progress finishes its current step; whatever it
            # did not record stays queued and is tried again after restart.
            try:
                await asyncio.wait_for(
                    asyncio.shield(self._outbound_task), max(0.0, deadline - loop.time())
                )
            except TimeoutError:
                self._outbound_task.cancel()
        if sessions:
            await asyncio.wait(
                [asyncio.ensure_future(s.wait_closed()) for s in sessions],
                timeout=max(0.1, deadline - loop.time()),
            )
        for servers in self.servers.values():
            for server in servers:
                await server.wait_closed()
        # Commits still running in threads finish before the store closes.
        await loop.run_in_executor(None, self.executor.shutdown, True)
        self.queue.close()
        if self.outbox is not None:
            self.outbox.close()
        self.directory.close()
        for directory in self._retired:
            directory.close()


def _tls_context(config: Config) -> ssl.SSLContext | None:
    cert, key = serving_files(config)
    if cert.exists() and key.exists():
        return server_context(cert, key)
    return None


SMTP_ROLES = (Role.MTA, Role.MSA, Role.MSA_TLS)
# The mail listeners, by their config keys under [listen]; the last four
# serve mail to clients (implicit TLS for imaps and pop3s).
MAIL_LISTENERS = (*(role.value for role in SMTP_ROLES), "imap", "imaps", "pop3", "pop3s")
# Every socket serve binds, in the order it binds them: then Prometheus's.
METRICS = "metrics"
LISTENERS = (*MAIL_LISTENERS, METRICS)
_IMPLICIT_TLS = frozenset({Role.MSA_TLS.value, "imaps", "pop3s"})


def _addresses(config: Config, listener: str) -> tuple[HostPort, ...]:
    addresses: tuple[HostPort, ...] = getattr(config.listen, listener)
    return addresses


@dataclass
class Listeners:
    """Sockets bound once, before worker processes fork, and their connection gates."""

    sockets: dict[str, list[socket.socket]]
    gates: dict[str, ConnectionGate]
    #: Failed logins by address and network, for every listener and worker.
    penalty: AuthPenalty
    #: Worker processes that share these sockets (and the outbound queue).
    workers: int = 1

    @classmethod
    def bind(
        cls, config: Config, limits: SMTPLimits, workers: int = 1, *, shared_metrics: bool = True
    ) -> Listeners:
        """Bind every configured socket; with ``shared_metrics`` (``serve``), make the
        processes forked from here on count into ``<data_dir>/metrics/``."""
        sockets: dict[str, list[socket.socket]] = {}
        for listener in LISTENERS:
            for host, port in _addresses(config, listener):
                try:
                    sock = bind((host, port))
                except OSError as exc:
                    for socks in sockets.values():
                        for sock in socks:
                            sock.close()
                    shown = f"[{host}]" if ":" in host else host
                    reason = (exc.strerror or str(exc)).lower()
                    if isinstance(exc, PermissionError) and port < 1024:
                        reason += " (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
                    raise ListenError(f"listen.{listener} {shown}:{port}: {reason}") from exc
                sockets.setdefault(listener, []).append(sock)
        try:
            # Sessions are counted in files every forked worker shares, with
            # or without [listen] metrics: `mailstead status` reads them too.
            if shared_metrics:
                metrics.start_serving(metrics.metrics_dir(config))
        except OSError:
            for socks in sockets.values():
                for sock in socks:
                    sock.close()
            raise
        counts = config.limits
        gates = {
            listener: ConnectionGate(
                counts.connections_per_ip,
                counts.connections_total,
                per_network=counts.connections_per_network,
                stress_fraction=counts.stress_threshold / 100,
                workers=workers,
                proxy_from=config.listen.proxy_protocol,
            )
            for listener in sockets
            if listener != METRICS
        }
        # In shared memory; with [storage] backend = "postgresql" in the
        # cluster's database too, opened after the fork by each worker.
        penalty = open_auth_penalty(config)
        return cls(sockets, gates, penalty, workers)

    def close(self) -> None:
        """Close the sockets: once every process has, connections are refused."""
        for socks in self.sockets.values():
            for sock in socks:
                sock.close()


class ListenError(Exception):
    """A listening socket could not be opened (address in use, no permission)."""


class SourceAddressError(ListenError):
    """A configured outbound source address is on no interface of this host."""


def check_source_addresses(config: Config) -> None:
    """Refuse to serve when mail would leave from an address the host lacks."""
    delivery = config.delivery
    keys = {delivery.source_ip: "delivery.source_ip"} if delivery.source_ip else {}
    for domain, address in delivery.source_ip_by_domain.items():
        keys.setdefault(address, f"delivery.source_ip_by_domain.{domain}")
    for address, key in keys.items():
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        # Binding to a local address succeeds only where an interface has it.
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind((address, 0))
            except OSError:
                raise SourceAddressError(
                    f"{key}: {address} is on no interface of this host "
                    f"(add it: mailstead net add IFACE {address}/PREFIX)"
                ) from None


async def start(
    config: Config,
    limits: SMTPLimits | None = None,
    *,
    listeners: Listeners | None = None,
    worker: int = 0,
    outbound: bool = True,
    imap_limits: IMAPLimits | None = None,
    pop3_limits: POP3Limits | None = None,
    wake_webhooks: Callable[[Sequence[str]], None] | None = None,
    tls: ssl.SSLContext | None = None,
) -> RunningServer:
    """Serve every configured SMTP listener; return once they accept connections.

    Without ``listeners`` the sockets are bound here (one process, as tests
    do); ``serve`` binds them first and passes them to each worker. Every
    worker also runs the outbound MTA over its own share of the queue, unless
    ``outbound`` is False (tests that want queued mail to stay put).
    Webhooks are sent by a dispatcher task in this process, unless
    ``wake_webhooks`` is given: then a dispatcher elsewhere sends them, and
    this process calls it after storing events (``serve``). ``tls`` is the
    context ``serve`` loaded before dropping root; without it, ``[tls]``'s
    files are loaded here if they exist.
    """
    limits = limits or SMTPLimits()
    limit_idle_memory()
    metrics.set_local_domains(config.domains)
    if listeners is None:
        # One process (tests): it counts in its own memory, which it serves.
        listeners = Listeners.bind(config, limits, shared_metrics=False)
    directory = open_directory(config, PasswordCache(config.auth.password_cache_ttl))
    # The webhook outbox shares the queue's database, so the queue's events
    # commit with the queue changes they report.
    outbox = open_outbox(config)
    queue = open_queue(config, events=outbox)
    mail = open_mail_store(config, outbox)  # [storage] format and backend
    store = mail.delivery
    executor = ThreadPoolExecutor(_DELIVERY_THREADS, thread_name_prefix="deliver")
    running = RunningServer(config, directory, queue, executor, outbox=outbox)
    if wake_webhooks is None:
        dispatcher = webhook_dispatcher(config, outbox, executor)
        running._webhooks = dispatcher.client
        running._dispatcher_task = asyncio.get_running_loop().create_task(
            dispatcher.run(), name="webhooks"
        )
    else:
        outbox.on_emitted = wake_webhooks
    tls = running.tls = tls or _tls_context(config)
    if tls is not None and config.tls.acme is not None:
        running._acme_task = keep_certificate(config, tls)
    policy = config.limits.policy()

    def authenticate(authcid: str, password: str, authzid: str) -> str | None:
        user = running.directory.authenticate(authcid, password)
        if user is None or not authzid:
            return user
        # RFC 4616 §2: acting as somebody else is not allowed here.
        try:
            return user if canonical_address(authzid) == user else None
        except AddressError:
            return None

    on_queued: Callable[[], None] | None = None
    if outbound:
        engine = running.outbound = _outbound(config, queue, directory, store, executor)
        engine.shard = (worker, listeners.workers)
        loop = asyncio.get_running_loop()

        def on_queued() -> None:  # runs in a delivery thread
            loop.call_soon_threadsafe(engine.wake)

        running._outbound_task = loop.create_task(
            engine.run(running._outbound_stop), name="outbound"
        )

    loop = asyncio.get_running_loop()
    # IMAP and POP3 read the store the MDA writes.
    accounts, maildrops = mail.accounts, mail.maildrops
    try:
        for listener, sockets in listeners.sockets.items():
            if listener == METRICS:
                await _serve_metrics(running, sockets, worker)
                continue
            implicit_tls = listener in _IMPLICIT_TLS
            if implicit_tls and tls is None:
                raise ListenError(f"listen.{listener} needs a TLS certificate ({config.tls.cert})")
            gate = listeners.gates[listener]
            gate.bind_worker(worker)
            protocol_factory: Callable[[], asyncio.Protocol]
            if listener.startswith("pop3"):
                pop3 = POP3Service(
                    POP3Settings(
                        config.hostname,
                        limits=pop3_limits or POP3Limits(),
                        tls_available=tls is not None,
                        secure=implicit_tls,
                        delete_retrieved=config.pop3.delete_retrieved,
                    ),
                    lambda user, password: authenticate(user, password, ""),
                    maildrops.open,
                    tls,
                    gate,
                    executor,
                    policy,
                    listeners.penalty,
                    outbox,
                )
                running.services.append(pop3)
                protocol_factory = pop3.protocol_factory
            elif listener.startswith("imap"):
                imap = IMAPService(
                    IMAPSettings(
                        config.hostname, secure=implicit_tls, tls_available=tls is not None
                    ),
                    imap_limits or IMAPLimits(),
                    accounts.open_for_login,
                    authenticate,
                    executor,
                    tls,
                    gate,
                    policy,
                    listeners.penalty,
                    outbox,
                    # RFC 9208: read at each use, from the directory a reload put in.
                    quota_limits=lambda user: running.directory.quota(user),
                )
                running.services.append(imap)
                protocol_factory = imap.protocol_factory
            else:
                role = Role(listener)
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
                    on_queued=on_queued,
                    checks=(
                        receiver_checks(config, outbox)
                        if role is Role.MTA
                        else submission_checks(config, listener, outbox)
                    ),
                )
                smtp = SMTPService(
                    settings,
                    receiver,
                    executor,
                    authenticate if role.is_submission else None,
                    tls,
                    gate,
                    policy,
                    listeners.penalty,
                    outbox,
                )
                running.services.append(smtp)
                protocol_factory = smtp.protocol_factory
            for sock in sockets:
                # Implicit TLS too is done by the session, after the gate
                # admitted it (net/stream.py): a handshake holds a slot.
                server = await loop.create_server(protocol_factory, sock=sock)
                running.servers.setdefault(listener, []).append(server)
                if worker == 0:
                    host, port = running.address(listener)
                    log.info("%s listening on %s:%d", listener, host, port)
    except BaseException:
        await running.stop()
        raise
    return running


async def _serve_metrics(running: RunningServer, sockets: list[socket.socket], worker: int) -> None:
    """Answer scrapes on the [listen] metrics sockets (any worker may get one)."""
    queue = queue_source(running.config)
    service = running._metrics = MetricsService(lambda: metrics.render(queue), metrics.CONTENT_TYPE)
    loop = asyncio.get_running_loop()
    for sock in sockets:
        server = await loop.create_server(service.protocol_factory, sock=sock)
        running.servers.setdefault(METRICS, []).append(server)
    if worker == 0:
        host, port = running.address(METRICS)
        log.info("%s listening on %s:%d", METRICS, host, port)


def open_outbox(config: Config) -> Outbox:
    """The webhook outbox, its config endpoints made to match ``[[webhooks]]``."""
    outbox = connect_outbox(config)
    try:
        outbox.endpoints.sync_config(
            [
                ConfiguredEndpoint(
                    w.url, w.events, w.secret, w.domain, w.account, w.ordered, w.enabled
                )
                for w in config.webhooks
            ]
        )
    except BaseException:
        outbox.close()
        raise
    return outbox


def webhook_dispatcher(config: Config, outbox: Outbox, executor: ThreadPoolExecutor) -> Dispatcher:
    """A webhook dispatcher draining ``outbox``; events emitted here wake it at once."""
    limits = WebhookLimits()
    client = WebhookClient(
        AddressGuard(config.http_client.allow_networks),
        connect_timeout=limits.connect_timeout,
        read_timeout=limits.read_timeout,
        max_connections=limits.total,
    )
    dispatcher = Dispatcher(outbox, client, executor=executor, limits=limits)
    outbox.on_emitted = dispatcher.wake
    return dispatcher


def _client_tls_context() -> ssl.SSLContext:
    # Opportunistic TLS between MTAs (RFC 7435, Postfix "may"): encrypt when
    # offered, accept any certificate; MX names are not authenticated by DNS.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _outbound(
    config: Config,
    queue: Queue,
    directory: Directory,
    store: MailboxStore,
    executor: ThreadPoolExecutor,
) -> Outbound:
    keys = DKIMKeys(config.data_dir)
    for domain in config.domains:
        keys.ensure(domain)
    ours = {
        host for host, _ in config.listen.smtp if host not in ("0.0.0.0", "::") and _is_ip(host)
    }
    return Outbound(
        config,
        queue,
        directory=directory,
        store=store,
        resolver=DNSResolver(config.delivery.dns_servers),
        clock=SystemClock(),
        executor=executor,
        transport=SMTPTransport(_client_tls_context()),
        signer=DKIMSigner(keys),
        local_addresses=sorted(ours),
    )


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
