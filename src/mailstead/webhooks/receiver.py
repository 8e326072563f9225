"""Receiving Mailstead webhooks in an application: verify, deduplicate, dispatch.

::

    router = WebhookRouter(secret="whsec_...")

    @router.on("message.received")
    def new_mail(event: Event) -> None: ...

    result = router.handle(body, headers)  # raw body bytes, request headers

Standard library only, and no import of the server: an application installs
mailstead for this module alone. Framework adapters are in
:mod:`mailstead.webhooks.adapters`; docs/webhooks.md shows each.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import fnmatch
import inspect
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, TypeVar

from mailstead.webhooks.idempotency import (
    IdempotencyStore,
    IdempotencyStoreError,
    MemoryIdempotencyStore,
)
from mailstead.webhooks.signing import (
    DEFAULT_TOLERANCE,
    Verified,
    WebhookVerificationError,
    parse_secret,
    verify,
)

__all__ = [
    "MAX_BODY_BYTES",
    "Event",
    "HandleResult",
    "HttpReply",
    "Outcome",
    "PayloadError",
    "PayloadTooLargeError",
    "WebhookRouter",
]

log = logging.getLogger("mailstead.webhooks.receiver")

# The largest body accepted. message.received carries decoded bodies the
# server bounds (its [webhooks] body limit); this leaves room for them.
MAX_BODY_BYTES = 16 * 1024 * 1024

Handler = Callable[["Event"], object]
H = TypeVar("H", bound=Handler)


class PayloadError(ValueError):
    """A verified body is not a JSON object with string ``id`` and ``type`` (HTTP 400)."""


class PayloadTooLargeError(PayloadError):
    """The body is larger than the router's ``max_body_bytes`` (HTTP 413)."""


@dataclass(frozen=True, slots=True)
class Event:
    """One delivered event: the fields every event has, and the whole payload as sent.

    ``timestamp`` is when the event happened (not when it was delivered), or
    None if the payload's is absent or not ISO 8601. ``data`` is the
    event-specific part; ``payload`` is the parsed body, unknown fields
    included (read-only views).
    """

    id: str
    type: str
    timestamp: datetime | None
    # Any: JSON values, as json.loads gives them; handlers index them freely.
    data: Mapping[str, Any]
    payload: Mapping[str, Any] = field(repr=False)
    webhook_id: str = ""  # the webhook-id header: the idempotency key


class Outcome(enum.Enum):
    """What :meth:`WebhookRouter.handle` did with a verified delivery."""

    HANDLED = "handled"  # every matching handler returned
    DUPLICATE = "duplicate"  # this webhook-id was handled before: nothing ran
    IGNORED = "ignored"  # no handler matches the type: acknowledged, logged


@dataclass(frozen=True, slots=True)
class HandleResult:
    """The outcome of one delivery, the event, and how many handlers ran."""

    outcome: Outcome
    event: Event
    handlers: int


@dataclass(frozen=True, slots=True)
class HttpReply:
    """The HTTP response an adapter sends for one delivery."""

    status: int
    body: bytes
    content_type: str = "application/json"


@dataclass(frozen=True, slots=True)
class _Route:
    pattern: str
    handler: Handler
    is_async: bool


def _is_async(handler: Handler) -> bool:
    call = getattr(handler, "__call__", None)  # noqa: B004 - an async __call__ counts
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(call)


def _parse_event(body: bytes, webhook_id: str) -> Event:
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise PayloadError("body is not JSON") from None
    if not isinstance(payload, dict):
        raise PayloadError("body is not a JSON object")
    event_id, event_type = payload.get("id"), payload.get("type")
    if not isinstance(event_id, str) or not isinstance(event_type, str) or not event_type:
        raise PayloadError("payload has no string 'id' and 'type'")
    data = payload.get("data")
    raw_time = payload.get("timestamp")
    timestamp = None
    if isinstance(raw_time, str):
        with contextlib.suppress(ValueError):
            timestamp = datetime.fromisoformat(raw_time)
    return Event(
        id=event_id,
        type=event_type,
        timestamp=timestamp,
        data=MappingProxyType(data if isinstance(data, dict) else {}),
        payload=MappingProxyType(payload),
        webhook_id=webhook_id,
    )


