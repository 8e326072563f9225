"""The ASGI app, alone and inside Starlette, through Starlette's TestClient."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.testclient import TestClient

from mailstead.webhooks.adapters.asgi import WebhookASGIApp
from mailstead.webhooks.receiver import WebhookRouter
from tests.webhooks.deliveries import (
    HTTP_CASES,
    SECRET,
    HttpCase,
    adapter_router,
    check_reply,
    payload,
)


def send(client: TestClient, case: HttpCase, url: str) -> tuple[int, bytes]:
    if case.method == "GET":
        response = client.get(url)
    else:
        response = client.post(url, content=case.body, headers=case.headers())
    return response.status_code, response.content


@pytest.mark.parametrize("case", HTTP_CASES, ids=lambda c: c.name)
def test_replies_alone(case: HttpCase) -> None:
    router, _ = adapter_router()
    with TestClient(WebhookASGIApp(router)) as client:  # runs lifespan too
        check_reply(case, *send(client, case, "/"))


@pytest.mark.parametrize("case", HTTP_CASES, ids=lambda c: c.name)
def test_replies_in_starlette(case: HttpCase) -> None:
    router, _ = adapter_router()
    app = Starlette(routes=[Route("/hooks/mail", WebhookASGIApp(router))])
    check_reply(case, *send(TestClient(app), case, "/hooks/mail"))


def test_handler_runs_once_per_webhook_id() -> None:
    router, seen = adapter_router()
    client = TestClient(WebhookASGIApp(router))
    case = HTTP_CASES[0]
    assert send(client, case, "/") == (200, b'{"status":"handled"}')
    assert send(client, case, "/") == (200, b'{"status":"duplicate"}')
    assert seen == ["message.received"]


def test_405_names_post() -> None:
    router, _ = adapter_router()
    response = TestClient(WebhookASGIApp(router)).put("/", content=b"{}")
    assert response.status_code == 405 and response.headers["allow"] == "POST"


def test_body_over_the_limit_is_413_before_reading_it_all() -> None:
    router = WebhookRouter(SECRET, max_body_bytes=1000)
    client = TestClient(WebhookASGIApp(router))
    chunks = iter([b"x" * 600, b"x" * 600, b"never read"])
    response = client.post("/", content=chunks)
    assert response.status_code == 413


def test_chunked_body_is_joined() -> None:
    router, seen = adapter_router()
    client = TestClient(WebhookASGIApp(router))
    body = payload()
    case = HttpCase("chunked", "POST", body, 200, {"status": "handled"})
    response = client.post("/", content=iter([body[:10], body[10:]]), headers=case.headers())
    assert response.status_code == 200 and seen == ["message.received"]
