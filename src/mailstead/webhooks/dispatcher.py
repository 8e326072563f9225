"""The webhook dispatcher: the task that drains the outbox (``serve`` gives it a process).

Each pass claims, endpoint by endpoint, due deliveries for the endpoint's
free slots (``WebhookLimits.per_endpoint``, within the dispatcher's
``total``) and, while the endpoint answers 2xx, twice as many again ahead
of them; a finished POST starts the next claimed one at once. Each is
POSTed signed with the endpoint's current secrets, and the outcome
recorded: 2xx delivered; 410 Gone failed, and the endpoint disabled;
anything else retried on the schedule of ``backoff.py`` (honouring
Retry-After) until it gives up. A POST never takes longer than
``attempt_timeout``, shorter than the lease, and starts only while its
lease has that long to run, so a delivery is never in the hands of two live
dispatchers (``serve``'s and a test's, say) at once.

Database work runs in the executor; the event loop only waits on sockets
(and reads the endpoint list, which the registry caches for a second).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import TypeVar

from mailstead import metrics
from mailstead.limits import WebhookLimits
from mailstead.webhooks import backoff
from mailstead.webhooks.endpoints import Endpoint
from mailstead.webhooks.http import DeliveryResult, ErrorKind, WebhookClient
from mailstead.webhooks.outbox import Attempted, Claimed, Outbox
from mailstead.webhooks.staging import SETTLE

log = logging.getLogger("mailstead.webhooks")

_T = TypeVar("_T")

__all__ = ["Dispatcher", "describe"]

# What the attempt log keeps of a response body.
_RESPONSE_EXCERPT = 1024

# Deliveries claimed ahead, per endpoint, as a multiple of ``per_endpoint``:
# a finished POST starts the next one at once, and a claim (a thread hop and
# a transaction) fetches many at a time instead of the one slot just freed.
# Only for an endpoint whose last POST succeeded: a slow or failing one gets
# what its free slots take, so nothing waits long behind it under a lease.
_CLAIMED_AHEAD = 2

# While POSTs are in flight, hand-overs and outcomes wait this long to be
# claimed or recorded together: under a stream of mail, one claim and one
# commit for several messages instead of one each. When idle, none waits.
_GATHER = 0.005


def describe(result: DeliveryResult) -> str | None:
    """The one-line reason an attempt did not succeed (None if it did)."""
    if result.ok:
        return None
    if result.status is not None:
        where = f" to {result.location}" if result.location else ""
        return f"HTTP {result.status}{where}"
    kind = result.error.value if result.error is not None else "error"
    return f"{kind}: {result.detail}" if result.detail else kind


class Dispatcher:
    """Owns the in-flight webhook POSTs of one process; :meth:`run` until cancelled."""

    def __init__(
        self,
        outbox: Outbox,
        client: WebhookClient,
        *,
        executor: Executor,
        limits: WebhookLimits | None = None,
        clock: Callable[[], float] = time.time,
        rng: backoff.RandomSource | None = None,
    ) -> None:
        self.outbox = outbox
        self.client = client
        self.executor = executor
        self.limits = limits or WebhookLimits()
        self._clock = clock
        self._rng = rng or random.SystemRandom()
        self._in_flight: collections.Counter[str] = collections.Counter()
        self._tasks: set[asyncio.Task[None]] = set()
        self._wakeup = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._gathering: asyncio.TimerHandle | None = None
        # Held-back deliveries whose message is readable, and when we heard
        # so: sent before their hold ends (or found anyway once it has).
        self._own: dict[str, float] = {}
        # The endpoints of the last pass: when all of them are busy, a
        # wake-up needs no pass (new ones are seen within poll_interval).
        self._endpoints: tuple[Endpoint, ...] = ()
        # Outcomes waiting for the next group commit, and the task making it.
        self._outcomes: list[Attempted] = []
        self._recorder: asyncio.Task[None] | None = None
        # Per endpoint: deliveries claimed ahead, waiting for a free slot, with
        # when they were claimed (time.monotonic); whether its last POST succeeded.
        self._ready: dict[str, collections.deque[tuple[Claimed, float]]] = {}
        self._answering: dict[str, bool] = {}

    def wake(self, ids: Sequence[str] = ()) -> None:
        """Start a pass soon, sending ``ids`` at once; safe from any thread (the outbox
        calls it after storing events)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        if threading.get_ident() == self._loop_thread:
            # From the loop itself (serve's wake-up datagrams): no self-pipe
            # write and read per message, as call_soon_threadsafe would make.
            self._woken(tuple(ids))
            return
        with contextlib.suppress(RuntimeError):  # the loop is shutting down
            loop.call_soon_threadsafe(self._woken, tuple(ids))

    def _woken(self, ids: tuple[str, ...]) -> None:
        now = time.monotonic()
        self._own.update(dict.fromkeys(ids, now))
        if self._all_busy():
            return
        if not self._tasks or self._loop is None:
            self._wakeup.set()  # idle: the message was just stored, send it now
        elif self._gathering is None:
            self._gathering = self._loop.call_later(_GATHER, self._gathered)

    def _gathered(self) -> None:
        self._gathering = None
        self._wakeup.set()

    def _all_busy(self) -> bool:
        limits = self.limits
        return sum(self._in_flight.values()) >= limits.total or bool(
            self._endpoints
            and all(self._in_flight[e.id] >= limits.per_endpoint for e in self._endpoints)
        )

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        try:
            while True:
                self._wakeup.clear()
                started = 0
                try:
                    started = await self.run_once()
                except Exception:
                    log.exception("webhook dispatcher pass failed")
                if self._tasks:
                    # POSTs in flight: the first half of them to finish wakes
                    # us, and that pass finds whatever became due meanwhile.
                    pause = self.limits.poll_interval
                else:
                    pause = await self._sleep_for()
                    if not started and pause == 0:
                        # Due work, but an ordered account waits: never spin.
                        pause = self.limits.poll_interval
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(pause):
                        await self._wakeup.wait()
        finally:
            for task in self._tasks:
                task.cancel()  # their leases run out and another pass retries them
            self._ready.clear()  # so do these
            if self._gathering is not None:
                self._gathering.cancel()
                self._gathering = None
            self._loop = None

    async def _sleep_for(self) -> float:
        poll = self.limits.poll_interval
        due = await self._in_executor(self.outbox.next_due)
        if due is None:
            return poll
        return min(poll, max(0.0, due - self._clock()))

    async def run_once(self) -> int:
        """Claim and start what is due now (and what was handed over); the POSTs started."""
        limits = self.limits
        # Cached by the registry, re-read once a second: not worth a thread hop.
        endpoints = self._endpoints = self.outbox.endpoints.active()
        for gone in self._ready.keys() - {e.id for e in endpoints}:
            del self._ready[gone]  # deleted or disabled: their leases run out
        stale = time.monotonic() - SETTLE
        heard, self._own = self._own, {}
        own = tuple(i for i, at in heard.items() if at > stale)
        started = 0
        claimed_ids: set[str] = set()
        for endpoint in endpoints:
            started += self._start_ready(endpoint.id)
            ready = self._ready.setdefault(endpoint.id, collections.deque())
            ahead = self._ahead(endpoint.id)
            for only in ((own,) if own else ()) + ((),):
                held = self._in_flight[endpoint.id] + len(ready)
                wanted = min(
                    limits.per_endpoint * (1 + ahead) - held,
                    limits.total * (1 + ahead) - self._held(),
                )
                if wanted <= 0 or (not only and held > self._refill_at(ahead)):
                    continue  # enough in hand: claim many at once, later
                claimed = await self._in_executor(self._claim, endpoint, wanted, limits.lease, only)
                at = time.monotonic()
                claimed_ids.update(d.id for d in claimed)
                if only:  # handed over: the message was just stored, send it first
                    ready.extendleft((d, at) for d in reversed(claimed))
                else:
                    ready.extend((d, at) for d in claimed)
                started += self._start_ready(endpoint.id)
        # Handed-over deliveries nobody could take wait for the next pass.
        self._own.update({i: heard[i] for i in own if i not in claimed_ids})
        return started

    def _ahead(self, endpoint_id: str) -> int:
        """How many times ``per_endpoint`` to claim ahead for the endpoint."""
        return _CLAIMED_AHEAD if self._answering.get(endpoint_id, True) else 0

    def _refill_at(self, ahead: int) -> int:
        """Claim more for an endpoint once no more than this many are in flight
        or claimed ahead: half of what it may hold."""
        return self.limits.per_endpoint * (1 + ahead) // 2

    def _held(self) -> int:
        """Deliveries this dispatcher holds leases on: in flight and claimed ahead."""
        return sum(self._in_flight.values()) + sum(len(r) for r in self._ready.values())

    def _start_ready(self, endpoint_id: str) -> int:
        """Start POSTs of claimed deliveries while the endpoint has free slots; how many."""
        ready = self._ready.get(endpoint_id)
        limits = self.limits
        started = 0
        # A POST starts only while the lease has room for it to end (attempt_timeout).
        fresh_after = time.monotonic() - (limits.lease - limits.attempt_timeout)
        while (
            ready
            and self._in_flight[endpoint_id] < limits.per_endpoint
            and sum(self._in_flight.values()) < limits.total
        ):
            delivery, claimed_at = ready.popleft()
            if claimed_at < fresh_after:
                continue  # its lease may end mid-POST: a later claim takes it again
            self._in_flight[endpoint_id] += 1
            task = asyncio.create_task(self._deliver(delivery))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            started += 1
        return started

    def _claim(
        self, endpoint: Endpoint, limit: int, lease: float, only: Sequence[str]
    ) -> list[Claimed]:
        return self.outbox.claim(endpoint, limit, lease, only=only)

    async def drain(self) -> None:
        """Wait for the POSTs in flight and their records (tests)."""
        while self._tasks or (self._recorder is not None and not self._recorder.done()):
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
            if self._recorder is not None:
                await asyncio.gather(self._recorder, return_exceptions=True)

    async def _deliver(self, delivery: Claimed) -> None:
        endpoint = delivery.endpoint
        try:
            result = await self._post(endpoint, delivery)
            self._answering[endpoint.id] = result.ok
            if result.gone:  # disabled: what was claimed ahead stays unsent
                self._ready.pop(endpoint.id, None)
            self._outcomes.append(self._outcome(delivery, result))
            if self._recorder is None or self._recorder.done():
                self._recorder = asyncio.create_task(self._record_pending())
        except Exception:
            log.exception("webhook delivery %s failed to run", delivery.id)
        finally:
            self._in_flight[endpoint.id] -= 1
            self._start_ready(endpoint.id)
            # Claims come in batches: one for many deliveries under load, at
            # once when the endpoint has nothing in flight or claimed ahead.
            held = len(self._ready.get(endpoint.id, ())) + self._in_flight[endpoint.id]
            if held <= self._refill_at(self._ahead(endpoint.id)):
                self._wakeup.set()

    async def _record_pending(self) -> None:
        """Store the outcomes that came in meanwhile, one commit per batch."""
        while self._outcomes:
            if self._tasks:  # more outcomes are on their way: one commit for them too
                await asyncio.sleep(_GATHER)
            batch, self._outcomes = self._outcomes, []
            try:
                await self._in_executor(self.outbox.record, batch)
            except Exception:
                # Their leases run out and they are sent again: at least once.
                log.exception("recording %d webhook attempts failed", len(batch))

    async def _post(self, endpoint: Endpoint, delivery: Claimed) -> DeliveryResult:
        headers = endpoint.request_headers(delivery.id, delivery.payload, self._clock())
        try:
            async with asyncio.timeout(self.limits.attempt_timeout):
                return await self.client.post(endpoint.url, delivery.payload, headers)
        except TimeoutError:
            return DeliveryResult(
                None, ErrorKind.TIMEOUT, f"no complete answer in {self.limits.attempt_timeout:g} s"
            )

    def _outcome(self, delivery: Claimed, result: DeliveryResult) -> Attempted:
        now = self._clock()
        attempt = delivery.attempts + 1
        error = describe(result)
        next_attempt = None
        disable = None
        if result.gone:
            disable = f"410 Gone at {time.strftime('%Y-%m-%d %H:%M:%SZ', time.gmtime(now))}"
        elif not result.ok:
            next_attempt = backoff.next_attempt(attempt, now, result.retry_after, self._rng)
        response = result.excerpt[:_RESPONSE_EXCERPT].decode("utf-8", "replace") or None
        # Finished when nothing follows: delivered, gone, or given up.
        kind = result.error.value if result.error is not None else None
        metrics.webhook_attempt(result.status, kind, finished=next_attempt is None)
        # A success is a DEBUG line: at thousands a second, INFO lines for them
        # cost the dispatcher some 7 % of its CPU, and `mailstead webhook
        # deliveries` lists each attempt anyway. What went wrong is a WARNING.
        level = logging.DEBUG if result.ok else logging.WARNING
        if log.isEnabledFor(level):
            log.log(
                level,
                "webhook %s %s to %s attempt %d: %s%s",
                delivery.id,
                delivery.event_type,
                endpoint_label(delivery.endpoint),
                attempt,
                error or f"HTTP {result.status}",
                ""
                if result.ok or next_attempt is None
                else f", retry in {next_attempt - now:.0f} s",
            )
        return Attempted(
            delivery,
            status=result.status,
            error=error,
            elapsed=result.elapsed,
            response=response,
            next_attempt=next_attempt,
            succeeded=result.ok,
            disable_reason=disable,
        )

    async def _in_executor(self, fn: Callable[..., _T], *args: object) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)


def endpoint_label(endpoint: Endpoint) -> str:
    return f"{endpoint.id} ({endpoint.url})"
