"""The Django views, through Django's own test client."""

from __future__ import annotations

import django
import pytest
from django.conf import settings
from django.test import Client
from django.urls import path

from mailstead.webhooks.adapters.django import async_webhook_view, webhook_view
from mailstead.webhooks.idempotency import MemoryIdempotencyStore
from tests.webhooks.deliveries import HTTP_CASES, HttpCase, adapter_router, check_reply, payload

if not settings.configured:
    settings.configure(
        ALLOWED_HOSTS=["testserver"],
        ROOT_URLCONF=__name__,
        SECRET_KEY="tests only",
        # CSRF on, as in a real project: the views must be exempt.
        MIDDLEWARE=["django.middleware.csrf.CsrfViewMiddleware"],
        INSTALLED_APPS=[],
        DATABASES={},
    )
    django.setup()

ROUTER, SEEN = adapter_router()
urlpatterns = [
    path("hooks/mail", webhook_view(ROUTER)),
    path("hooks/mail-async", async_webhook_view(ROUTER)),
]
URLS = ["/hooks/mail", "/hooks/mail-async"]


@pytest.fixture(autouse=True)
def fresh_router() -> None:
    ROUTER.idempotency = MemoryIdempotencyStore()
    SEEN.clear()


@pytest.fixture
def client() -> Client:
    return Client(enforce_csrf_checks=True)


def send(client: Client, url: str, case: HttpCase) -> tuple[int, bytes]:
    if case.method == "GET":
        response = client.get(url)
    else:
        headers = case.headers()
        response = client.post(
            url, data=case.body, content_type=headers.pop("content-type"), headers=headers
        )
    return response.status_code, response.content


@pytest.mark.parametrize("url", URLS)
@pytest.mark.parametrize("case", HTTP_CASES, ids=lambda c: c.name)
def test_replies(client: Client, url: str, case: HttpCase) -> None:
    check_reply(case, *send(client, url, case))


@pytest.mark.parametrize("url", URLS)
def test_handler_runs_once_per_webhook_id(client: Client, url: str) -> None:
    case = HTTP_CASES[0]
    first, second = send(client, url, case), send(client, url, case)
    assert first == (200, b'{"status":"handled"}')
    assert second == (200, b'{"status":"duplicate"}')
    assert SEEN == ["message.received"]


def test_get_is_refused_with_allow_post(client: Client) -> None:
    response = client.get(URLS[0])
    assert response.status_code == 405 and response["Allow"] == "POST"


def test_signature_covers_the_raw_body(client: Client) -> None:
    # Spaces Django would never produce by re-serialising: verified as sent.
    body = payload().replace(b",", b" ,  ")
    case = HttpCase("spaced", "POST", body, 200, {"status": "handled"})
    check_reply(case, *send(client, URLS[0], case))
