"""`mailstead webhook …`: endpoints and deliveries as an operator manages them (issue 13)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import Result

from mailstead.config import load_config
from mailstead.events import Event
from mailstead.webhooks.endpoints import ROTATION_GRACE, config_endpoint_id
from mailstead.webhooks.outbox import Attempted, Outbox
from mailstead.webhooks.signing import (
    SignatureMismatchError,
    generate_secret,
    sign_headers,
    verify,
)
from tests.cli.runner import run

SECRET = "whsec_bWFpbHN0ZWFkIHRlc3Qga2V5LCAzMiBieXRlcyBvayE="


def one_line_error(result: Result) -> str:
    """The stderr of a failed command, checked to be one ``mailstead:`` line."""
    assert result.exit_code != 0, result.output
    assert result.stderr.startswith("mailstead: "), result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.output
    return result.stderr


def add(config: Path, *args: str) -> str:
    """``webhook add`` and the new endpoint's id."""
    result = run(config, "webhook", "add", *args)
    assert result.exit_code == 0, result.output
    first = result.stdout.splitlines()[0]
    assert first.startswith("added ep_")
    return first.split()[1].rstrip(":")


def allow_loopback(config: Path) -> None:
    text = config.read_text()
    assert "allow_networks = []" in text
    config.write_text(text.replace("allow_networks = []", 'allow_networks = ["127.0.0.0/8"]', 1))


def outbox_of(config: Path, clock: float | None = None) -> Outbox:
    path = load_config(config).data_dir / "queue.sqlite3"
    return Outbox(path) if clock is None else Outbox(path, clock=lambda: clock)


class Endpoint:
    """An HTTP server on 127.0.0.1 that answers every POST with ``status``; records bodies."""

    def __init__(self, status: int) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                outer.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks"

    def __enter__(self) -> Endpoint:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def endpoint_200() -> Iterator[Endpoint]:
    with Endpoint(200) as endpoint:
        yield endpoint


# -- add ----------------------------------------------------------------------------


def test_add_prints_the_id_and_a_new_secret(config: Path) -> None:
    result = run(config, "webhook", "add", "https://app.example/hooks", "--events", "message.*")
    assert result.exit_code == 0, result.output
    added, secret = result.stdout.splitlines()
    assert added.startswith("added ep_") and added.endswith(": https://app.example/hooks")
    assert secret.startswith("secret whsec_")
    endpoint_id = added.split()[1].rstrip(":")
    with outbox_of(config) as outbox:
        endpoint = outbox.endpoints.get(endpoint_id)
    assert endpoint.events == ("message.*",)
    assert endpoint.secrets[0][0] == secret.split()[1]
    assert endpoint.source == "cli" and endpoint.enabled


def test_add_keeps_a_given_secret_and_several_patterns(config: Path) -> None:
    endpoint_id = add(
        config, "https://app.example/h", "--events", "message.received, auth.*", "--secret", SECRET
    )
    with outbox_of(config) as outbox:
        endpoint = outbox.endpoints.get(endpoint_id)
    assert endpoint.events == ("message.received", "auth.*")
    assert endpoint.secrets == ((SECRET, None),)


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (("https://app.example/h", "--events", "nope.*"), "'nope.*' matches no event type"),
        (("https://app.example/h", "--events", "Message.*"), "invalid event pattern 'Message.*'"),
        (("https://app.example/h", "--events", "message.*,bogus"), "'bogus' matches no event"),
        (("https://app.example/h", "--events", "message received"), "invalid event pattern"),
        (("https://app.example/h", "--events", " , "), "--events needs at least one pattern"),
        (("ftp://app.example/h",), "expected an http:// or https:// URL"),
        (("app.example/h",), "expected an http:// or https:// URL"),
        (("https:///nohost",), "expected an http:// or https:// URL"),
        (("https://app.example/\x1b[31m",), "expected an http:// or https:// URL"),
        (("https://app.example/h", "--secret", "whsec_xx"), "--secret: "),
        (("https://app.example/h", "--secret", "not-a-secret"), "--secret: "),
        (("https://app.example/h", "--secret", "whsec_!!!!"), "--secret: "),
    ],
)
def test_add_refuses_bad_input_in_one_line(
    config: Path, args: tuple[str, ...], reason: str
) -> None:
    error = one_line_error(run(config, "webhook", "add", *args))
    assert reason in error
    assert "\x1b" not in error
    assert json.loads(run(config, "webhook", "list", "--json").stdout) == []


# -- list ---------------------------------------------------------------------------


