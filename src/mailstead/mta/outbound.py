"""The outbound MTA: takes due mail from the queue and hands it over.

:class:`Outbound` picks the recipients whose time has come, groups them by
destination domain, routes each domain (MX by preference, backups after,
implicit MX, null MX), hands every message of a domain to its hosts over
one connection per host, records each recipient's outcome right after the
remote server answered, retries on the configured schedule, and sends the
sender a DSN (RFC 3464) when a recipient fails for good or is delayed long.
A message leaves the queue when none of its recipients is open any more.

Every worker process runs one, over its own share of the shared queue
(by queue id), so that a recipient is never handed over twice by our own
doing.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import random
import threading
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field

from mailstead import logs, metrics
from mailstead.addresses import AddressError, split_address
from mailstead.clock import Clock
from mailstead.config import Config
from mailstead.directory import Directory
from mailstead.dns import Resolver
from mailstead.events import Event
from mailstead.limits import WebhookLimits
from mailstead.mailauth.dkim import DKIMError, DKIMSigner, signing_domain
from mailstead.mta import delivery_log, dsn, local_delivery, mail_events, notices, schedule
from mailstead.mta.envelope import Attempt, QueuedMessage, RecipientStatus
from mailstead.mta.mta_sts_lookup import MtaStsLookup, lookup_for
from mailstead.mta.queue import Queue
from mailstead.mta.routing import Route, RoutingError, route
from mailstead.mta.transport import HostTransport, OutboundMessage, SessionPolicy
from mailstead.peertext import log_text
from mailstead.proto.smtp.client_events import MessageResult, Outcome
from mailstead.proto.smtp.dotstuff import canonical
from mailstead.proto.smtp.events import MailParams, RcptParams, Recipient
from mailstead.proto.smtp.replies import Reply
from mailstead.store import MailboxStore

log = logging.getLogger("mailstead.outbound")

# Seconds between looks at the queue when nothing is due sooner: mail that
# another worker process queued is picked up within this time.
POLL_INTERVAL = 2.0
# Messages taken from the queue per round.
BATCH = 1000
# Domains delivered to at once, and messages per connection.
PARALLEL_DOMAINS = 20
MESSAGES_PER_CONNECTION = 100
# Connections to one destination domain at once (Postfix:
# default_destination_concurrency_limit); each carries many messages.
DESTINATION_CONCURRENCY = 10
# On shutdown, how long deliveries in progress may take to finish.
SHUTDOWN_GRACE = 10.0


@dataclass(slots=True)
class _Job:
    """One message's open recipients for one domain."""

    message: QueuedMessage
    recipients: list[RecipientStatus]
    content: bytes = b""
    attempts: list[Attempt] = field(default_factory=list)
    failures: list[tuple[RecipientStatus, Reply, str | None]] = field(default_factory=list)
    # Deliveries the sender asked to hear of (NOTIFY=SUCCESS) and will not
    # hear of from the next hop.
    successes: list[tuple[RecipientStatus, Reply, str | None]] = field(default_factory=list)
    # Resolved once the outcomes are stored (see Outbound._settle_soon).
    settled: asyncio.Future[None] | None = None
    # What the outcomes mean to webhooks, stored with them (failures are
    # added at settle time, once it is known whether a DSN went out).
    events: list[Event] = field(default_factory=list)
    expired: set[str] = field(default_factory=set)


def _has_non_ascii(job: _Job) -> bool:
    return not job.message.sender.isascii() or any(not r.address.isascii() for r in job.recipients)


