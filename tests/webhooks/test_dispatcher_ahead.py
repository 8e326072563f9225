"""Claiming ahead: a dispatcher holds more leased deliveries than it has slots.

A finished POST starts the next claimed delivery at once, so one claim
serves many POSTs; the per-endpoint cap on POSTs in flight still holds; an
endpoint that fails gets no more than its free slots; and a delivery that
waited so long its lease could end mid-POST is left for a later claim.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from mailstead.events import Event
from mailstead.limits import WebhookLimits
from mailstead.webhooks.dispatcher import Dispatcher
from mailstead.webhooks.http import WebhookClient
from mailstead.webhooks.outbox import Outbox
from mailstead.webhooks.ssrf import AddressGuard
from tests.mta.queue_backends import Databases, databases
from tests.webhooks.fakes import Clock

__all__ = ["databases"]  # the fixture, for pytest: every test runs on both engines


class Receiver:
    """HTTP/1.1 on 127.0.0.1 answering each request with the next of ``answers``
    (200 when they run out, ``None``: never); counts the POSTs read and the most
    in flight at once."""

    def __init__(self, answers: list[int | None]) -> None:
        self.answers = answers
        self.bodies: list[bytes] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/hooks"

    async def start(self) -> Receiver:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                self.bodies.append(await reader.readexactly(length))
                self.in_flight += 1
                self.most_in_flight = max(self.most_in_flight, self.in_flight)
                status = self.answers.pop(0) if self.answers else 200
                await asyncio.sleep(0.01 if status is not None else 3600)
                self.in_flight -= 1
                writer.write(f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n".encode())
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


def _events(n: int) -> list[Event]:
    return [Event("auth.failed", {"n": i}, account=f"u{i}@example.test") for i in range(n)]


def test_one_pass_claims_ahead_and_finished_posts_start_the_rest(
    outbox: Outbox, clock: Clock
) -> None:
    async def scenario() -> None:
        receiver = await Receiver([]).start()
        client = WebhookClient(AddressGuard(["127.0.0.0/8"]))
        limits = WebhookLimits(per_endpoint=2)
        with ThreadPoolExecutor(2) as executor:
            dispatcher = Dispatcher(outbox, client, executor=executor, limits=limits, clock=clock)
            outbox.endpoints.add(receiver.url)
            outbox.emit(_events(6))
            assert await dispatcher.run_once() == 2  # two slots; four more claimed ahead
            await dispatcher.drain()  # no other pass: each finished POST starts the next
            await client.aclose()
        await receiver.close()
        assert len(receiver.bodies) == 6
        assert receiver.most_in_flight == 2  # the cap on POSTs in flight holds
        assert [d.state for d in outbox.deliveries()] == ["succeeded"] * 6

    asyncio.run(scenario())


def test_a_failing_endpoint_gets_only_what_its_slots_take(outbox: Outbox, clock: Clock) -> None:
    async def scenario() -> None:
        receiver = await Receiver([500] * 6).start()
        client = WebhookClient(AddressGuard(["127.0.0.0/8"]))
        limits = WebhookLimits(per_endpoint=2)
        with ThreadPoolExecutor(2) as executor:
            dispatcher = Dispatcher(outbox, client, executor=executor, limits=limits, clock=clock)
            hook = outbox.endpoints.add(receiver.url)
            outbox.emit(_events(6))
            await dispatcher.run_once()
            await dispatcher.drain()  # six 500s: each retried within 5 s
            clock.now += 10
            assert await dispatcher.run_once() == 2
            assert not dispatcher._ready[hook.id]  # nothing claimed ahead of a failing one
            await dispatcher.drain()
            await client.aclose()
        await receiver.close()
        attempts = sorted(d.attempts for d in outbox.deliveries())
        assert attempts == [1, 1, 1, 1, 2, 2]

    asyncio.run(scenario())


def test_a_delivery_claimed_too_long_ago_is_left_for_a_later_claim(
    outbox: Outbox, clock: Clock
) -> None:
    # lease - attempt_timeout is how long a claimed delivery may wait for a
    # slot: after that its lease could end while it is being sent.
    async def scenario() -> None:
        receiver = await Receiver([None]).start()  # the first POST hangs
        client = WebhookClient(AddressGuard(["127.0.0.0/8"]), read_timeout=0.3)
        limits = WebhookLimits(per_endpoint=1, lease=1.0, attempt_timeout=0.9)
        with ThreadPoolExecutor(2) as executor:
            dispatcher = Dispatcher(outbox, client, executor=executor, limits=limits, clock=clock)
            outbox.endpoints.add(receiver.url)
            outbox.emit(_events(2))
            assert await dispatcher.run_once() == 1
            await dispatcher.drain()  # 0.3 s later the slot is free; the other is stale
            assert len(receiver.bodies) == 1
            assert await dispatcher.run_once() == 0  # still leased (the outbox's clock)
            clock.now += 2  # its lease has run out
            assert await dispatcher.run_once() == 1
            await dispatcher.drain()
            await client.aclose()
        await receiver.close()
        assert len(receiver.bodies) == 2
        states = sorted(d.state for d in outbox.deliveries())
        assert states == ["pending", "succeeded"]  # the timed-out one retries later

    asyncio.run(scenario())
