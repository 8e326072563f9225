"""A Django view that receives Mailstead webhooks::

    path("hooks/mail", webhook_view(router))           # WSGI or ASGI
    path("hooks/mail", async_webhook_view(router))     # ASGI, async handlers awaited

POST only (405 otherwise), exempt from CSRF: the signature is the proof.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

try:
    from django.http import (  # type: ignore[import-untyped]
        HttpRequest,
        HttpResponse,
        HttpResponseNotAllowed,
    )
    from django.views.decorators.csrf import csrf_exempt  # type: ignore[import-untyped]
except ImportError as exc:
    raise ImportError(
        "mailstead.webhooks.adapters.django needs Django: pip install 'mailstead[django]'"
    ) from exc

from mailstead.webhooks.receiver import HttpReply, WebhookRouter

__all__ = ["async_webhook_view", "webhook_view"]


def _response(reply: HttpReply) -> HttpResponse:
    return HttpResponse(reply.body, status=reply.status, content_type=reply.content_type)


def webhook_view(router: WebhookRouter) -> Callable[[HttpRequest], HttpResponse]:
    """A sync view; async handlers run with ``asyncio.run`` (Django calls it off the loop)."""

    def view(request: HttpRequest) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        return _response(router.reply(request.body, request.headers))

    exempt: Callable[[HttpRequest], HttpResponse] = csrf_exempt(view)
    return exempt


def async_webhook_view(router: WebhookRouter) -> Callable[[HttpRequest], Awaitable[HttpResponse]]:
    """An async view for Django under ASGI: handlers are awaited on the server's loop."""

    async def view(request: HttpRequest) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        return _response(await router.reply_async(request.body, request.headers))

    # csrf_exempt keeps a coroutine function a coroutine function (Django 5).
    exempt: Callable[[HttpRequest], Awaitable[HttpResponse]] = csrf_exempt(view)
    return exempt
