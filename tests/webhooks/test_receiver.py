"""The receiver: verify, deduplicate by webhook-id, dispatch by event pattern."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
from datetime import UTC, datetime

import pytest

from mailstead.webhooks.receiver import (
    Event,
    HandleResult,
    Outcome,
    PayloadError,
    PayloadTooLargeError,
    WebhookRouter,
)
from mailstead.webhooks.signing import (
    InvalidSecretError,
    SignatureMismatchError,
    TimestampError,
)
from tests.webhooks.deliveries import OLD_SECRET, SECRET, payload, signed

NOW = 1_796_648_400


def router(**options: object) -> WebhookRouter:
    return WebhookRouter(SECRET, clock=lambda: NOW, **options)  # type: ignore[arg-type]


def deliver(r: WebhookRouter, body: bytes, msg_id: str = "msg_1") -> HandleResult:
    return r.handle(body, signed(body, msg_id, timestamp=NOW))


def test_the_handler_gets_the_event() -> None:
    r = router()
    seen: list[Event] = []
    r.on("message.received")(seen.append)
    result = deliver(r, payload(extra_field="kept"))
    assert result.outcome is Outcome.HANDLED and result.handlers == 1
    (event,) = seen
    assert (event.id, event.type, event.webhook_id) == ("evt_1", "message.received", "msg_1")
    assert event.timestamp == datetime(2026, 12, 7, 13, tzinfo=UTC)
    assert event.data == {"mailbox": "INBOX", "uid": 7}
    assert event.payload["account"] == "alice@example.test"
    assert event.payload["extra_field"] == "kept"


def test_event_is_frozen_and_read_only() -> None:
    r = router()
    seen: list[Event] = []
    r.on("*")(seen.append)
    deliver(r, payload())
    with pytest.raises(AttributeError):
        seen[0].type = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        seen[0].data["uid"] = 8  # type: ignore[index]


@pytest.mark.parametrize(
    ("pattern", "event_type", "matches"),
    [
        ("message.received", "message.received", True),
        ("message.received", "message.receivedX", False),
        ("message.*", "message.received", True),
        ("message.*", "message.flags_changed", True),
        ("message.*", "message", False),
        ("message.*", "mailbox.created", False),
        ("message.*", "message.a.b", True),  # * crosses dots
        ("*.failed", "auth.failed", True),
        ("auth.*ed", "auth.succeeded", True),
        ("mailbox.?enamed", "mailbox.renamed", True),
        ("message.[de]*", "message.delivered", True),
        ("message.[de]*", "message.bounced", False),
        ("*", "anything.at.all", True),
        ("Message.*", "message.received", False),  # case-sensitive
    ],
)
def test_pattern_table(pattern: str, event_type: str, matches: bool) -> None:
    r = router()
    r.on(pattern)(lambda event: None)
    assert bool(r.handlers_for(event_type)) is matches


def test_every_matching_handler_runs_once_in_registration_order() -> None:
    r = router()
    calls: list[str] = []

    @r.on("*")
    def first(event: Event) -> None:
        calls.append("first")

    @r.on("message.received", "message.*")  # two matching patterns: still called once
    def second(event: Event) -> None:
        calls.append("second")

    @r.on("mailbox.*")
    def never(event: Event) -> None:
        calls.append("never")

    assert deliver(r, payload()).handlers == 2
    assert calls == ["first", "second"]


def test_unknown_event_is_acknowledged_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    r = router()
    r.on("message.*")(lambda event: None)
    with caplog.at_level(logging.INFO, "mailstead.webhooks.receiver"):
        result = deliver(r, payload("future.event"))
    assert result.outcome is Outcome.IGNORED and result.event.type == "future.event"
    assert "no handler for event type 'future.event'" in caplog.text


def test_duplicate_webhook_id_is_not_handled_twice() -> None:
    r = router()
    calls: list[str] = []
    r.on("*")(lambda event: calls.append(event.id))
    assert deliver(r, payload()).outcome is Outcome.HANDLED
    # The sender's retry: same id, new timestamp and signature.
    body = payload()
    again = r.handle(body, signed(body, "msg_1", timestamp=NOW + 5))
    assert again.outcome is Outcome.DUPLICATE and again.handlers == 0
    assert deliver(r, payload(), "msg_2").outcome is Outcome.HANDLED
    assert calls == ["evt_1", "evt_1"]


def test_a_handler_that_raises_releases_the_id_so_the_retry_runs() -> None:
    r = router()
    attempts: list[int] = []

    @r.on("*")
    def flaky(event: Event) -> None:
        attempts.append(1)
        if len(attempts) == 1:
            raise ConnectionError("database down")

    with pytest.raises(ConnectionError):
        deliver(r, payload())
    assert deliver(r, payload()).outcome is Outcome.HANDLED
    assert len(attempts) == 2


def test_verification_comes_before_dedupe() -> None:
    # A forged delivery must not claim the id of a real one.
    r = router()
    r.on("*")(lambda event: None)
    forged = signed(payload(), "msg_1", secrets=(OLD_SECRET,), timestamp=NOW)
    with pytest.raises(SignatureMismatchError):
        r.handle(payload(), forged)
    assert deliver(r, payload()).outcome is Outcome.HANDLED


def test_rotation_router_accepts_both_secrets() -> None:
    r = WebhookRouter([SECRET, OLD_SECRET], clock=lambda: NOW)
    r.on("*")(lambda event: None)
    body = payload()
    for i, secret in enumerate((SECRET, OLD_SECRET)):
        got = signed(body, f"msg_{i}", secrets=(secret,), timestamp=NOW)
        assert r.handle(body, got).outcome is Outcome.HANDLED


def test_router_tolerance() -> None:
    r = router(tolerance=60)
    body = payload()
    with pytest.raises(TimestampError):
        r.handle(body, signed(body, timestamp=NOW - 61))


@pytest.mark.parametrize(
    "secret", ["", "whsec_short", "plain-password-no-prefix", ["whsec_AAAA"], []]
)
def test_router_refuses_bad_secrets_up_front(secret: str | list[str]) -> None:
    with pytest.raises((InvalidSecretError, ValueError)):
        WebhookRouter(secret)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'"message.received"', "not a JSON object"),
        (b"null", "not a JSON object"),
        (b"[" * 100_000 + b"]" * 100_000, "not JSON"),
        (b'{"type": "message.received"}', "no string 'id'"),
        (b'{"id": "evt_1", "type": 7}', "no string 'id'"),
        (b'{"id": "evt_1", "type": ""}', "no string 'id'"),
    ],
)
def test_hostile_bodies(body: bytes, message: str) -> None:
    r = router()
    with pytest.raises(PayloadError, match=message):
        r.handle(body, signed(body, timestamp=NOW))


def test_body_over_the_limit_is_refused_before_verification() -> None:
    r = router(max_body_bytes=100)
    with pytest.raises(PayloadTooLargeError):
        r.handle(b"x" * 101, {})


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"timestamp": "yesterday"}, None),
        ({"timestamp": 1796648400}, None),
        ({"data": "not an object"}, {}),
    ],
)
def test_odd_optional_fields_are_tolerated(extra: dict[str, object], expected: object) -> None:
    r = router()
    result = deliver(r, payload(**extra))
    got = result.event.timestamp if "timestamp" in extra else dict(result.event.data)
    assert got == expected


# -- async handlers -----------------------------------------------------------


def test_sync_handle_runs_async_handlers_in_order() -> None:
    r = router()
    calls: list[str] = []

    @r.on("*")
    async def first(event: Event) -> None:
        await asyncio.sleep(0)
        calls.append("async")

    @r.on("*")
    def second(event: Event) -> None:
        calls.append("sync")

    assert deliver(r, payload()).handlers == 2
    assert calls == ["async", "sync"]


def test_handle_async_awaits_handlers() -> None:
    r = router()
    calls: list[str] = []

    @r.on("message.*")
    async def on_message(event: Event) -> None:
        await asyncio.sleep(0)
        calls.append(event.type)

    r.on("*")(lambda event: calls.append("sync"))
    body = payload()
    result = asyncio.run(r.handle_async(body, signed(body, timestamp=NOW)))
    assert result.outcome is Outcome.HANDLED
    assert calls == ["message.received", "sync"]


def test_handle_async_releases_the_id_when_a_handler_raises() -> None:
    r = router()
    failures = [RuntimeError("once")]

    @r.on("*")
    async def flaky(event: Event) -> None:
        if failures:
            raise failures.pop()

    body = payload()

    async def twice() -> Outcome:
        with pytest.raises(RuntimeError):
            await r.handle_async(body, signed(body, timestamp=NOW))
        return (await r.handle_async(body, signed(body, timestamp=NOW))).outcome

    assert asyncio.run(twice()) is Outcome.HANDLED


def test_sync_handle_refuses_async_handlers_inside_a_running_loop() -> None:
    r = router()

    @r.on("*")
    async def handler(event: Event) -> None:
        pass

    async def inside() -> None:
        body = payload()
        r.handle(body, signed(body, timestamp=NOW))

    with pytest.raises(RuntimeError, match=r"await WebhookRouter\.handle_async"):
        asyncio.run(inside())


def test_a_sync_handler_returning_a_coroutine_is_an_error() -> None:
    r = router()

    async def real(event: Event) -> None:
        pass

    r.on("*")(lambda event: real(event))
    with pytest.raises(TypeError, match="not an async function"):
        deliver(r, payload())


# -- HTTP replies and imports --------------------------------------------------


@pytest.mark.parametrize(
    ("body", "good_signature", "status", "reply"),
    [
        (payload(), True, 200, {"status": "handled"}),
        (payload("future.event"), True, 200, {"status": "ignored"}),
        (payload(), False, 401, {"error": "no webhook-signature matches the secret"}),
        (b"[]", True, 400, {"error": "body is not a JSON object"}),
        (payload("boom.now"), True, 500, {"error": "handler failed"}),
    ],
)
def test_reply_maps_outcomes_to_http(
    body: bytes, good_signature: bool, status: int, reply: dict[str, str]
) -> None:
    r = router()
    r.on("message.*")(lambda event: None)

    @r.on("boom.*")
    def boom(event: Event) -> None:
        raise ValueError("bug")

    secret = SECRET if good_signature else OLD_SECRET
    got = r.reply(body, signed(body, secrets=(secret,), timestamp=NOW))
    assert (got.status, json.loads(got.body)) == (status, reply)


def test_receiver_imports_nothing_of_the_server() -> None:
    code = (
        "import json, sys; import mailstead.webhooks.receiver; "
        "print(json.dumps(sorted({m.partition('.')[0] for m in sys.modules} "
        "- set(sys.stdlib_module_names)))); "
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('mailstead'))))"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-c", code], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    # Nothing outside the standard library but the script itself and
    # setuptools' startup hook (a .pth file in the venv).
    assert set(json.loads(out[0])) <= {"__main__", "_distutils_hack", "mailstead"}
    assert json.loads(out[1]) == [
        "mailstead",
        "mailstead.webhooks",
        "mailstead.webhooks.idempotency",
        "mailstead.webhooks.receiver",
        "mailstead.webhooks.signing",
    ]
