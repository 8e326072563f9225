"""The Tornado handler, through Tornado's AsyncHTTPTestCase."""

from __future__ import annotations

from tornado.testing import AsyncHTTPTestCase
from tornado.web import Application

from mailstead.webhooks.adapters.tornado import WebhookHandler
from tests.webhooks.deliveries import HTTP_CASES, HttpCase, adapter_router, check_reply


class WebhookHandlerTest(AsyncHTTPTestCase):
    def get_app(self) -> Application:
        self.router, self.seen = adapter_router()
        # xsrf_cookies on, as in a real app: the handler must be exempt.
        return Application(
            [(r"/hooks/mail", WebhookHandler, {"router": self.router})],
            xsrf_cookies=True,
            cookie_secret="tests only",
        )

    def send(self, case: HttpCase) -> tuple[int, bytes]:
        if case.method == "GET":
            response = self.fetch("/hooks/mail")
        else:
            response = self.fetch(
                "/hooks/mail", method="POST", body=case.body, headers=case.headers()
            )
        return response.code, response.body

    def test_replies(self) -> None:
        for case in HTTP_CASES:
            with self.subTest(case.name):
                check_reply(case, *self.send(case))

    def test_handler_runs_once_per_webhook_id(self) -> None:
        case = HTTP_CASES[0]
        assert self.send(case) == (200, b'{"status":"handled"}')
        assert self.send(case) == (200, b'{"status":"duplicate"}')
        assert self.seen == ["message.received"]

    def test_async_handlers_run_on_tornados_loop(self) -> None:
        case = next(c for c in HTTP_CASES if c.name == "async handler")
        assert self.send(case)[0] == 200
        assert self.seen == ["mailbox.created"]