def _running_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class WebhookRouter:
    """The handlers registered by event pattern, the secrets they trust, and the ids handled.

    ``secret`` is one ``whsec_`` secret or several: during a rotation list
    the new and the old one, and a delivery signed with either passes.
    ``tolerance`` is how far (seconds, both directions) ``webhook-timestamp``
    may be from the clock. ``idempotency`` remembers handled ids (default: in
    memory, this process only).

    Patterns (:meth:`on`) are matched against the event type with
    :func:`fnmatch.fnmatchcase`: case-sensitive; ``*`` matches any run of
    characters, dots included, or none; ``?`` one character; ``[...]`` one
    of a set. So ``"message.*"`` matches ``message.received`` and
    ``message.flags_changed`` but not ``message`` or ``mailbox.created``;
    ``"*.failed"`` matches ``auth.failed``; ``"*"`` matches every type. A
    pattern without wildcards is an exact name.
    """

    def __init__(
        self,
        secret: str | Iterable[str],
        *,
        tolerance: float = DEFAULT_TOLERANCE,
        idempotency: IdempotencyStore | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._secrets = [secret] if isinstance(secret, str) else list(secret)
        if not self._secrets:
            raise ValueError("a WebhookRouter needs at least one secret")
        for each in self._secrets:
            parse_secret(each)  # a bad secret fails here, not on the first delivery
        if tolerance <= 0:
            raise ValueError("tolerance must be positive")
        self.tolerance = tolerance
        self.idempotency: IdempotencyStore = idempotency or MemoryIdempotencyStore()
        self.max_body_bytes = max_body_bytes
        self._clock = clock
        self._routes: list[_Route] = []

    # -- registration -------------------------------------------------------

    def on(self, *patterns: str) -> Callable[[H], H]:
        """Decorator: call the function for events whose type matches any of ``patterns``."""
        if not patterns or not all(isinstance(p, str) and p for p in patterns):
            raise ValueError("on() takes one or more non-empty patterns")

        def register(handler: H) -> H:
            for pattern in patterns:
                self.add(pattern, handler)
            return handler

        return register

    def add(self, pattern: str, handler: Handler) -> None:
        """Register ``handler`` for ``pattern`` (what :meth:`on` does)."""
        self._routes.append(_Route(pattern, handler, _is_async(handler)))

    def handlers_for(self, event_type: str) -> list[Handler]:
        """The handlers an event of ``event_type`` goes to, in registration order, each once."""
        found: list[Handler] = []
        for route in self._routes:
            if fnmatch.fnmatchcase(event_type, route.pattern) and route.handler not in found:
                found.append(route.handler)
        return found

    @property
    def has_async_handlers(self) -> bool:
        return any(route.is_async for route in self._routes)

    # -- handling -----------------------------------------------------------

    def verify(self, body: bytes, headers: Mapping[str, str]) -> Event:
        """Check size and signature over the raw ``body``, then parse it; nothing is dispatched.

        Raises :class:`PayloadTooLargeError`,
        :class:`~mailstead.webhooks.signing.WebhookVerificationError` (a
        subclass says which check failed) or :class:`PayloadError`.
        """
        if len(body) > self.max_body_bytes:
            raise PayloadTooLargeError(f"body over {self.max_body_bytes} bytes")
        verified: Verified = verify(
            self._secrets, body, headers, tolerance=self.tolerance, now=self._clock()
        )
        return _parse_event(body, verified.msg_id)

    def handle(self, body: bytes, headers: Mapping[str, str]) -> HandleResult:
        """Verify, deduplicate by ``webhook-id`` and call every matching handler, in order.

        Async handlers are run with :func:`asyncio.run`; inside a running
        event loop a router with async handlers refuses (RuntimeError): use
        :meth:`handle_async` there. If a handler raises, the id is released
        and the exception propagates, so the sender (seeing an error status)
        retries and the retry runs every handler again: handlers must
        tolerate running twice for what they did before raising.
        """
        if self.has_async_handlers and _running_loop():
            raise RuntimeError(
                "WebhookRouter.handle() cannot run async handlers inside a running event "
                "loop; await WebhookRouter.handle_async() instead"
            )
        event = self.verify(body, headers)
        handlers = self._begin(event)
        if handlers is None:
            return HandleResult(Outcome.DUPLICATE, event, 0)
        if not handlers:
            return HandleResult(Outcome.IGNORED, event, 0)
        try:
            if any(_is_async(h) for h in handlers):
                asyncio.run(self._call_all(event, handlers))
            else:
                for handler in handlers:
                    self._call_sync(handler, event)
        except BaseException:
            self.idempotency.release(event.webhook_id)
            raise
        return HandleResult(Outcome.HANDLED, event, len(handlers))

    async def handle_async(self, body: bytes, headers: Mapping[str, str]) -> HandleResult:
        """:meth:`handle` for async frameworks: awaits async handlers, calls sync ones inline.

        The idempotency store is called in a worker thread, since a shared
        store (SQLite, Redis) does blocking I/O.
        """
        event = self.verify(body, headers)
        handlers = await asyncio.to_thread(self._begin, event)
        if handlers is None:
            return HandleResult(Outcome.DUPLICATE, event, 0)
        if not handlers:
            return HandleResult(Outcome.IGNORED, event, 0)
        try:
            await self._call_all(event, handlers)
        except BaseException:
            await asyncio.to_thread(self.idempotency.release, event.webhook_id)
            raise
        return HandleResult(Outcome.HANDLED, event, len(handlers))

    def _begin(self, event: Event) -> list[Handler] | None:
        """The handlers to run, [] for an unknown type, None for a duplicate."""
        handlers = self.handlers_for(event.type)
        if not handlers:
            log.info("webhook %s: no handler for event type %r", event.webhook_id, event.type)
            return []
        if not self.idempotency.claim(event.webhook_id):
            log.info("webhook %s: duplicate delivery, not handled again", event.webhook_id)
            return None
        return handlers

    @staticmethod
    def _call_sync(handler: Handler, event: Event) -> None:
        result = handler(event)
        if inspect.isawaitable(result):
            if inspect.iscoroutine(result):
                result.close()
            raise TypeError(f"{handler!r} returned an awaitable but is not an async function")

    @staticmethod
    async def _call_all(event: Event, handlers: list[Handler]) -> None:
        for handler in handlers:
            result = handler(event)
            if inspect.isawaitable(result):
                await result

    # -- HTTP, for the adapters ----------------------------------------------

    def reply(self, body: bytes, headers: Mapping[str, str]) -> HttpReply:
        """:meth:`handle`, its outcome or failure as the HTTP response to send."""
        try:
            return _ok(self.handle(body, headers))
        except Exception as exc:
            return _failure(exc)

    async def reply_async(self, body: bytes, headers: Mapping[str, str]) -> HttpReply:
        """:meth:`handle_async`, its outcome or failure as the HTTP response to send."""
        try:
            return _ok(await self.handle_async(body, headers))
        except Exception as exc:
            return _failure(exc)


def _json(code: int, **fields: str) -> HttpReply:
    return HttpReply(code, json.dumps(fields, separators=(",", ":")).encode())


def _ok(result: HandleResult) -> HttpReply:
    return _json(200, status=result.outcome.value)


def _failure(exc: Exception) -> HttpReply:
    """401 bad signature, 413 too large, 400 bad payload; 500 (the sender retries) when a
    handler raised or the idempotency store failed."""
    if isinstance(exc, WebhookVerificationError):
        log.warning("webhook refused: %s", exc)
        return _json(401, error=str(exc))
    if isinstance(exc, PayloadTooLargeError):
        return _json(413, error=str(exc))
    if isinstance(exc, PayloadError):
        log.warning("webhook refused: %s", exc)
        return _json(400, error=str(exc))
    if isinstance(exc, IdempotencyStoreError):
        log.error("webhook idempotency store failed: %s", exc)
        return _json(500, error="idempotency store unavailable")
    log.error("webhook handler failed", exc_info=exc)
    return _json(500, error="handler failed")
