"""The dispatcher against a real HTTP endpoint on 127.0.0.1, in simulated time.

The endpoint answers 500, then nothing at all, then 200: the same
delivery comes three times with the same webhook-id and a fresh timestamp
and signature each time, which the receiver library accepts.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from mailstead.events import Event
from mailstead.limits import WebhookLimits
from mailstead.webhooks.dispatcher import Dispatcher
from mailstead.webhooks.http import WebhookClient
from mailstead.webhooks.outbox import Outbox
from mailstead.webhooks.receiver import WebhookRouter
from mailstead.webhooks.ssrf import AddressGuard
from tests.mta.queue_backends import Databases, databases
from tests.webhooks.fakes import Clock

__all__ = ["databases"]  # the fixture, for pytest: every test runs on both engines


class Endpoint:
    """HTTP/1.1 on 127.0.0.1: answers each request with the next of ``answers``
    (``None``: never answer); records every request's headers and body."""

    def __init__(self, answers: list[int | None]) -> None:
        self.answers = answers
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/hooks"

    async def start(self) -> Endpoint:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode().split("\r\n")
                headers = {
                    k.strip().lower(): v.strip()
                    for k, v in (line.split(":", 1) for line in lines[1:] if ":" in line)
                }
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                self.requests.append((headers, body))
                status = self.answers.pop(0) if self.answers else 200
                if status is None:
                    await asyncio.sleep(3600)
                writer.write(f"HTTP/1.1 {status} X\r\nContent-Length: 2\r\n\r\nok".encode())
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def outbox(databases: Databases, clock: Clock) -> Iterator[Outbox]:
    with databases.outbox(clock=clock) as o:
        yield o


def run(coro: object) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


def test_500_then_silence_then_200_same_id_fresh_signature(outbox: Outbox, clock: Clock) -> None:
    async def scenario() -> None:
        endpoint = await Endpoint([500, None, 200]).start()
        client = WebhookClient(AddressGuard(["127.0.0.0/8"]), read_timeout=0.5)
        limits = WebhookLimits(attempt_timeout=1.0)
        with ThreadPoolExecutor(2) as executor:
            dispatcher = Dispatcher(
                outbox, client, executor=executor, limits=limits, clock=clock,
                rng=random.Random(7),
            )  # fmt: skip
            hook = outbox.endpoints.add(endpoint.url, ["message.*"])
            outbox.emit([Event("message.received", {"n": 1}, account="a@example.test")])
            for step in (0.0, 5.0, 400.0):  # the first retry within 5 s, the next after 5 min
                clock.now += step
                assert await dispatcher.run_once() == 1
                await dispatcher.drain()
            assert await dispatcher.run_once() == 0
            await client.aclose()
        await endpoint.close()

        (delivery,) = outbox.deliveries()
        assert (delivery.state, delivery.attempts, delivery.last_status) == ("succeeded", 3, 200)
        ids = {h["webhook-id"] for h, _ in endpoint.requests}
        assert ids == {delivery.id}
        stamps = [h["webhook-timestamp"] for h, _ in endpoint.requests]
        assert len(set(stamps)) == 3
        assert len({h["webhook-signature"] for h, _ in endpoint.requests}) == 3
        seen: list[str] = []
        for headers, body in endpoint.requests:
            sent_at = float(headers["webhook-timestamp"])
            router = WebhookRouter(hook.secrets[0][0], clock=lambda t=sent_at: t)
            router.on("message.*")(lambda event: seen.append(event.type))
            router.handle(body, headers)
        assert seen == ["message.received"] * 3
        payload = json.loads(endpoint.requests[0][1])
        assert payload["type"] == "message.received"
        assert payload["data"] == {"n": 1, "uid": None, "uidvalidity": None}  # no place: no UID

    run(scenario())


