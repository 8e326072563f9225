"""A Flask blueprint that receives Mailstead webhooks::

    app.register_blueprint(webhook_blueprint(router, "/hooks/mail"))

POST only (Flask answers 405 to other methods). Async handlers run with
``asyncio.run`` in the request's thread.
"""

from __future__ import annotations

try:
    from flask import Blueprint, Response, request
except ImportError as exc:
    raise ImportError(
        "mailstead.webhooks.adapters.flask needs Flask: pip install 'mailstead[flask]'"
    ) from exc

from mailstead.webhooks.receiver import WebhookRouter

__all__ = ["webhook_blueprint"]


def webhook_blueprint(
    router: WebhookRouter,
    url_prefix: str = "/webhooks/mailstead",
    *,
    name: str = "mailstead_webhooks",
) -> Blueprint:
    """A blueprint with one POST route, at exactly ``url_prefix``, handing requests to ``router``.

    No trailing-slash variant: a redirect would lose the delivery (senders
    do not follow them). Give each blueprint a distinct ``name`` when an app
    receives from several routers.
    """
    blueprint = Blueprint(name, __name__, url_prefix=url_prefix)

    @blueprint.post("")
    def receive() -> Response:
        # get_data(): the raw bytes as sent, which the signature covers.
        body = request.get_data(cache=False)
        reply = router.reply(body, dict(request.headers.items()))
        return Response(reply.body, status=reply.status, content_type=reply.content_type)

    return blueprint
