"""Wires the directory, the store, the queue and the listeners, and runs them."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import signal
import socket
import ssl
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from mailstead.addresses import AddressError, canonical_address
from mailstead.clock import SystemClock
from mailstead.config import Config, HostPort
from mailstead.directory import Directory
from mailstead.dns import DNSResolver
from mailstead.limits import IMAPLimits, POP3Limits, SMTPLimits, WebhookLimits
from mailstead.mailauth.dkim import DKIMKeys, DKIMSigner
from mailstead.mta.outbound import Outbound
from mailstead.mta.queue import Queue
from mailstead.mta.receiver import Receiver, Role
from mailstead.net import watchdog
from mailstead.net.auth_penalty import AuthPenalty
from mailstead.net.imap_session import IMAPService
from mailstead.net.listener import ConnectionGate, bind
from mailstead.net.memory import limit_idle_memory
from mailstead.net.pop3_session import POP3Service
from mailstead.net.smtp_client import SMTPTransport
from mailstead.net.smtp_session import SMTPService
from mailstead.net.supervisor import Supervisor
from mailstead.net.watchdog import Heartbeats, Pulse
from mailstead.password_cache import PasswordCache
from mailstead.proto.imap.server import IMAPSettings
from mailstead.proto.pop3 import POP3Settings
from mailstead.proto.smtp.server import ServerSettings
from mailstead.store import MailboxStore, open_store
from mailstead.store.account import Account, Accounts, maildir_accounts
from mailstead.store.maildrop import maildir_maildrops
from mailstead.store.mbox_account import MboxAccount, mbox_accounts, mbox_maildrops
from mailstead.tlscert import server_context
from mailstead.webhooks.dispatcher import Dispatcher
from mailstead.webhooks.endpoints import ConfiguredEndpoint
from mailstead.webhooks.http import WebhookClient
from mailstead.webhooks.outbox import Outbox
from mailstead.webhooks.ssrf import AddressGuard
from mailstead.webhooks.wakeup import WakeChannel

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

    def address(self, role: str) -> HostPort:
        """The first bound (host, port) of a role, e.g. after listening on port 0."""
        sock = self.servers[role][0].sockets[0]
        host, port = sock.getsockname()[:2]
        return str(host), int(port)

    async def stop(self) -> None:
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
                await asyncio.wait_for(asyncio.shield(self._outbound_task), _SHUTDOWN_GRACE)
            except TimeoutError:
                self._outbound_task.cancel()
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
        if self.outbox is not None:
            self.outbox.close()
        self.directory.close()


def _tls_context(config: Config) -> ssl.SSLContext | None:
    if config.tls.cert.exists() and config.tls.key.exists():
        return server_context(config.tls.cert, config.tls.key)
    return None


SMTP_ROLES = (Role.MTA, Role.MSA, Role.MSA_TLS)
# Every listener, by its config key under [listen]; the last four serve mail
# to clients (implicit TLS for imaps and pop3s).
LISTENERS = (*(role.value for role in SMTP_ROLES), "imap", "imaps", "pop3", "pop3s")
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
    def bind(cls, config: Config, limits: SMTPLimits, workers: int = 1) -> Listeners:
        sockets: dict[str, list[socket.socket]] = {}
        try:
            for listener in LISTENERS:
                for address in _addresses(config, listener):
                    sockets.setdefault(listener, []).append(bind(address))
        except OSError as exc:
            for socks in sockets.values():
                for sock in socks:
                    sock.close()
            raise ListenError(f"cannot listen: {exc.strerror or exc}") from exc
        counts = config.limits
        gates = {
            listener: ConnectionGate(
                counts.connections_per_ip,
                counts.connections_total,
                per_network=counts.connections_per_network,
                stress_fraction=counts.stress_threshold / 100,
                workers=workers,
            )
            for listener in sockets
        }
        penalty = AuthPenalty(
            max_delay=counts.auth_penalty_max,
            block_after=counts.auth_block_after,
            block_time=counts.auth_block_time,
        )
        return cls(sockets, gates, penalty, workers)


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
) -> RunningServer:
    """Serve every configured SMTP listener; return once they accept connections.

    Without ``listeners`` the sockets are bound here (one process, as tests
    do); ``serve`` binds them first and passes them to each worker. Every
    worker also runs the outbound MTA over its own share of the queue, unless
    ``outbound`` is False (tests that want queued mail to stay put).
    Webhooks are sent by a dispatcher task in this process, unless
    ``wake_webhooks`` is given: then a dispatcher elsewhere sends them, and
    this process calls it after storing events (``serve``).
    """
    limits = limits or SMTPLimits()
    limit_idle_memory()
    if listeners is None:
        listeners = Listeners.bind(config, limits)
    directory = Directory(
        config.db_path("directory"),
        config.domains,
        password_cache=PasswordCache(config.auth.password_cache_ttl),
    )
    # The webhook outbox shares the queue's database, so the queue's events
    # commit with the queue changes they report.
    outbox = open_outbox(config)
    queue = Queue(config.data_dir, events=outbox)
    store = open_store(config.storage.format, config.mail_root)
    executor = ThreadPoolExecutor(_DELIVERY_THREADS, thread_name_prefix="deliver")
    running = RunningServer(config, directory, queue, executor, outbox=outbox)
    if wake_webhooks is None:
        dispatcher = _dispatcher(config, outbox, executor)
        running._webhooks = dispatcher.client
        running._dispatcher_task = asyncio.get_running_loop().create_task(
            dispatcher.run(), name="webhooks"
        )
    else:
        outbox.on_emitted = wake_webhooks
    tls = _tls_context(config)
    policy = config.limits.policy()

    def authenticate(authcid: str, password: str, authzid: str) -> str | None:
        user = directory.authenticate(authcid, password)
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
    # IMAP and POP3 read the store the MDA writes ([storage] format).
    accounts: Accounts[Account] | Accounts[MboxAccount]
    if config.storage.format == "mbox":
        accounts = mbox_accounts(config.mail_root, outbox)
        maildrops = mbox_maildrops(config.mail_root, outbox)
    else:
        accounts = maildir_accounts(config.mail_root, outbox)
        maildrops = maildir_maildrops(config.mail_root, outbox)
    try:
        for listener, sockets in listeners.sockets.items():
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


def open_outbox(config: Config) -> Outbox:
    """The webhook outbox, its config endpoints made to match ``[[webhooks]]``."""
    outbox = Outbox(config.data_dir / "queue.sqlite3")
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


def _dispatcher(config: Config, outbox: Outbox, executor: ThreadPoolExecutor) -> Dispatcher:
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


async def serve_until_signalled(
    config: Config,
    limits: SMTPLimits,
    listeners: Listeners,
    worker: int,
    pulse: Pulse,
    webhooks: WakeChannel,
) -> None:
    """One worker: serve until SIGINT or SIGTERM, then shut down gracefully."""
    loop = asyncio.get_running_loop()
    watchdog.install(pulse)
    pulse.start(loop)  # before start(): the supervisor's clock runs from the fork
    running = await start(
        config, limits, listeners=listeners, worker=worker, wake_webhooks=webhooks.send
    )
    await _signalled()
    await running.stop()
    pulse.stop()


async def dispatch_webhooks_until_signalled(
    config: Config, pulse: Pulse, webhooks: WakeChannel
) -> None:
    """The webhook dispatcher process of ``serve``: POST what the workers store.

    Its own process, at a lower CPU priority, so POSTs never slow mail:
    when the machine is busy with SMTP, webhooks wait (durably, in the
    outbox) and catch up afterwards.
    """
    with contextlib.suppress(OSError):
        os.nice(WebhookLimits().dispatcher_niceness)
    loop = asyncio.get_running_loop()
    watchdog.install(pulse)
    pulse.start(loop)
    outbox = Outbox(config.data_dir / "queue.sqlite3")
    # The only dispatcher of this serve: a lease still set is from its
    # predecessor, killed mid-POST; those deliveries are due again now.
    await loop.run_in_executor(None, outbox.release_leases)
    executor = ThreadPoolExecutor(2, thread_name_prefix="webhooks")
    dispatcher = _dispatcher(config, outbox, executor)
    task = loop.create_task(dispatcher.run(), name="webhooks")
    stop_listening = webhooks.listen(dispatcher.wake)
    await _signalled()
    stop_listening()
    # POSTs in flight are abandoned: the next dispatcher sends them again
    # (receivers deduplicate by webhook-id).
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await dispatcher.client.aclose()
    await loop.run_in_executor(None, executor.shutdown, True)
    outbox.close()
    pulse.stop()


async def _signalled() -> None:
    """Return at SIGINT or SIGTERM."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def serve(config: Config) -> None:
    """Run every configured listener until SIGINT or SIGTERM.

    The sockets are bound once; ``workers`` processes (one per CPU by
    default) then accept on them side by side, each with its own event loop,
    as Postfix runs several smtpd processes: one Python process cannot use
    more than one core for protocol work. Even a single worker runs under
    the supervisor, whose watchdog replaces it if its loop ever blocks.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s[%(process)d] %(message)s")
    limits = SMTPLimits()
    check_source_addresses(config)
    # A bad [[webhooks]] secret stops serve here, once, not in every worker;
    # leases left by workers killed mid-POST are freed: none runs yet.
    with open_outbox(config) as outbox:
        outbox.release_leases()
    workers = config.workers or os.cpu_count() or 1
    listeners = Listeners.bind(config, limits, workers)
    log.info(
        "mailstead serving %s as %s with %d worker(s)",
        ", ".join(config.domains),
        config.hostname,
        workers,
    )
    # Process number ``workers`` (after the mail workers) sends the webhooks.
    heartbeats = Heartbeats(workers + 1)
    webhooks = WakeChannel()
    block_limit = config.limits.watchdog_timeout
    # Four beats per limit: one late beat is never mistaken for a block.
    interval = min(1.0, block_limit / 4)

    def run_worker(index: int) -> None:
        pulse = Pulse(heartbeats, index, interval)
        if index == workers:
            asyncio.run(dispatch_webhooks_until_signalled(config, pulse, webhooks))
        else:
            asyncio.run(serve_until_signalled(config, limits, listeners, index, pulse, webhooks))

    def worker_exited(index: int) -> None:
        if index < workers:
            for gate in listeners.gates.values():
                gate.clear_worker(index)

    Supervisor(
        workers + 1,
        run_worker,
        on_exit=worker_exited,
        heartbeats=heartbeats,
        block_limit=block_limit,
        shutdown_timeout=config.limits.shutdown_timeout,
    ).run()