class Outbound:
    """Owns delivery of the queue to remote hosts (and to local mailboxes, for
    local recipients that reached the queue).

    Everything outside is passed in: the queue, the directory and store for
    local recipients, the resolver, the clock, the DKIM signer, the transport
    that carries mail to remote hosts, so that tests run it against a fake
    DNS, fake time and scripted hosts.
    """

    def __init__(
        self,
        config: Config,
        queue: Queue,
        *,
        directory: Directory,
        store: MailboxStore,
        resolver: Resolver,
        clock: Clock,
        executor: Executor,
        transport: HostTransport,
        signer: DKIMSigner | None = None,
        mta_sts: MtaStsLookup | None = None,
        local_addresses: Sequence[str] = (),
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.queue = queue
        self.directory = directory
        self.store = store
        self.resolver = resolver
        self.clock = clock
        self.executor = executor
        self.transport = transport
        self.signer = signer
        # MTA-STS (RFC 8461): the lookup given, or one of [delivery]'s making.
        if mta_sts is None and config.delivery.mta_sts:
            mta_sts = lookup_for(config, resolver, clock, executor)
        self.mta_sts = mta_sts
        self.local_addresses = tuple(local_addresses)
        self.rng = rng or random.Random()
        self.webhook_limits = WebhookLimits()
        self._wake = asyncio.Event()
        # (this worker, workers): each worker process delivers the messages
        # whose queue id falls in its share, so none is handed over twice.
        self.shard = (0, 1)
        self._domains = asyncio.Semaphore(PARALLEL_DOMAINS)
        # (message id, recipient) pairs being delivered right now.
        self._inflight: set[tuple[str, str]] = set()
        # Jobs waiting for the next group commit of outcomes.
        self._to_settle: list[tuple[_Job, asyncio.Future[None]]] = []
        self._settler: asyncio.Task[None] | None = None
        # Delivery tasks (hence connections) per destination domain.
        self._active: collections.Counter[str] = collections.Counter()
        self._tasks: set[asyncio.Task[None]] = set()
        # Domains settle in executor threads; the jobs of one message must not
        # both see a recipient as not yet warned (or both delete the message).
        self._settling = threading.Lock()

    def wake(self) -> None:
        """Look at the queue now (new mail was queued in this process)."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set.

        Domains are delivered in background tasks, so one slow or dead
        destination (connect timeouts add up) never holds up the others; a
        recipient already in flight is not started again.
        """
        while not stop.is_set():
            self._wake.clear()
            try:
                self._start_due()
            except Exception:
                log.exception("queue run failed")
            due = self.queue.next_due()
            now = self.clock.time()
            delay = POLL_INTERVAL if due is None else min(POLL_INTERVAL, max(0.0, due - now))
            waiters = [asyncio.ensure_future(e.wait()) for e in (self._wake, stop)]
            if delay == 0.0:
                # What is due is in flight (or its destination is busy): wait
                # for a delivery to end (it wakes us) rather than spin.
                delay = POLL_INTERVAL
            _, pending = await asyncio.wait(
                waiters, timeout=delay, return_when=asyncio.FIRST_COMPLETED
            )
            for waiter in pending:
                waiter.cancel()
        if self._tasks:
            # What was not recorded stays queued and is tried after a restart.
            await asyncio.wait(self._tasks, timeout=SHUTDOWN_GRACE)
            for task in self._tasks:
                task.cancel()

    async def run_once(self) -> int:
        """One pass over what is due now, to its end; the number of recipients started."""
        started, recipients = self._start_due()
        await asyncio.gather(*started)
        return recipients

    def _start_due(self) -> tuple[list[asyncio.Task[None]], int]:
        """Start deliveries of what is due and not in flight; the tasks and recipients."""
        now = self.clock.time()
        by_domain: dict[str, list[_Job]] = {}
        busy = {message_id for message_id, _ in self._inflight}
        index, count = (0, 1) if self.queue.claims else self.shard  # claims share it
        for message in self.queue.due(now, BATCH, skip=busy):
            if count > 1 and int(message.id[-4:], 16) % count != index:
                continue
            for rcpt in message.recipients:
                key = (message.id, rcpt.address)
                if not rcpt.open or rcpt.next_attempt > now or key in self._inflight:
                    continue
                try:
                    domain = split_address(rcpt.address)[1].lower()
                except AddressError:
                    domain = ""
                jobs = by_domain.setdefault(domain, [])
                if not jobs or jobs[-1].message.id != message.id:
                    jobs.append(_Job(message, []))
                jobs[-1].recipients.append(rcpt)
        started = []
        recipients = 0
        for domain, jobs in by_domain.items():
            # One task per connection's worth of messages, as many at once as
            # the destination may have connections; the rest waits its turn.
            for first in range(0, len(jobs), MESSAGES_PER_CONNECTION):
                if self._active[domain] >= DESTINATION_CONCURRENCY:
                    break
                chunk = jobs[first : first + MESSAGES_PER_CONNECTION]
                started.append(self._start(domain, chunk))
                recipients += sum(len(j.recipients) for j in chunk)
        return started, recipients

    def _start(self, domain: str, jobs: list[_Job]) -> asyncio.Task[None]:
        self._active[domain] += 1
        keys = {(j.message.id, r.address) for j in jobs for r in j.recipients}
        self._inflight |= keys
        task = asyncio.get_running_loop().create_task(self._domain(domain, jobs))
        self._tasks.add(task)
        task.add_done_callback(functools.partial(self._finished, domain=domain, keys=keys))
        return task

    def _finished(
        self, task: asyncio.Task[None], *, domain: str, keys: set[tuple[str, str]]
    ) -> None:
        self._active[domain] -= 1
        if not self._active[domain]:
            del self._active[domain]
        self._inflight -= keys
        self._tasks.discard(task)
        self._wake.set()  # its destination has a free connection again

    # -- one domain ------------------------------------------------------------------

    async def _domain(self, domain: str, jobs: list[_Job]) -> None:
        # This task's lines (and its threads', logs.carry) name one session.
        logs.new_session(None, "o")
        async with self._domains:
            try:
                await self._deliver_domain(domain, jobs)
            except Exception:
                log.exception("delivery to %s failed", domain)
                reply = Reply(451, "4.3.0", "Local error in processing")
                for job in jobs:
                    if not job.attempts:
                        for rcpt in job.recipients:
                            self._outcome(job, rcpt, Outcome.DEFERRED, reply, None)
            for job in jobs:
                await self._settle(job)

    async def _deliver_domain(self, domain: str, jobs: list[_Job]) -> None:
        try:
            found: Route = await route(
                domain,
                self.resolver,
                rng=self.rng,
                local_domains=self.config.domains,
                local_hostnames=(self.config.hostname, self.config.delivery.helo_name),
                local_addresses=self.local_addresses,
            )
        except RoutingError as exc:
            reply = Reply(exc.code, exc.enhanced, exc.text)
            outcome = Outcome.FAILED if exc.permanent else Outcome.DEFERRED
            for job in jobs:
                for rcpt in job.recipients:
                    self._outcome(job, rcpt, outcome, reply, None)
            return
        loop = asyncio.get_running_loop()
        for job in jobs:
            prepare = logs.carry(self._prepare, job.message)
            job.content = await loop.run_in_executor(self.executor, prepare)
        if found.local:
            await loop.run_in_executor(self.executor, logs.carry(self._deliver_locally, jobs))
        else:
            await self._deliver_remote(found, jobs)

    def _prepare(self, message: QueuedMessage) -> bytes:
        """The message as it goes out: CRLF throughout, DKIM-signed if it is from us."""
        logs.set_queue_id(message.id)  # in this thread's copy of the context
        content = canonical(self.queue.open_message(message.id))
        if self.signer is not None:
            domain = signing_domain(content, self.config.domains)
            if domain is not None:
                try:
                    content = self.signer.sign(content, domain, queue_id=message.id) + content
                except DKIMError as exc:
                    log.warning("not DKIM-signed: %s", exc)
        return content

    async def _deliver_remote(self, found: Route, jobs: list[_Job]) -> None:
        # Each sender domain may leave from its own address
        # ([delivery.source_ip_by_domain]): one session per source address.
        delivery = self.config.delivery
        check = None
        if self.mta_sts is not None:
            found, check, refused = await self.mta_sts.apply(found)
            if refused is not None:  # no MX host the policy allows: a deferral
                for job in jobs:
                    for rcpt in job.recipients:
                        self._outcome(job, rcpt, Outcome.DEFERRED, refused, None)
                return
        by_source: dict[str | None, list[_Job]] = {}
        for job in jobs:
            if job.recipients:
                by_source.setdefault(delivery.source_for(job.message.sender), []).append(job)
        for source_ip, group in by_source.items():
            policy = SessionPolicy(
                delivery.helo_name or self.config.hostname,
                source_ip=source_ip,
                require_tls=delivery.require_tls,
                tls_check=check,
            )
            await self._deliver_from(found, group, policy)

    async def _deliver_from(self, found: Route, jobs: list[_Job], policy: SessionPolicy) -> None:
        remaining = jobs
        last: Reply | None = None
        permanent_only = True
        delivery = self.config.delivery
        for dest in found.destinations:
            for address in dest.addresses:
                if not remaining:
                    return
                # One connection per batch; a host that took a whole batch
                # gets the next one too, a failed session moves on to the
                # next address.
                while remaining:
                    batch = remaining[:MESSAGES_PER_CONNECTION]
                    remote = f"{dest.host} [{address}]"
                    logs.REMOTE_IP.set(address)

                    async def answered(
                        index: int,
                        sent: MessageResult,
                        batch: list[_Job] = batch,
                        remote: str = remote,
                    ) -> None:
                        # Stored by the next group commit, while the session
                        # goes on: a crash re-sends at most the few messages
                        # answered in the last milliseconds.
                        job = batch[index]
                        by_address = {r.address: r for r in sent.recipients}
                        for rcpt in job.recipients:
                            res = by_address.get(rcpt.address)
                            if res is not None:
                                where = remote if res.remote else None
                                self._outcome(
                                    job,
                                    rcpt,
                                    res.outcome,
                                    res.reply,
                                    where,
                                    notified_downstream=sent.dsn_passed,
                                    tls=sent.tls if res.remote else None,
                                )
                        self._settle_soon(job)

                    result = await self.transport.deliver(
                        dest.host,
                        address,
                        delivery.smtp_port,
                        [self._outbound(job) for job in batch],
                        policy,
                        answered,
                    )
                    if policy.tls_check is not None and self.mta_sts is not None:
                        await self.mta_sts.count_session(policy.tls_check, dest.host, result)
                    done = len(result.results)
                    remaining = batch[done:] + remaining[len(batch) :]
                    if result.failure is not None:
                        last = result.failure.reply
                        permanent_only = permanent_only and result.failure.permanent
                        said = " ".join(result.failure.reply.lines)  # the remote's text
                        relay = delivery_log.relay(remote, delivery.smtp_port)
                        log.info(log_text(said), extra=logs.fields(relay=relay))
                        break
                    if done == 0:
                        break  # pragma: no cover - a clean session answers every message
        # RFC 5321 §5.1: every host was tried; what is left waits for a retry,
        # unless every host refused the session for good.
        reply = last or Reply(451, "4.4.1", f"No reachable mail host for {found.domain}")
        outcome = Outcome.FAILED if (permanent_only and last is not None) else Outcome.DEFERRED
        for job in remaining:
            for rcpt in job.recipients:
                self._outcome(job, rcpt, outcome, reply, None)

    def _outbound(self, job: _Job) -> OutboundMessage:
        message = job.message
        recipients = tuple(
            Recipient(r.address, RcptParams(notify=r.notify, orcpt=r.orcpt)) for r in job.recipients
        )
        params = MailParams(smtputf8=_has_non_ascii(job), envid=message.envid, ret=message.ret)
        return OutboundMessage(message.sender, recipients, job.content, params)

    def _deliver_locally(self, jobs: list[_Job]) -> None:
        """Recipients in our own domains that reached the queue (an alias added later, a retry)."""
        for job in jobs:
            body = job.content.replace(b"\r\n", b"\n")
            for rcpt in job.recipients:
                with logs.queue_id(job.message.id):
                    result = local_delivery.deliver(
                        job.message,
                        rcpt.address,
                        body,
                        directory=self.directory,
                        store=self.store,
                        sink=self.queue.events,
                        max_body_bytes=self.webhook_limits.max_body_bytes,
                    )
                job.events += result.events
                self._outcome(job, rcpt, result.outcome, result.reply, None)

    # -- outcomes --------------------------------------------------------------------

    def _outcome(
        self,
        job: _Job,
        rcpt: RecipientStatus,
        outcome: Outcome,
        reply: Reply,
        remote: str | None,
        *,
        notified_downstream: bool = False,
        tls: bool | None = None,
    ) -> None:
        """Decide and note one recipient's fate (stored by :meth:`_settle`).

        ``notified_downstream``: the next hop took our DSN parameters, so a
        success notice is its to send (RFC 3461 §5.2.1), not ours. ``tls``:
        whether the session to ``remote`` was encrypted.
        """
        now = self.clock.time()
        message = job.message
        delivery = self.config.delivery
        kind: schedule.Outcome = (
            "delivered"
            if outcome is Outcome.DELIVERED
            else "permanent"
            if outcome is Outcome.FAILED
            else "temporary"
        )
        attempts = rcpt.attempts + 1
        plan = schedule.plan(
            kind,
            message.received_at,
            attempts,
            now,
            delivery.retry_schedule,
            delivery.max_lifetime,
            jitter=schedule.jitter_fraction(message.id, attempts),
        )
        said = " ".join(reply.lines)
        error = f"{reply.code} {reply.enhanced} {said}".replace("  ", " ")
        if remote:
            error = f"{remote} said: {error}"
        job.attempts.append(Attempt(rcpt.address, plan.state, error, plan.next_attempt))
        delivery_log.delivery(
            message.id,
            rcpt.address,
            remote=remote,
            port=delivery.smtp_port,
            delay=now - message.received_at,
            reply=reply,
            state=plan.state,
            expired=plan.reason == "expired",
            error=error,
        )
        metrics.recipient_outcome(
            plan.state, rcpt.address, message.sender, now - message.received_at
        )
        if plan.state == "delivered" and not notified_downstream:
            job.successes.append((rcpt, reply, remote))
        if plan.state == "failed":
            if plan.reason == "expired":
                reply = Reply(reply.code, dsn.EXPIRED_STATUS, said)
                job.expired.add(rcpt.address)
            job.failures.append((rcpt, reply, remote))
        sink = self.queue.events
        if plan.state == "delivered" and sink is not None and sink.wants("message.delivered"):
            job.events.append(
                mail_events.delivered(
                    message.id, message.sender, rcpt.address, attempts, reply, remote, tls
                )
            )
        elif plan.state == "deferred" and sink is not None and sink.wants("message.deferred"):
            assert plan.next_attempt is not None
            job.events.append(
                mail_events.deferred(
                    message.id, message.sender, rcpt.address, attempts, error, plan.next_attempt
                )
            )

    async def _settle(self, job: _Job) -> None:
        """Store the outcomes, send the DSNs they call for, drop a finished message."""
        settled = self._settle_soon(job)
        if settled is not None:
            await settled

    def _settle_soon(self, job: _Job) -> asyncio.Future[None] | None:
        """Queue ``job`` for the next group commit of outcomes; its future.

        Jobs finishing while a commit is under way are stored together by
        the next one: one fsync for many messages.
        """
        if not job.attempts:
            return None
        if job.settled is None:
            loop = asyncio.get_running_loop()
            job.settled = loop.create_future()
            self._to_settle.append((job, job.settled))
            if self._settler is None or self._settler.done():
                self._settler = loop.create_task(self._settle_pending())
        return job.settled

    async def _settle_pending(self) -> None:
        loop = asyncio.get_running_loop()
        while self._to_settle:
            batch, self._to_settle = self._to_settle, []
            jobs = [job for job, _ in batch]
            try:
                await loop.run_in_executor(self.executor, logs.carry(self._settle_sync, jobs))
            except Exception as exc:
                for _, done in batch:
                    done.set_exception(exc)
                continue
            for _, done in batch:
                done.set_result(None)

    def _settle_sync(self, jobs: Sequence[_Job]) -> None:
        with self._settling:
            now = self.clock.time()
            # DSNs are queued before the outcomes are stored: a crash in
            # between repeats a notice, never loses one.
            for job in jobs:
                if job.failures:
                    notified = self._notify(job, "failed", job.failures, now)
                    if self.queue.events is not None:
                        job.events += notices.failure_events(
                            self.queue.events, job.message, job.failures, job.expired, notified
                        )
                if job.successes:
                    self._notify(job, "delivered", job.successes, now)
            finished = self.queue.record_many(
                [(j.message.id, j.attempts) for j in jobs], [e for j in jobs for e in j.events]
            )
            for job in jobs:
                if job.message.id not in finished:
                    self._warn_if_delayed(job, now)

    def _warn_if_delayed(self, job: _Job, now: float) -> None:
        message = job.message
        current = self.queue.get(message.id)
        if current is None:
            return
        delayed = [
            r
            for r in current.recipients
            if r.state == "deferred"
            and not r.delay_warned
            and schedule.delay_warning_due(
                message.received_at, now, self.config.delivery.delay_warning
            )
        ]
        if delayed:
            self._notify(
                job, "delayed", [(r, *notices.last_reply(r.last_error)) for r in delayed], now
            )
            self.queue.mark_delay_warned(message.id, [r.address for r in delayed])

    def _notify(
        self,
        job: _Job,
        kind: dsn.DsnKind,
        entries: Sequence[tuple[RecipientStatus, Reply, str | None]],
        now: float,
    ) -> bool:
        """Queue a DSN to the sender for ``entries``; False if none is owed."""
        sent = notices.queue_dsn(
            self.queue,
            job.message,
            kind,
            entries,
            reporting_mta=self.config.hostname,
            max_lifetime=self.config.delivery.max_lifetime,
            original=job.content or self.queue.open_message(job.message.id),
            now=now,
        )
        if sent:
            self.wake()
        return sent
