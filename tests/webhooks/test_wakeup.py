"""The wake-up channel from the mail workers to ``serve``'s dispatcher process."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence

from mailstead.webhooks.wakeup import WakeChannel


def test_ids_sent_from_another_process_reach_the_listener() -> None:
    channel = WakeChannel()
    woken: list[list[str]] = []

    async def main() -> None:
        done = asyncio.Event()

        def record(ids: Sequence[str]) -> None:
            woken.append(list(ids))
            if sum(map(len, woken)) >= 250:
                done.set()

        stop = channel.listen(record)
        pid = os.fork()
        if pid == 0:  # a mail worker
            channel.send()
            channel.send([f"msg_{i}" for i in range(250)])
            os._exit(0)
        await asyncio.wait_for(done.wait(), 10)
        os.waitpid(pid, 0)
        stop()

    try:
        asyncio.run(main())
    finally:
        channel.close()
    ids = [i for batch in woken for i in batch]
    assert ids == [f"msg_{i}" for i in range(250)]  # the empty wake-up carries none


def test_a_full_channel_drops_wake_ups_instead_of_blocking() -> None:
    channel = WakeChannel()
    try:
        for _ in range(100_000):  # nobody reads: the socket buffer fills up
            channel.send(["msg_" + "x" * 40] * 100)
    finally:
        channel.close()
