"""A plain ASGI application that receives Mailstead webhooks.

Run it alone (``uvicorn module:app``) or mount it, e.g. in Starlette or
FastAPI: ``app.mount("/hooks/mail", WebhookASGIApp(router))``. POST only
(405 otherwise); the body is read up to the router's ``max_body_bytes``
(413 beyond). Async handlers are awaited on the server's loop.

Needs no third-party package (the ``asgi`` extra is empty): it speaks
ASGI 3 itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from mailstead.webhooks.receiver import HttpReply, WebhookRouter

__all__ = ["WebhookASGIApp"]

# ASGI's own types (asgiref.typing), spelt out so nothing is imported for them.
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class _TooLarge(Exception):
    pass


class WebhookASGIApp:
    """An ASGI 3 app: each POST's body and headers go to ``router``; lifespan is acknowledged."""

    def __init__(self, router: WebhookRouter) -> None:
        self.router = router

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            raise ValueError(f"WebhookASGIApp serves HTTP, not {scope['type']!r}")
        if scope["method"] != "POST":
            reply = HttpReply(405, b'{"error":"method not allowed"}')
            await self._send(send, reply, [(b"allow", b"POST")])
            return
        try:
            body = await self._read_body(receive)
        except _TooLarge:
            await self._send(send, HttpReply(413, b'{"error":"body too large"}'))
            return
        # Header names arrive lower-cased (ASGI spec); latin-1 keeps every byte.
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        await self._send(send, await self.router.reply_async(body, headers))

    async def _read_body(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.router.max_body_bytes:
                raise _TooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    @staticmethod
    async def _send(
        send: Send, reply: HttpReply, extra: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        headers = [
            (b"content-type", reply.content_type.encode("latin-1")),
            (b"content-length", str(len(reply.body)).encode("ascii")),
            *(extra or []),
        ]
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": reply.body})

    @staticmethod
    async def _lifespan(receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
