"""``mailstead serve``: the supervisor process, its workers, privileges and signals.

Everything that can be wrong is found before the first fork, and said in
one line: a second ``serve`` on the data directory, a cluster database
that cannot be reached or is newer than the code, a certificate that
does not load, a port that cannot be bound (named by its listener). Then
root, if that is how it started, is left for ``[run]``'s account
(system/privileges.py) before any network input is read, and the workers
and the webhook dispatcher are forked unprivileged.

Signals: SIGTERM and SIGINT stop (no new connections, sessions end at their
next wait for input, at most ``[limits] shutdown_timeout``); SIGHUP reloads
the config, the certificate and ``[[webhooks]]`` and keeps every session.
Under systemd (``Type=notify``) the supervisor reports READY, RELOADING and
STOPPING (system/sdnotify.py). SIGUSR1 makes every mail worker look at the
queue now (control/wake.py).

The supervisor also answers ``<data_dir>/control.sock`` (control/), for
``mailstead status``, ``reload``, ``stop`` and ``queue flush``; reload and
stop there are the same SIGHUP and SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import sqlite3
import ssl
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import psycopg

from mailstead import logs
from mailstead.acme_client import serving_files
from mailstead.app import (
    ListenError,
    Listeners,
    check_source_addresses,
    open_outbox,
    start,
    webhook_dispatcher,
)
from mailstead.cluster_schema import ClusterSchemaError, prepare_cluster_schema
from mailstead.config import Config, ConfigError, load_config
from mailstead.control.address import socket_path
from mailstead.control.board import WorkerBoard
from mailstead.control.commands import ListenerAddress, MasterControl, ReloadGate
from mailstead.control.server import ControlServer
from mailstead.control.wake import WAKE_SIGNAL, ignore_wake, on_wake
from mailstead.directory import DirectoryError
from mailstead.durable import make_dirs
from mailstead.limits import SMTPLimits, WebhookLimits
from mailstead.mailauth.setup import prepare as prepare_auth_checks
from mailstead.mta.queue import open_queue
from mailstead.net import watchdog
from mailstead.net.supervisor import TEMPORARY_FAILURE, Supervisor
from mailstead.net.watchdog import Heartbeats, Pulse
from mailstead.pgsql.connect import DatabaseUnavailable
from mailstead.system import sdnotify
from mailstead.system.lock import ServeLock
from mailstead.system.privileges import account, become, give_data_dir
from mailstead.tlscert import CertificateError, server_context
from mailstead.webhooks.outbox import connect_outbox
from mailstead.webhooks.signing import InvalidSecretError
from mailstead.webhooks.wakeup import WakeChannel

__all__ = ["ServeError", "serve"]

log = logging.getLogger("mailstead")

# Failures of a worker's start-up that are the operator's to fix: one line, no traceback.
_EXPECTED = (
    ConfigError,
    CertificateError,
    DatabaseUnavailable,
    DirectoryError,
    InvalidSecretError,
    ListenError,
    sqlite3.Error,
    OSError,
)
_IMPLICIT_TLS = ("submissions", "imaps", "pop3s")


def _database_away(exc: BaseException) -> bool:
    """Whether a worker's start failed only because the cluster database did
    not answer (the supervisor then starts it again later): the components
    wrap that failure in their own one-line errors, so its chain is read."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, (DatabaseUnavailable, psycopg.OperationalError)):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


_STARTTLS = ("submission", "imap", "pop3")
# Config keys a SIGHUP applies; a change to any other waits for a restart.
_RELOADED = frozenset({"path", "domains", "tls", "webhooks"})


class ServeError(Exception):
    """The server cannot start as configured (one-line message)."""


def one_line(exc: BaseException) -> str:
    """An expected error as the operator should read it."""
    if isinstance(exc, OSError) and exc.strerror:
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror}"
    return str(exc)


def server_tls(config: Config) -> ssl.SSLContext | None:
    """The listeners' TLS context, loaded now; None when there is no certificate to load.

    Raises CertificateError for a certificate or key that is unreadable,
    garbage or not a pair, and ServeError when an implicit-TLS listener has
    no certificate at all.
    """
    cert, key = serving_files(config)  # ACME's, once it has one
    if cert.exists() or key.exists():
        return server_context(cert, key)
    for listener in _IMPLICIT_TLS:
        if getattr(config.listen, listener):
            raise ServeError(
                f"listen.{listener} needs a TLS certificate: tls.cert {cert} does not exist"
                " (`mailstead init` makes a self-signed one)"
            )
    if any(getattr(config.listen, listener) for listener in _STARTTLS):
        # RFC 8314 §3 / RFC 4954 §4: logins only over TLS here, so none at all.
        log.warning(
            "no TLS certificate (tls.cert %s): STARTTLS is off, so AUTH is impossible:"
            " no submission, IMAP or POP3 login will succeed",
            cert,
        )
    return None


