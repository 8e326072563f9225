"""The Flask blueprint, through Flask's own test client."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from mailstead.webhooks.adapters.flask import webhook_blueprint
from tests.webhooks.deliveries import HTTP_CASES, HttpCase, adapter_router, check_reply

URL = "/hooks/mail"


@pytest.fixture
def app_and_seen() -> tuple[FlaskClient, list[str]]:
    router, seen = adapter_router()
    app = Flask(__name__)
    app.register_blueprint(webhook_blueprint(router, URL))
    return app.test_client(), seen


def send(client: FlaskClient, case: HttpCase, url: str = URL) -> tuple[int, bytes]:
    if case.method == "GET":
        response = client.get(url)
    else:
        response = client.post(url, data=case.body, headers=case.headers())
    return response.status_code, response.data


@pytest.mark.parametrize("case", HTTP_CASES, ids=lambda c: c.name)
def test_replies(app_and_seen: tuple[FlaskClient, list[str]], case: HttpCase) -> None:
    check_reply(case, *send(app_and_seen[0], case))


def test_handler_runs_once_per_webhook_id(app_and_seen: tuple[FlaskClient, list[str]]) -> None:
    client, seen = app_and_seen
    case = HTTP_CASES[0]
    assert send(client, case) == (200, b'{"status":"handled"}')
    assert send(client, case) == (200, b'{"status":"duplicate"}')
    assert seen == ["message.received"]


def test_no_trailing_slash_redirect(app_and_seen: tuple[FlaskClient, list[str]]) -> None:
    status, _ = send(app_and_seen[0], HTTP_CASES[0], URL + "/")
    assert status == 404


def test_two_routers_in_one_app() -> None:
    app = Flask(__name__)
    first, first_seen = adapter_router()
    second, second_seen = adapter_router()
    app.register_blueprint(webhook_blueprint(first, "/a"))
    app.register_blueprint(webhook_blueprint(second, "/b", name="second"))
    client = app.test_client()
    assert send(client, HTTP_CASES[0], "/b")[0] == 200
    assert (first_seen, second_seen) == ([], ["message.received"])