def test_list_text_and_json_have_a_stable_shape(config: Path) -> None:
    first = add(config, "https://a.example/h", "--events", "message.*", "--secret", SECRET)
    second = add(
        config, "https://b.example/h", "--domain", "Example.TEST", "--account", "A@example.test",
        "--ordered",
    )  # fmt: skip

    text = run(config, "webhook", "list")
    assert text.exit_code == 0, text.output
    assert text.stdout.splitlines() == [
        f"{first}  enabled  https://a.example/h  events=message.*  [cli]",
        f"{second}  enabled  https://b.example/h  events=*"
        " domain=example.test account=a@example.test ordered  [cli]",
    ]
    assert "whsec_" not in text.stdout

    listed = run(config, "webhook", "list", "--json")
    assert listed.exit_code == 0, listed.output
    assert listed.stdout.count("\n") == 1
    assert json.loads(listed.stdout) == [
        {
            "id": first,
            "url": "https://a.example/h",
            "events": ["message.*"],
            "domain": None,
            "account": None,
            "ordered": False,
            "enabled": True,
            "disabled_reason": None,
            "source": "cli",
        },
        {
            "id": second,
            "url": "https://b.example/h",
            "events": ["*"],
            "domain": "example.test",
            "account": "a@example.test",
            "ordered": True,
            "enabled": True,
            "disabled_reason": None,
            "source": "cli",
        },
    ]


def test_list_show_secrets(config: Path) -> None:
    endpoint_id = add(config, "https://a.example/h", "--secret", SECRET)
    text = run(config, "webhook", "list", "--show-secrets")
    assert text.exit_code == 0, text.output
    assert f"  secret {SECRET}" in text.stdout.splitlines()
    (item,) = json.loads(run(config, "webhook", "list", "--json", "--show-secrets").stdout)
    assert item["id"] == endpoint_id and item["secrets"] == [SECRET]


def test_list_is_empty_on_a_fresh_install(config: Path) -> None:
    assert run(config, "webhook", "list").stdout == ""
    assert run(config, "webhook", "list", "--json").stdout == "[]\n"


# -- config endpoints ---------------------------------------------------------------


def test_config_endpoints_are_listed_and_cannot_be_deleted(config: Path) -> None:
    with config.open("a") as f:
        f.write(
            '\n[[webhooks]]\nurl = "https://app.example/cfg"\nevents = ["message.*", "auth.*"]\n'
            f'secret = "{SECRET}"\n'
            '\n[[webhooks]]\nurl = "https://other.example/cfg"\n'
        )
    cli_id = add(config, "https://app.example/cli")
    listed = json.loads(run(config, "webhook", "list", "--json", "--show-secrets").stdout)
    by_url = {item["url"]: item for item in listed}
    configured = by_url["https://app.example/cfg"]
    assert configured["source"] == "config"
    assert configured["id"] == config_endpoint_id("https://app.example/cfg")
    assert configured["events"] == ["message.*", "auth.*"]
    assert configured["secrets"] == [SECRET]
    # No secret in the file: one is made once and kept.
    made = by_url["https://other.example/cfg"]
    assert made["events"] == ["*"] and made["secrets"][0].startswith("whsec_")
    again = json.loads(run(config, "webhook", "list", "--json", "--show-secrets").stdout)
    assert {i["url"]: i for i in again}["https://other.example/cfg"]["secrets"] == made["secrets"]
    assert by_url["https://app.example/cli"]["source"] == "cli"

    text = run(config, "webhook", "list").stdout
    assert f"{configured['id']}  enabled  https://app.example/cfg" in text
    assert text.count("[config]") == 2 and text.count("[cli]") == 1

    error = one_line_error(run(config, "webhook", "del", configured["id"]))
    assert "[[webhooks]]" in error and "config" in error
    assert len(json.loads(run(config, "webhook", "list", "--json").stdout)) == 3
    assert run(config, "webhook", "del", cli_id).exit_code == 0


@pytest.mark.parametrize(
    ("secret", "reason"),
    [
        ("whsec_xx", "secret"),
        ("whsec_!!!notbase64!!!", "secret"),
        ("plain-secret", 'expected a Standard Webhooks secret "whsec_<base64>"'),
        ("", "must not be empty"),
    ],
)
def test_a_bad_config_secret_is_a_one_line_error(config: Path, secret: str, reason: str) -> None:
    with config.open("a") as f:
        f.write(f'\n[[webhooks]]\nurl = "https://app.example/cfg"\nsecret = "{secret}"\n')
    for command in (("list",), ("deliveries",), ("add", "https://x.example/")):
        error = one_line_error(run(config, "webhook", *command))
        assert reason in error
        assert "webhooks" in error


