"""The webhook dispatcher: the task that drains the outbox (``serve`` gives it a process).

Each pass asks, endpoint by endpoint, for as many due deliveries as that
endpoint has free slots (``WebhookLimits.per_endpoint``, within the
dispatcher's ``total``), POSTs each one signed with the endpoint's current
secrets, and records the outcome: 2xx delivered; 410 Gone failed, and the
endpoint disabled; anything else retried on the schedule of ``backoff.py``
(honouring Retry-After) until it gives up. A POST never takes longer than
``attempt_timeout``, shorter than the lease, so a delivery is never in the
hands of two live dispatchers (``serve``'s and a test's, say) at once.

Database work runs in the executor; the event loop only waits on sockets
(and reads the endpoint list, which the registry caches for a second).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
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
        # Held-back deliveries whose message is readable, and when we heard
        # so: sent before their hold ends (or found anyway once it has).
        self._own: dict[str, float] = {}
        # The endpoints of the last pass: when all of them are busy, a
        # wake-up needs no pass (new ones are seen within poll_interval).
        self._endpoints: tuple[Endpoint, ...] = ()
        # Outcomes waiting for the next group commit, and the task making it.
        self._outcomes: list[Attempted] = []
        self._recorder: asyncio.Task[None] | None = None

    def wake(self, ids: Sequence[str] = ()) -> None:
        """Start a pass soon, sending ``ids`` at once; safe from any thread (the outbox
        calls it after storing events)."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop is shutting down
                loop.call_soon_threadsafe(self._woken, tuple(ids))

    def _woken(self, ids: tuple[str, ...]) -> None:
        now = time.monotonic()
        self._own.update(dict.fromkeys(ids, now))
        if not self._all_busy():
            self._wakeup.set()

    def _all_busy(self) -> bool:
        limits = self.limits
        return sum(self._in_flight.values()) >= limits.total or bool(
            self._endpoints
            and all(self._in_flight[e.id] >= limits.per_endpoint for e in self._endpoints)
        )

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
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
        stale = time.monotonic() - SETTLE
        heard, self._own = self._own, {}
        own = tuple(i for i, at in heard.items() if at > stale)
        started = 0
        sent: set[str] = set()
        for endpoint in endpoints:
            claimed: list[Claimed] = []
            for only in ((own,) if own else ()) + ((),):
                free = min(
                    limits.per_endpoint - self._in_flight[endpoint.id] - len(claimed),
                    limits.total - sum(self._in_flight.values()) - len(claimed),
                )
                if free > 0:
                    claimed += await self._in_executor(
                        self._claim, endpoint, free, limits.lease, only
                    )
            for delivery in claimed:
                sent.add(delivery.id)
                self._in_flight[endpoint.id] += 1
                task = asyncio.create_task(self._deliver(delivery))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                started += 1
        # Handed-over deliveries for which no slot was free wait for the next pass.
        self._own.update({i: heard[i] for i in own if i not in sent})
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
            self._outcomes.append(self._outcome(delivery, result))
            if self._recorder is None or self._recorder.done():
                self._recorder = asyncio.create_task(self._record_pending())
        except Exception:
            log.exception("webhook delivery %s failed to run", delivery.id)
        finally:
            self._in_flight[endpoint.id] -= 1
            # Slots are refilled in batches: one claim for several deliveries
            # under load, at once when the endpoint has nothing in flight.
            if self._in_flight[endpoint.id] <= self.limits.per_endpoint // 2:
                self._wakeup.set()

    async def _record_pending(self) -> None:
        """Store the outcomes that came in meanwhile, one commit per batch."""
        while self._outcomes:
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
        level = logging.INFO if result.ok else logging.WARNING
        log.log(
            level,
            "webhook %s %s to %s attempt %d: %s%s",
            delivery.id,
            delivery.event_type,
            endpoint_label(delivery.endpoint),
            attempt,
            error or f"HTTP {result.status}",
            "" if result.ok or next_attempt is None else f", retry in {next_attempt - now:.0f} s",
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
