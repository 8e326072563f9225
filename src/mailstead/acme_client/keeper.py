"""Keeping the certificate fresh: when to renew, who renews, and the hot swap.

Every worker process runs a :class:`CertificateKeeper` over the one
``ssl.SSLContext`` its TLS listeners share. Each looks at the stored
certificate every ``check_every`` seconds:

* a ``cert.pem`` newer than the one loaded is loaded into the context with
  ``load_cert_chain``: new handshakes get it, established sessions keep
  theirs, nothing is dropped;
* at two thirds of its lifetime (or when a configured name is missing, or
  there is none yet) the keeper that takes the order lock runs the order;
  the others skip and pick the new files up at their next look;
* a failed order backs off exponentially, recorded in ``state.json`` so
  every worker and the next start honour it.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import importlib.util
import logging
import ssl
import threading
from collections.abc import Callable
from pathlib import Path

from mailstead.acme_client.files import AcmeFiles, Backoff, Issued, utc
from mailstead.acme_client.request import OrderError, Request
from mailstead.acme_client.responders import ALPNResponder, HTTPResponder, Responder
from mailstead.clock import Clock, SystemClock
from mailstead.config import Config
from mailstead.config.tls import AcmeConfig
from mailstead.tlscert import CertificateError

__all__ = [
    "BACKOFF_BASE",
    "BACKOFF_CAP",
    "CertificateKeeper",
    "Outcome",
    "keep_certificate",
    "serving_files",
]

log = logging.getLogger("mailstead.acme")

#: After the first failed order, wait this long; each further failure doubles it ...
BACKOFF_BASE = 300.0
#: ... up to this (a CA's rate limits count failed validations per hour).
BACKOFF_CAP = 86400.0
# How often a worker looks at the stored certificate.
CHECK_EVERY = 60.0

Issuer = Callable[[Request, bytes, Responder], Issued]


class Outcome(enum.Enum):
    """What :meth:`CertificateKeeper.renew` did."""

    RENEWED = "renewed"
    CURRENT = "current"  # not due (another process may just have renewed)
    WAITING = "waiting"  # backing off after a failure
    BUSY = "busy"  # another process holds the order lock
    FAILED = "failed"


class CertificateKeeper:
    """Owns one process's renewal schedule and the swaps into its shared TLS context."""

    def __init__(
        self,
        config: Config,
        context: ssl.SSLContext | None,
        *,
        clock: Clock | None = None,
        check_every: float = CHECK_EVERY,
        issuer: Issuer | None = None,
    ) -> None:
        if config.tls.acme is None:
            raise ValueError("[tls.acme] is not configured")
        if issuer is None and importlib.util.find_spec("acme") is None:
            raise CertificateError("[tls.acme] needs the Python package acme: pip install acme")
        self.acme: AcmeConfig = config.tls.acme
        self.files = AcmeFiles(config.data_dir)
        self.names = (config.hostname, *(n for n in self.acme.names if n != config.hostname))
        self.context = context
        self.clock = clock or SystemClock()
        self.check_every = check_every
        self._issuer = issuer
        self._loaded: tuple[int, int] | None = None

    def load(self) -> bool:
        """Load a newly stored certificate into the context; True if one was loaded."""
        stamp = self.files.stamp()
        if stamp is None or stamp == self._loaded or self.context is None:
            return False
        self._loaded = stamp
        try:
            self.context.load_cert_chain(self.files.cert, self.files.key)
        except (ssl.SSLError, OSError) as exc:
            # The old certificate keeps serving; a later write gets a new stamp.
            log.warning("acme: cannot load %s: %s", self.files.cert, exc)
            return False
        validity = self.files.validity()
        until = utc(validity.not_after) if validity else "?"
        log.info("tls: now serving %s (valid until %s)", self.files.cert, until)
        return True

    def due_at(self) -> float:
        """When the stored certificate should be renewed (0: now)."""
        validity = self.files.validity()
        if validity is None or not set(self.names) <= validity.names:
            return 0.0
        return validity.renew_at

    async def step(self) -> Outcome | None:
        """One look: load what another process stored, renew if due; None if nothing was due."""
        self.load()
        now = self.clock.time()
        if now < self.due_at() or now < self.files.backoff().next_attempt:
            return None
        return await self.renew()

    async def run(self) -> None:
        """Look every ``check_every`` seconds until cancelled."""
        while True:
            try:
                await self.step()
            except Exception:
                log.exception("acme: renewal check failed")
            await self.clock.sleep(self.check_every)

    async def renew(self, *, force: bool = False, ignore_backoff: bool = False) -> Outcome:
        """Run an order if due (``force``: anyway), unless another process is running one."""
        with self.files.order_lock() as mine:
            if not mine:
                return Outcome.BUSY
            # Under the lock: another process may have renewed since we looked.
            now = self.clock.time()
            if not force and now < self.due_at():
                self.load()
                return Outcome.CURRENT
            backoff = self.files.backoff()
            if not (force or ignore_backoff) and now < backoff.next_attempt:
                return Outcome.WAITING
            try:
                issued = await self._order()
            except (OrderError, OSError) as exc:
                self._failed(backoff, _reason(exc))
                return Outcome.FAILED
            self.files.store(issued)
            if backoff.failures:
                self.files.set_backoff(Backoff())
        log.info("acme: obtained a certificate for %s", ", ".join(self.names))
        self.load()
        return Outcome.RENEWED

    async def _order(self) -> Issued:
        responder: ALPNResponder | HTTPResponder
        if self.acme.challenge == "tls-alpn-01":
            responder = ALPNResponder(self.acme.listen)
        else:
            responder = HTTPResponder(self.acme.listen)
        request = Request(
            self.acme.directory, self.names, self.acme.challenge, self.acme.email, self.acme.ca_file
        )
        issuer = self._issuer
        if issuer is None:
            # Imported on first use: requests and the acme package cost each
            # worker megabytes it needs only while an order runs.
            from mailstead.acme_client import order

            issuer = order.issue
        account_key = self.files.account_key_pem()
        await responder.start()
        try:
            # The package blocks (requests, time.sleep); the responder serves here meanwhile.
            return await _in_thread(lambda: issuer(request, account_key, responder))
        finally:
            await responder.stop()

    def _failed(self, backoff: Backoff, reason: str) -> None:
        failures = backoff.failures + 1
        delay = min(BACKOFF_BASE * 2 ** (failures - 1), BACKOFF_CAP)
        next_attempt = self.clock.time() + delay
        self.files.set_backoff(Backoff(failures, next_attempt, reason))
        log.warning(
            "acme: order for %s failed (%d in a row): %s; next attempt at %s",
            ", ".join(self.names),
            failures,
            reason,
            utc(next_attempt),
        )