# -- del, enable, disable -------------------------------------------------------------


def test_del_removes_the_endpoint(config: Path) -> None:
    endpoint_id = add(config, "https://a.example/h")
    result = run(config, "webhook", "del", endpoint_id)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"deleted {endpoint_id}\n"
    assert json.loads(run(config, "webhook", "list", "--json").stdout) == []
    assert f"no webhook endpoint '{endpoint_id}'" in one_line_error(
        run(config, "webhook", "del", endpoint_id)
    )


def test_disable_then_enable(config: Path) -> None:
    endpoint_id = add(config, "https://a.example/h")
    result = run(config, "webhook", "disable", endpoint_id)
    assert result.exit_code == 0 and result.stdout == f"disabled {endpoint_id}\n"
    (item,) = json.loads(run(config, "webhook", "list", "--json").stdout)
    assert item["enabled"] is False and item["disabled_reason"] == "by the operator"
    assert "disabled (by the operator)" in run(config, "webhook", "list").stdout
    # Events while disabled are not kept for it.
    with outbox_of(config) as outbox:
        outbox.emit([Event("message.received", {})])
        assert outbox.deliveries() == []

    result = run(config, "webhook", "enable", endpoint_id)
    assert result.exit_code == 0 and result.stdout == f"enabled {endpoint_id}\n"
    (item,) = json.loads(run(config, "webhook", "list", "--json").stdout)
    assert item["enabled"] is True and item["disabled_reason"] is None


@pytest.mark.parametrize("command", ["del", "enable", "disable", "rotate-secret", "test"])
def test_an_unknown_id_is_a_one_line_error(config: Path, command: str) -> None:
    assert "no webhook endpoint 'ep_nope'" in one_line_error(
        run(config, "webhook", command, "ep_nope")
    )


# -- rotate-secret --------------------------------------------------------------------


def test_rotate_secret_signs_with_both_for_24_hours(config: Path) -> None:
    endpoint_id = add(config, "https://a.example/h", "--secret", SECRET)
    before = time.time()
    result = run(config, "webhook", "rotate-secret", endpoint_id)
    assert result.exit_code == 0, result.output
    first, note = result.stdout.splitlines()
    assert first.startswith("secret whsec_") and "24 hours" in note
    new = first.split()[1]
    assert new != SECRET

    with outbox_of(config) as outbox:
        endpoint = outbox.endpoints.get(endpoint_id)
    body = b'{"id":"evt_1","type":"webhook.test"}'
    now = time.time()
    headers = sign_headers(endpoint.signing_secrets(now), "msg_rot", body, int(now))
    assert len(headers["webhook-signature"].split()) == 2
    # A receiver still on the old secret and one already on the new both accept.
    for secret in (SECRET, new):
        assert verify(secret, body, headers, now=now).msg_id == "msg_rot"
    with pytest.raises(SignatureMismatchError):
        verify(generate_secret(), body, headers, now=now)

    # Just before the grace runs out, both; just after it, the new one alone.
    almost = before + ROTATION_GRACE - 60
    assert endpoint.signing_secrets(almost) == [new, SECRET]
    later = now + ROTATION_GRACE + 60
    assert endpoint.signing_secrets(later) == [new]
    late = sign_headers(endpoint.signing_secrets(later), "msg_late", body, int(later))
    assert verify(new, body, late, now=later).msg_id == "msg_late"
    with pytest.raises(SignatureMismatchError):
        verify(SECRET, body, late, now=later)

    listed = run(config, "webhook", "list", "--show-secrets").stdout
    assert f"  secret {new}" in listed.splitlines()
    assert any(line.startswith(f"  secret {SECRET} (until ") for line in listed.splitlines())


# -- test -----------------------------------------------------------------------------


def test_test_posts_a_signed_event_and_prints_the_answer(
    config: Path, endpoint_200: Endpoint
) -> None:
    allow_loopback(config)
    endpoint_id = add(config, endpoint_200.url, "--secret", SECRET)
    result = run(config, "webhook", "test", endpoint_id)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"{endpoint_200.url}: HTTP 200 in ")
    assert result.stdout.count("\n") == 1
    ((headers, body),) = endpoint_200.requests
    verify(SECRET, body, headers)
    payload = json.loads(body)
    assert payload["type"] == "webhook.test"
    assert payload["data"] == {"endpoint": endpoint_id, "hostname": "mail.example.test"}
    assert headers["content-type"] == "application/json"
    # A test is not a delivery.
    assert json.loads(run(config, "webhook", "deliveries", "--json").stdout) == []


