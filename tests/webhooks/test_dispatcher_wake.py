"""A running dispatcher woken over serve's wake-up channel sends a held-back delivery at once.

The worker that stored a message.received hands its delivery ids over (a
datagram); the dispatcher, reading it on its own loop, starts the POST
without waiting for its next poll or the end of the hold (staging.SETTLE).
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from mailstead.events import Event
from mailstead.limits import WebhookLimits
from mailstead.webhooks.dispatcher import Dispatcher
from mailstead.webhooks.http import WebhookClient
from mailstead.webhooks.outbox import Outbox
from mailstead.webhooks.ssrf import AddressGuard
from mailstead.webhooks.wakeup import WakeChannel
from tests.webhooks.test_dispatcher_ahead import Receiver


def test_handed_over_ids_are_sent_before_the_next_poll(tmp_path: Path) -> None:
    async def scenario() -> float:
        receiver = await Receiver([]).start()
        channel = WakeChannel()
        client = WebhookClient(AddressGuard(["127.0.0.0/8"]))
        limits = WebhookLimits(poll_interval=30.0)
        with Outbox(tmp_path / "queue.sqlite3") as outbox, ThreadPoolExecutor(2) as executor:
            outbox.endpoints.add(receiver.url)
            dispatcher = Dispatcher(outbox, client, executor=executor, limits=limits)
            task = asyncio.create_task(dispatcher.run())
            stop = channel.listen(dispatcher.wake)
            await asyncio.sleep(0.1)  # its first pass: nothing due
            outbox.on_emitted = channel.send  # as a mail worker's outbox does
            staged = outbox.stage([Event("message.received", {"n": 1})])
            started = time.monotonic()
            staged.publish()
            staged.close()  # the message is readable: hand the delivery over
            while not receiver.bodies and time.monotonic() - started < 10:
                await asyncio.sleep(0.01)
            took = time.monotonic() - started
            stop()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await client.aclose()
        channel.close()
        await receiver.close()
        assert len(receiver.bodies) == 1
        return took

    assert asyncio.run(scenario()) < 1.0  # neither the 30 s poll nor the 2 s hold


def test_hand_overs_while_posts_are_in_flight_are_claimed_together(tmp_path: Path) -> None:
    # Under a stream of mail each message hands its delivery over on its
    # own; while the endpoint is busy they wait a moment and share a claim.
    async def scenario() -> list[int]:
        receiver = await Receiver([None]).start()  # the first POST hangs: one in flight
        client = WebhookClient(AddressGuard(["127.0.0.0/8"]))
        limits = WebhookLimits(poll_interval=30.0, attempt_timeout=2.0)
        with Outbox(tmp_path / "queue.sqlite3") as outbox, ThreadPoolExecutor(2) as executor:
            outbox.endpoints.add(receiver.url)
            claims: list[int] = []
            claim = outbox.claim

            def counted(*args: object, **kwargs: object) -> object:
                claimed = claim(*args, **kwargs)  # type: ignore[arg-type]
                if kwargs.get("only"):
                    claims.append(len(claimed))
                return claimed

            outbox.claim = counted  # type: ignore[method-assign]
            dispatcher = Dispatcher(outbox, client, executor=executor, limits=limits)
            outbox.emit([Event("auth.failed", {})])
            task = asyncio.create_task(dispatcher.run())
            while not receiver.bodies:
                await asyncio.sleep(0.01)
            handed: list[str] = []
            outbox.on_emitted = handed.extend
            for n in range(3):  # three messages stored
                staged = outbox.stage([Event("message.received", {"n": n})])
                staged.publish()
                staged.close()
            for delivery_id in handed:  # and handed over one by one, the loop running between
                dispatcher.wake([delivery_id])
                await asyncio.sleep(0)
            started = time.monotonic()
            while len(receiver.bodies) < 4 and time.monotonic() - started < 10:
                await asyncio.sleep(0.01)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await client.aclose()
        await receiver.close()
        assert len(receiver.bodies) == 4
        return claims

    assert asyncio.run(scenario()) == [3]