def _say_hostname(config: Config) -> None:
    if config.hostname == "localhost":
        log.warning(
            'hostname is "localhost": this host has no fully qualified name; set hostname'
            " in %s (other servers refuse mail from localhost)",
            config.path,
        )


def _reload_summary(old: Config, new: Config) -> str:
    said = [
        f"domains {', '.join(new.domains)}",
        f"certificate {serving_files(new)[0]}",
        f"{len(new.webhooks)} [[webhooks]] endpoint(s)",
        "users and aliases are read live",
    ]
    later = [
        f.name
        for f in dataclasses.fields(Config)
        if f.name not in _RELOADED and getattr(old, f.name) != getattr(new, f.name)
    ]
    if later:
        said.append(f"{', '.join(later)} changed: takes effect at the next restart")
    return "; ".join(said)


async def serve_until_signalled(
    config: Config,
    limits: SMTPLimits,
    listeners: Listeners,
    worker: int,
    pulse: Pulse,
    webhooks: WakeChannel,
    tls: ssl.SSLContext | None,
    started: Callable[[], None],
    reloaded: Callable[[], None] = lambda: None,
) -> None:
    """One worker: serve until SIGINT or SIGTERM, reload at SIGHUP, then shut down.

    ``reloaded`` is called after each reload, applied or refused (the log says which).
    """
    loop = asyncio.get_running_loop()
    watchdog.install(pulse)
    pulse.start(loop)  # before start(): the supervisor's clock runs from the fork
    running = await start(
        config, limits, listeners=listeners, worker=worker, wake_webhooks=webhooks.send, tls=tls
    )

    def reload() -> None:
        # The supervisor loaded this file a moment ago; it is read again
        # here because the worker's memory is its own since the fork.
        try:
            new = load_config(running.config.path)
        except ConfigError as exc:
            log.error("worker %d: reload failed, keeping the previous config: %s", worker, exc)
            reloaded()
            return
        problems = running.reload(new)
        for problem in problems:
            log.error("worker %d: %s", worker, problem)
        if not problems:
            log.info("worker %d: reloaded", worker)
        reloaded()

    loop.add_signal_handler(signal.SIGHUP, reload)
    if running.outbound is not None:
        on_wake(loop, running.outbound.wake)
    started()
    await _signalled()
    await running.stop(max(0.5, config.limits.shutdown_timeout - 1.0))
    pulse.stop()