def test_test_against_an_endpoint_answering_500_fails(config: Path) -> None:
    allow_loopback(config)
    with Endpoint(500) as endpoint:
        endpoint_id = add(config, endpoint.url)
        result = run(config, "webhook", "test", endpoint_id)
    assert len(endpoint.requests) == 1
    assert result.stdout.startswith(f"{endpoint.url}: HTTP 500")
    error = one_line_error(result)
    assert "did not accept the test event" in error and "HTTP 500" in error


def test_test_refuses_loopback_without_allow_networks(config: Path, endpoint_200: Endpoint) -> None:
    endpoint_id = add(config, endpoint_200.url)
    result = run(config, "webhook", "test", endpoint_id)
    error = one_line_error(result)
    assert "loopback" in error
    assert endpoint_200.requests == []


# -- deliveries and replay --------------------------------------------------------------


def _failed_delivery(outbox: Outbox, event: Event, error: str) -> None:
    """Record a final failed attempt for every due delivery of ``event``'s endpoints."""
    outbox.emit([event])
    for endpoint in outbox.endpoints.active():
        for claimed in outbox.claim(endpoint, 10, 60.0):
            outbox.record(
                [
                    Attempted(
                        claimed,
                        status=500,
                        error=error,
                        elapsed=0.01,
                        response="no",
                        next_attempt=None,
                        succeeded=False,
                    )
                ]
            )


@pytest.fixture
def history(config: Path) -> tuple[str, dict[str, str]]:
    """One endpoint; a failed delivery 3 h old, a failed one and a pending one now.

    Returns the endpoint id and the delivery ids by name.
    """
    endpoint_id = add(config, "https://a.example/h", "--events", "message.*")
    three_hours_ago = time.time() - 3 * 3600
    with outbox_of(config, clock=three_hours_ago) as old:
        _failed_delivery(old, Event("message.bounced", {"n": 0}, id="evt_old"), "HTTP 500")
    with outbox_of(config) as outbox:
        _failed_delivery(outbox, Event("message.deferred", {"n": 1}, id="evt_failed"), "HTTP 500")
        outbox.emit([Event("message.received", {"n": 2}, id="evt_pending")])
        ids = {d.event_id: d.id for d in outbox.deliveries()}
    return endpoint_id, {
        "old": ids["evt_old"],
        "failed": ids["evt_failed"],
        "pending": ids["evt_pending"],
    }


def test_deliveries_json_has_a_stable_shape(
    config: Path, history: tuple[str, dict[str, str]]
) -> None:
    endpoint_id, ids = history
    result = run(config, "webhook", "deliveries", "--json")
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)
    assert [d["id"] for d in listed] == [ids["pending"], ids["failed"], ids["old"]]  # newest first
    pending, failed, _ = listed
    assert set(pending) == {
        "id", "event_id", "event_type", "endpoint_id", "url", "state", "attempts",
        "next_attempt", "last_status", "last_error", "created_at", "finished_at",
    }  # fmt: skip
    assert pending["event_id"] == "evt_pending" and pending["event_type"] == "message.received"
    assert pending["endpoint_id"] == endpoint_id and pending["url"] == "https://a.example/h"
    assert (pending["state"], pending["attempts"], pending["finished_at"]) == ("pending", 0, None)
    assert isinstance(pending["next_attempt"], float)
    assert failed["state"] == "failed" and failed["attempts"] == 1
    assert failed["last_status"] == 500 and failed["last_error"] == "HTTP 500"
    assert failed["next_attempt"] is None and isinstance(failed["finished_at"], float)

    text = run(config, "webhook", "deliveries").stdout.splitlines()
    assert len(text) == 3
    assert text[0].startswith(f"{ids['pending']}  pending  ")
    assert "message.received" in text[0] and endpoint_id in text[0]
    assert text[1].startswith(f"{ids['failed']}  failed  ") and text[1].endswith("HTTP 500")