def test_410_disables_the_endpoint(outbox: Outbox, clock: Clock) -> None:
    async def scenario() -> None:
        endpoint = await Endpoint([410]).start()
        client = WebhookClient(AddressGuard(["127.0.0.0/8"]))
        with ThreadPoolExecutor(2) as executor:
            dispatcher = Dispatcher(outbox, client, executor=executor, clock=clock)
            outbox.endpoints.add(endpoint.url)
            outbox.emit([Event("auth.failed", {})])
            await dispatcher.run_once()
            await dispatcher.drain()
            outbox.emit([Event("auth.failed", {})])  # nobody wants it any more
            assert await dispatcher.run_once() == 0
            await client.aclose()
        await endpoint.close()
        (endpoint_row,) = outbox.endpoints.list()
        assert not endpoint_row.enabled and "410" in (endpoint_row.disabled_reason or "")

    run(scenario())


def test_loopback_is_refused_without_the_allow_list(outbox: Outbox, clock: Clock) -> None:
    async def scenario() -> None:
        endpoint = await Endpoint([200]).start()
        client = WebhookClient(AddressGuard([]))
        with ThreadPoolExecutor(2) as executor:
            dispatcher = Dispatcher(outbox, client, executor=executor, clock=clock)
            outbox.endpoints.add(endpoint.url)
            outbox.emit([Event("auth.failed", {})])
            await dispatcher.run_once()
            await dispatcher.drain()
            await client.aclose()
        await endpoint.close()
        assert endpoint.requests == []
        (delivery,) = outbox.deliveries()
        assert delivery.state == "pending" and "loopback" in (delivery.last_error or "")

    run(scenario())


def test_a_dead_endpoint_does_not_hold_up_another(outbox: Outbox, clock: Clock) -> None:
    async def scenario() -> None:
        dead = await Endpoint([None] * 10).start()
        alive = await Endpoint([]).start()
        client = WebhookClient(AddressGuard(["127.0.0.0/8"]), read_timeout=5)
        limits = WebhookLimits(per_endpoint=2, attempt_timeout=5)
        with ThreadPoolExecutor(2) as executor:
            dispatcher = Dispatcher(outbox, client, executor=executor, limits=limits, clock=clock)
            outbox.endpoints.add(dead.url)
            outbox.endpoints.add(alive.url)
            outbox.emit([Event("auth.failed", {"n": n}) for n in range(5)])
            started = await dispatcher.run_once()
            assert started == 4  # two slots for the dead one, two for the live one
            for _ in range(20):
                await asyncio.sleep(0.05)
                await dispatcher.run_once()
                if len(alive.requests) == 5:
                    break
            assert len(alive.requests) == 5 and len(dead.requests) == 2
            for task in list(dispatcher._tasks):
                task.cancel()
            await client.aclose()
        await dead.close()
        await alive.close()

    run(scenario())


def test_held_back_deliveries_handed_over_while_every_slot_is_busy_wait_for_a_slot(
    outbox: Outbox, clock: Clock
) -> None:
    # A received message's delivery is held back (staging.SETTLE) until the
    # process that stored it says the message is readable; if the endpoint
    # is busy then, the hand-over is kept for the pass a free slot brings.
    async def scenario() -> None:
        endpoint = await Endpoint([None]).start()  # the first POST hangs
        client = WebhookClient(AddressGuard(["127.0.0.0/8"]))
        limits = WebhookLimits(per_endpoint=1, attempt_timeout=0.5)
        with ThreadPoolExecutor(2) as executor:
            dispatcher = Dispatcher(outbox, client, executor=executor, limits=limits, clock=clock)
            outbox.endpoints.add(endpoint.url)
            outbox.emit([Event("auth.failed", {})])
            assert await dispatcher.run_once() == 1  # takes the only slot
            staged = outbox.stage([Event("message.received", {"n": 2})])
            handed: list[str] = []
            outbox.on_emitted = handed.extend
            staged.publish()
            staged.close()
            dispatcher._woken(tuple(handed))
            assert await dispatcher.run_once() == 0  # no slot: claimed ahead, not dropped
            # The hanging POST times out; the slot it frees sends the handed-over
            # delivery at once, still within the hold, with no pass in between.
            await dispatcher.drain()
            assert await dispatcher.run_once() == 0
            await client.aclose()
        await endpoint.close()
        states = {d.event_type: d.state for d in outbox.deliveries()}
        assert states == {"auth.failed": "pending", "message.received": "succeeded"}

    run(scenario())
