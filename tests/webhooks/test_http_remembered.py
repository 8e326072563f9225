"""What the webhook client remembers between POSTs: parsed URLs and the addresses
the SSRF guard let through, never a name's answer. A name that resolves to an
allowed address and then to a refused one (DNS rebinding) is refused the
second time; a refused address stays refused on every attempt.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Sequence

from mailstead.webhooks.http import ErrorKind, WebhookClient
from mailstead.webhooks.ssrf import AddressGuard, IPAddress
from tests.webhooks.test_http import BODY, SIGNED, Endpoint, reply


def test_a_name_rebound_to_a_refused_address_is_refused() -> None:
    answers = [["127.0.0.1"], ["169.254.169.254"]]  # allowed, then cloud metadata

    async def rebinding(host: str, port: int) -> Sequence[IPAddress]:
        return [ipaddress.ip_address(a) for a in answers.pop(0)]

    async def main() -> tuple[list[int | None], list[ErrorKind | None], int]:
        async with Endpoint(reply("204 No Content")) as endpoint:
            guard = AddressGuard(["127.0.0.0/8"])
            client = WebhookClient(guard, resolver=rebinding)
            results = [
                await client.post(f"http://hooks.example:{endpoint.port}/x", BODY, SIGNED)
                for _ in range(2)
            ]
            await client.aclose()
            return [r.status for r in results], [r.error for r in results], endpoint.connections

    statuses, errors, connections = asyncio.run(main())
    assert statuses == [204, None] and errors == [None, ErrorKind.REFUSED]
    assert connections == 1


def test_a_refused_literal_is_refused_every_time_and_an_allowed_one_always_sent() -> None:
    async def main() -> tuple[list[int | None], list[ErrorKind | None], int]:
        async with Endpoint(reply("204 No Content")) as endpoint:
            client = WebhookClient(AddressGuard(["127.0.0.0/8"]))
            sent = [
                (await client.post(f"http://127.0.0.1:{endpoint.port}/", BODY, SIGNED)).status
                for _ in range(3)
            ]
            refused = [
                (await client.post(f"http://10.0.0.1:{endpoint.port}/", BODY, SIGNED)).error
                for _ in range(3)
            ]
            await client.aclose()
            return sent, refused, len(endpoint.requests)

    sent, refused, requests = asyncio.run(main())
    assert sent == [204, 204, 204] and requests == 3
    assert refused == [ErrorKind.REFUSED] * 3
