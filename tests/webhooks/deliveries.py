"""Signed deliveries as the Mailstead sender makes them, for the receiver's tests."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

from mailstead.webhooks.receiver import Event, WebhookRouter
from mailstead.webhooks.signing import sign_headers

# Fixed test keys (32 bytes each, base64 after the prefix).
SECRET = "whsec_bWFpbHN0ZWFkIHRlc3Qga2V5LCAzMiBieXRlcyBvayE="
OLD_SECRET = "whsec_dGhlIG9sZCBrZXksIGJlZm9yZSByb3RhdGlvbiEhISE="


def payload(event_type: str = "message.received", event_id: str = "evt_1", **extra: Any) -> bytes:
    body: dict[str, Any] = {
        "id": event_id,
        "type": event_type,
        "timestamp": "2026-12-07T13:00:00Z",
        "version": 1,
        "account": "alice@example.test",
        "domain": "example.test",
        "data": {"mailbox": "INBOX", "uid": 7},
    }
    body.update(extra)
    return json.dumps(body, separators=(",", ":")).encode()


def signed(
    body: bytes,
    msg_id: str = "msg_1",
    *,
    secrets: tuple[str, ...] = (SECRET,),
    timestamp: int | None = None,
) -> dict[str, str]:
    """The headers of one attempt, as a plain dict."""
    when = int(time.time()) if timestamp is None else timestamp
    return sign_headers(list(secrets), msg_id, body, when)


@dataclass(frozen=True, slots=True)
class HttpCase:
    """One request to an adapter and the reply every adapter must give."""

    name: str
    method: str
    body: bytes
    status: int
    reply: dict[str, str] | None  # the JSON reply; None: the framework's own (405)
    secret: str | None = SECRET  # None: no signature headers at all
    age: int = 0  # seconds the timestamp lies in the past

    def headers(self) -> dict[str, str]:
        if self.secret is None:
            return {"content-type": "application/json"}
        msg_id = "msg_" + self.name.replace(" ", "_")
        when = int(time.time()) - self.age
        got = signed(self.body, msg_id, secrets=(self.secret,), timestamp=when)
        return {"content-type": "application/json", **got}


HTTP_CASES = [
    HttpCase("handled", "POST", payload(), 200, {"status": "handled"}),
    HttpCase("unknown event", "POST", payload("future.event"), 200, {"status": "ignored"}),
    HttpCase("async handler", "POST", payload("mailbox.created"), 200, {"status": "handled"}),
    HttpCase(
        "wrong secret",
        "POST",
        payload(),
        401,
        {"error": "no webhook-signature matches the secret"},
        OLD_SECRET,
    ),
    HttpCase("unsigned", "POST", payload(), 401, {"error": "missing webhook-id header"}, None),
    HttpCase("stale", "POST", payload(), 401, None, age=3600),
    HttpCase("not JSON", "POST", b"nope", 400, {"error": "body is not JSON"}),
    HttpCase("not an object", "POST", b"[]", 400, {"error": "body is not a JSON object"}),
    HttpCase("handler raises", "POST", payload("boom.now"), 500, {"error": "handler failed"}),
    HttpCase("GET", "GET", b"", 405, None),
]


def adapter_router() -> tuple[WebhookRouter, list[str]]:
    """A router whose handlers record event types: sync, async, and one that raises."""
    router = WebhookRouter(SECRET)
    seen: list[str] = []

    @router.on("message.*")
    def on_message(event: Event) -> None:
        seen.append(event.type)

    @router.on("mailbox.*")
    async def on_mailbox(event: Event) -> None:
        await asyncio.sleep(0)
        seen.append(event.type)

    @router.on("boom.*")
    def boom(event: Event) -> None:
        raise RuntimeError("handler bug")

    return router, seen


def check_reply(case: HttpCase, status: int, body: bytes) -> None:
    assert status == case.status, (case.name, status, body)
    if case.reply is not None:
        assert json.loads(body) == case.reply, case.name
    elif status == 401:
        assert "too old" in json.loads(body)["error"]
