"""A Tornado request handler that receives Mailstead webhooks::

    Application([(r"/hooks/mail", WebhookHandler, {"router": router})])

POST only (Tornado answers 405 to other methods). Async handlers are awaited
on Tornado's event loop.
"""

from __future__ import annotations

try:
    from tornado.web import RequestHandler
except ImportError as exc:
    raise ImportError(
        "mailstead.webhooks.adapters.tornado needs Tornado: pip install 'mailstead[tornado]'"
    ) from exc

from mailstead.webhooks.receiver import WebhookRouter

__all__ = ["WebhookHandler"]


class WebhookHandler(RequestHandler):
    """Hands each POST's raw body and headers to the ``router`` given in the route's kwargs."""

    def initialize(self, router: WebhookRouter) -> None:
        self.router = router

    def check_xsrf_cookie(self) -> None:
        # With xsrf_cookies on, Tornado would refuse the POST: the signature
        # authenticates the sender, who has no cookie.
        return

    async def post(self) -> None:
        reply = await self.router.reply_async(self.request.body, self.request.headers)
        self.set_status(reply.status)
        self.set_header("Content-Type", reply.content_type)
        self.finish(reply.body)