def _reason(exc: Exception) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    return str(exc)


async def _in_thread(work: Callable[[], Issued]) -> Issued:
    """Run ``work`` in a daemon thread of its own.

    Not the loop's executor: a server stopping mid-order would wait for it
    (up to the order's deadline) before it could exit; a daemon thread is
    abandoned, and the order is simply run again after the restart.
    """
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Issued] = loop.create_future()

    def settle(report: Callable[[], None]) -> None:
        if not done.cancelled():
            report()

    def run() -> None:
        report: Callable[[], None]
        try:
            result = work()
        except BaseException as exc:
            report = functools.partial(done.set_exception, exc)
        else:
            report = functools.partial(done.set_result, result)
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
            loop.call_soon_threadsafe(settle, report)

    threading.Thread(target=run, name="acme-order", daemon=True).start()
    return await done


def keep_certificate(config: Config, context: ssl.SSLContext) -> asyncio.Task[None]:
    """Serve the stored ACME certificate from now on, and keep it renewed in a task.

    The task runs until cancelled (``RunningServer.stop``).
    """
    keeper = CertificateKeeper(config, context)
    keeper.load()  # before the listeners accept: no handshake sees the stand-in
    return asyncio.get_running_loop().create_task(keeper.run(), name="acme")


def serving_files(config: Config) -> tuple[Path, Path]:
    """The certificate and key to serve: ACME's once one is issued, else ``[tls]``'s."""
    if config.tls.acme is not None:
        files = AcmeFiles(config.data_dir)
        if files.cert.exists() and files.key.exists():
            return files.cert, files.key
    return config.tls.cert, config.tls.key