def test_deliveries_failed_and_since(config: Path, history: tuple[str, dict[str, str]]) -> None:
    _, ids = history
    failed = json.loads(run(config, "webhook", "deliveries", "--failed", "--json").stdout)
    assert [d["id"] for d in failed] == [ids["failed"], ids["old"]]
    recent = json.loads(
        run(config, "webhook", "deliveries", "--failed", "--since", "2h", "--json").stdout
    )
    assert [d["id"] for d in recent] == [ids["failed"]]
    every_recent = json.loads(
        run(config, "webhook", "deliveries", "--since", "2h", "--json").stdout
    )
    assert [d["id"] for d in every_recent] == [ids["pending"], ids["failed"]]
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 4 * 3600))
    since_time = json.loads(run(config, "webhook", "deliveries", "--since", stamp, "--json").stdout)
    assert len(since_time) == 3
    limited = json.loads(run(config, "webhook", "deliveries", "--limit", "1", "--json").stdout)
    assert [d["id"] for d in limited] == [ids["pending"]]
    assert "--since: expected a duration" in one_line_error(
        run(config, "webhook", "deliveries", "--since", "yesterday")
    )


def test_replay_one_delivery_gets_a_new_id(
    config: Path, history: tuple[str, dict[str, str]]
) -> None:
    _, ids = history
    result = run(config, "webhook", "replay", ids["failed"])
    assert result.exit_code == 0, result.output
    assert "1 delivery(ies) queued again" in result.stderr
    listed = json.loads(run(config, "webhook", "deliveries", "--json").stdout)
    newest = listed[0]
    assert result.stdout.split() == [newest["id"]]
    assert newest["id"] not in ids.values()
    assert newest["event_id"] == "evt_failed" and newest["state"] == "pending"
    assert newest["attempts"] == 0
    # The original stays as it was, for the record.
    assert {d["id"]: d["state"] for d in listed}[ids["failed"]] == "failed"
    assert "no delivery 'msg_nope'" in one_line_error(run(config, "webhook", "replay", "msg_nope"))


@pytest.mark.usefixtures("history")
def test_replay_failed(config: Path) -> None:
    recent = run(config, "webhook", "replay", "--failed", "--since", "2h")
    assert recent.exit_code == 0, recent.output
    assert "1 delivery(ies) queued again" in recent.stderr
    assert len(recent.stdout.split()) == 1
    pending = [
        d
        for d in json.loads(run(config, "webhook", "deliveries", "--json").stdout)
        if d["state"] == "pending"
    ]
    assert sorted(d["event_id"] for d in pending) == ["evt_failed", "evt_pending"]

    every = run(config, "webhook", "replay", "--failed")
    assert every.exit_code == 0, every.output
    assert "2 delivery(ies) queued again" in every.stderr
    assert len(every.stdout.split()) == 2
    listed = json.loads(run(config, "webhook", "deliveries", "--json").stdout)
    assert len(listed) == 6
    assert sorted(d["event_id"] for d in listed if d["state"] == "pending") == [
        "evt_failed",
        "evt_failed",
        "evt_old",
        "evt_pending",
    ]


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        ((), "give a DELIVERY_ID or --failed"),
        (("msg_1", "--failed"), "give a DELIVERY_ID or --failed"),
        (("msg_1", "--since", "2h"), "--since goes with --failed"),
        (("--failed", "--since", "soon"), "--since: expected a duration"),
    ],
)
def test_replay_usage_errors(config: Path, args: tuple[str, ...], reason: str) -> None:
    assert reason in one_line_error(run(config, "webhook", "replay", *args))


# -- rotation of a config secret, replay without an endpoint ------------------------------------


def test_rotating_a_secret_the_config_names_is_refused(config: Path) -> None:
    # The next serve would put the file's secret back under the receiver.
    with config.open("a") as f:
        f.write(f'\n[[webhooks]]\nurl = "https://app.example/cfg"\nsecret = "{SECRET}"\n')
    endpoint_id = config_endpoint_id("https://app.example/cfg")
    result = run(config, "webhook", "rotate-secret", endpoint_id)
    assert "change it there" in one_line_error(result)
    (item,) = json.loads(run(config, "webhook", "list", "--json", "--show-secrets").stdout)
    assert item["secrets"] == [SECRET]


def test_replay_for_a_deleted_endpoint_is_refused(config: Path) -> None:
    add(config, "https://a.example/h")
    with outbox_of(config) as outbox:
        outbox.emit([Event("message.received", {})])
        (delivery,) = outbox.deliveries()
    assert run(config, "webhook", "del", delivery.endpoint_id).exit_code == 0
    one_line_error(run(config, "webhook", "replay", delivery.id))
    run(config, "webhook", "replay", "--failed")
    listed = json.loads(run(config, "webhook", "deliveries", "--json").stdout)
    assert [d["state"] for d in listed] == ["failed"]