async def dispatch_webhooks_until_signalled(
    config: Config, pulse: Pulse, webhooks: WakeChannel, started: Callable[[], None]
) -> None:
    """The webhook dispatcher process of ``serve``: POST what the workers store.

    Its own process, at a lower CPU priority, so POSTs never slow mail:
    when the machine is busy with SMTP, webhooks wait (durably, in the
    outbox) and catch up afterwards. A reload needs nothing here: the
    endpoints are read from the outbox, where the supervisor wrote them.
    """
    with contextlib.suppress(OSError):
        os.nice(WebhookLimits().dispatcher_niceness)
    loop = asyncio.get_running_loop()
    watchdog.install(pulse)
    pulse.start(loop)
    outbox = connect_outbox(config)
    # The only dispatcher of this serve: a lease still set is from its
    # predecessor, killed mid-POST; those deliveries are due again now.
    await loop.run_in_executor(None, outbox.release_leases)
    executor = ThreadPoolExecutor(2, thread_name_prefix="webhooks")
    dispatcher = webhook_dispatcher(config, outbox, executor)
    task = loop.create_task(dispatcher.run(), name="webhooks")
    stop_listening = webhooks.listen(dispatcher.wake)
    started()
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
    # SIGHUP's default action is to die: until the supervisor handles it,
    # the config just loaded is current anyway.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    # Databases (and their -wal and -shm files), queue files, Maildirs: the
    # server's account's alone, whatever the caller's umask.
    os.umask(0o077)
    # Before make_dirs and give_data_dir: the log file under the data dir
    # is created here, then given to the server's account with the rest.
    logs.setup(
        config.log.format,
        file=config.log.file,
        max_bytes=config.log.max_bytes,
        backups=config.log.keep,
    )
    _say_hostname(config)
    limits = SMTPLimits()
    owner = account(config.run) if os.geteuid() == 0 and not config.run.allow_root else None
    make_dirs(config.data_dir)
    if owner is not None:
        changed = give_data_dir(config.data_dir, owner)
        if changed:
            log.info("gave %d file(s) in %s to %s", changed, config.data_dir, owner.user)
    lock = ServeLock(config.data_dir)
    if owner is not None:
        lock.chown(owner.uid, owner.gid)
    check_source_addresses(config)
    if config.storage.backend == "postgresql":
        # Once, before any worker: an unreachable database or one a newer
        # Mailstead shaped stops serve here in one line.
        try:
            made = prepare_cluster_schema(config.storage.dsn)
        except ClusterSchemaError as exc:
            raise ServeError(str(exc)) from None
        if made:
            log.info("database: made or upgraded the tables of %s", ", ".join(made))
    tls = server_tls(config)
    # A bad [[webhooks]] secret stops serve here, once, not in every worker;
    # leases left by workers killed mid-POST are freed: none runs yet.
    with open_outbox(config) as outbox:
        outbox.release_leases()
    if config.storage.backend == "postgresql":
        # Likewise the queue claims of this node's workers killed mid-delivery
        # (on SQLite nothing is claimed).
        with open_queue(config) as queue:
            queue.release_node_claims()
    workers = config.workers or os.cpu_count() or 1
    listeners = Listeners.bind(config, limits, workers)
    if owner is not None:
        give_data_dir(config.data_dir, owner)  # the outbox's database, if root just made it
    # Before any connection is read and before the fork: no worker is root.
    prepare_auth_checks(config)
    log.info("%s", become(config.run))
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
    current = config
    board = WorkerBoard(workers + 1)
    reloads = ReloadGate()
    master = MasterControl(
        config=lambda: current,
        board=board,
        mail_workers=workers,
        listeners=_bound_addresses(listeners),
        silence=heartbeats.silence,
        reloads=reloads,
    )

    def run_worker(index: int) -> None:
        ignore_wake()  # until it has something to wake (control/wake.py)
        board.starting(index)
        pulse = Pulse(heartbeats, index, interval)
        serving = False

        def started() -> None:
            nonlocal serving
            serving = True
            board.serving(index)
            supervisor.started(index)

        try:
            if index == workers:
                asyncio.run(dispatch_webhooks_until_signalled(current, pulse, webhooks, started))
            else:
                asyncio.run(
                    serve_until_signalled(
                        current,
                        limits,
                        listeners,
                        index,
                        pulse,
                        webhooks,
                        tls,
                        started,
                        reloaded=lambda: board.reloaded(index),
                    )
                )
        except _EXPECTED as exc:
            if serving:  # not a start-up problem: the traceback helps
                raise
            log.error("worker %d: %s", index, one_line(exc))
            raise SystemExit(TEMPORARY_FAILURE if _database_away(exc) else 1) from None

    def worker_exited(index: int) -> None:
        board.exited(index, restart=not master.stopping)
        if index < workers:
            for gate in listeners.gates.values():
                gate.clear_worker(index)

    def reload() -> bool:
        nonlocal current
        log.info("SIGHUP: reloading %s", current.path)
        sdnotify.reloading()
        try:
            new = load_config(current.path)
            server_tls(new)
            with open_outbox(new):  # [[webhooks]] into the outbox the dispatcher reads
                pass
        except (*_EXPECTED, ServeError) as exc:
            failure = f"reload failed, keeping the previous config: {one_line(exc)}"
            log.error("%s", failure)
            sdnotify.ready("serving (reload failed)")
            reloads.finished(False, failure)
            return False
        summary = _reload_summary(current, new)
        current = new
        log.info("reloaded: %s", summary)
        sdnotify.ready("serving")
        reloads.finished(True, summary)
        return True

    def ready() -> None:
        master.ready = True
        log.info("ready: %d worker(s) and the webhook dispatcher started", workers)
        sdnotify.ready(f"serving {', '.join(config.domains)} with {workers} worker(s)")

    def stopping() -> None:
        master.stopping = True
        sdnotify.stopping()
        listeners.close()  # the workers close theirs: then connections are refused

    supervisor = Supervisor(
        workers + 1,
        run_worker,
        on_exit=worker_exited,
        on_ready=ready,
        on_reload=reload,
        on_stop=stopping,
        heartbeats=heartbeats,
        block_limit=block_limit,
        shutdown_timeout=config.limits.shutdown_timeout,
    )
    # kill -USR1: the same as a flush's wake-up. A worker ignores it from the
    # first line of run_worker and handles it once it serves.
    control = _control_server(config, master)
    previous_wake = signal.signal(WAKE_SIGNAL, lambda signum, frame: master.wake())
    control.start()
    try:
        supervisor.run()
    finally:
        control.close()
        signal.signal(WAKE_SIGNAL, previous_wake)
        lock.close()


def _bound_addresses(listeners: Listeners) -> list[ListenerAddress]:
    found = []
    for name, sockets in listeners.sockets.items():
        for sock in sockets:
            host, port = sock.getsockname()[:2]
            found.append(ListenerAddress(name, str(host), int(port)))
    return found


# Answered under the fork guard (control/server.py); a reload waits for the
# supervisor's loop and a stop signals it, so those two must not hold it.
_GUARDED = frozenset({"status", "flush", "wake"})


def _control_server(config: Config, master: MasterControl) -> ControlServer:
    """The control socket, bound by the account the server now runs as."""
    path = socket_path(config)
    try:
        return ControlServer(path, master.handle, guarded=lambda r: r.command in _GUARDED)
    except OSError as exc:
        raise ServeError(f"control socket {path}: {one_line(exc)}") from None
