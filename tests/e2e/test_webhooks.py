"""Webhooks end to end: real mail in, signed POSTs out to a receiver on loopback (issue 13).

The receiver is a real HTTP server on 127.0.0.1 in the test that hands every
request to :class:`mailstead.webhooks.receiver.WebhookRouter`, the library
an application would use: it verifies the signature and records the event.

The "500, then no answer, then 200" sequence of the issue is covered at the
dispatcher level (tests/webhooks/test_dispatcher.py, simulated time): the
server's attempt and read timeouts (``WebhookLimits``) cannot be set
through the harness, and a silent endpoint costs a 30 s read timeout and a
5 min retry here. The part that fits in real time, a 500 and then a 200
on the ~4 s first retry, is tested below.
"""

from __future__ import annotations

import json
import smtplib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from email.utils import formataddr
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from mailstead.cli import main
from mailstead.config import load_config
from mailstead.limits import WebhookLimits
from mailstead.testing.dns import DNSServer, Zones
from mailstead.webhooks.receiver import Event, WebhookRouter
from mailstead.webhooks.signing import verify
from tests.e2e.harness import (
    ServerHandle,
    client_tls_context,
    free_port,
    running_config,
    write_config,
)
from tests.e2e.process import ServerProcess, children

SECRET = "whsec_bWFpbHN0ZWFkIHRlc3Qga2V5LCAzMiBieXRlcyBvayE="
# How long a test waits for an event to arrive.
ARRIVAL = 15.0


class Receiver:
    """An application's webhook endpoint on 127.0.0.1.

    ``answers`` scripts the status of successive requests (then 200 for
    the rest); a 200 goes through the router, whose reply is sent. Every
    request is recorded as (headers, body, time), every handled event too.
    """

    def __init__(self, port: int = 0, answers: list[int] | None = None) -> None:
        self.answers = list(answers or [])
        self.requests: list[tuple[dict[str, str], bytes, float]] = []
        self.events: list[Event] = []
        self.router = WebhookRouter(SECRET)
        self.router.on("*")(self.events.append)
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                with outer._lock:
                    outer.requests.append((headers, body, time.time()))
                    status = outer.answers.pop(0) if outer.answers else 200
                reply = b'{"error":"down"}'
                if status == 200:
                    answer = outer.router.reply(body, headers)
                    status, reply = answer.status, answer.body
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks"

    def of_type(self, event_type: str) -> list[Event]:
        return [e for e in self.events if e.type == event_type]

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


class Silent:
    """Accepts TCP connections on 127.0.0.1 and never answers a byte."""

    def __init__(self, port: int = 0) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(128)
        self.held: list[socket.socket] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/hooks"

    def _accept(self) -> None:
        self.sock.settimeout(0.1)
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.held.append(conn)

    def __enter__(self) -> Silent:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.thread.join(5)
        for conn in self.held:
            conn.close()
        self.sock.close()


def webhook_config(url: str, events: str = '["message.*"]') -> str:
    return (
        '[http_client]\nallow_networks = ["127.0.0.0/8"]\n'
        f'[[webhooks]]\nurl = "{url}"\nevents = {events}\nsecret = "{SECRET}"\n'
    )


def wait_for(condition: Callable[[], bool], timeout: float = ARRIVAL) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s")
        time.sleep(0.02)


@contextmanager
def server_for(
    root: Path, url: str, *, delivery: str = "", outbound: bool = False
) -> Iterator[tuple[ServerHandle, Path]]:
    path = write_config(root, delivery=delivery, extra=webhook_config(url))
    with running_config(load_config(path), outbound=outbound) as handle:
        yield handle, path


def rich_message() -> bytes:
    msg = EmailMessage()
    msg["From"] = formataddr(("Zoë Example", "zoe@sender.test"))
    msg["To"] = formataddr(("Alice", "alice@example.test"))
    msg["Subject"] = "Grüße aus Köln – 日本語"  # encoded as RFC 2047 words below
    msg["Message-ID"] = "<rich-1@sender.test>"
    msg.set_content("Hallo Alice, wie geht's?\n")
    msg.add_alternative("<p>Hallo <b>Alice</b></p>\n", subtype="html")
    msg.add_attachment(
        b"%PDF-1.4 fake\n" * 10,
        maintype="application",
        subtype="pdf",
        filename="report.pdf",
    )
    raw = msg.as_bytes()
    assert b"Subject: =?utf-8?" in raw  # the header really is in RFC 2047 form
    return raw


# -- a. what a receiver gets ------------------------------------------------------------


def test_message_received_arrives_signed_with_everything(tmp_path: Path) -> None:
    with Receiver() as receiver, server_for(tmp_path, receiver.url) as (server, _):
        with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as smtp:
            smtp.ehlo("client.sender.test")
            smtp.sendmail("zoe@sender.test", ["alice@example.test"], rich_message())
        wait_for(lambda: bool(receiver.of_type("message.received")))

    (event,) = receiver.of_type("message.received")
    payload = event.payload
    assert payload["account"] == "alice@example.test" and payload["domain"] == "example.test"
    assert payload["version"] == 1 and event.id.startswith("evt_")
    data = event.data
    assert data["mailbox"] == "alice@example.test" and data["folder"] == "INBOX"
    assert data["envelope"] == {"mail_from": "zoe@sender.test", "rcpt_to": "alice@example.test"}
    assert data["client"]["ip"] == "127.0.0.1"
    assert data["client"]["helo"] == "client.sender.test"
    assert data["client"]["user"] is None
    message = data["message"]
    headers = message["headers"]
    assert headers["subject"] == "Grüße aus Köln – 日本語"
    assert headers["from"] == [{"name": "Zoë Example", "address": "zoe@sender.test"}]
    assert headers["to"] == [{"name": "Alice", "address": "alice@example.test"}]
    assert headers["message_id"] == "<rich-1@sender.test>"
    assert message["text"] == "Hallo Alice, wie geht's?\n"
    assert message["html"] == "<p>Hallo <b>Alice</b></p>\n"
    assert not (message["text_truncated"] or message["html_truncated"])
    assert not message["headers_truncated"]
    (attachment,) = message["attachments"]
    assert attachment["filename"] == "report.pdf"
    assert attachment["content_type"] == "application/pdf"
    assert attachment["size"] == len(b"%PDF-1.4 fake\n" * 10)
    assert message["size"] > 0

    ((headers_sent, body, _),) = receiver.requests
    verify(SECRET, body, headers_sent)
    assert headers_sent["content-type"] == "application/json"


ZONES: Zones = {
    "remote.test": {"MX": [(10, "mx.remote.test")]},
    "mx.remote.test": {"A": ["127.0.0.9"]},  # nothing listens there: the attempt defers
}


def test_submitted_mail_reports_queued_and_deferred(tmp_path: Path) -> None:
    closed_port = free_port()
    with (
        Receiver() as receiver,
        DNSServer(ZONES) as (dns_host, dns_port),
        server_for(
            tmp_path,
            receiver.url,
            delivery=f'dns_servers = ["{dns_host}:{dns_port}"]\nsmtp_port = {closed_port}\n',
            outbound=True,
        ) as (server, _),
    ):
        with smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=10) as smtp:
            smtp.starttls(context=client_tls_context())
            smtp.login("alice@example.test", "alice-pw")
            smtp.sendmail(
                "alice@example.test",
                ["bob@remote.test"],
                b"From: alice@example.test\r\nTo: bob@remote.test\r\nSubject: out\r\n\r\nhi\r\n",
            )
        wait_for(
            lambda: (
                bool(receiver.of_type("message.queued"))
                and bool(
                    receiver.of_type("message.deferred") or receiver.of_type("message.delivered")
                )
            )
        )

    (queued,) = receiver.of_type("message.queued")
    assert queued.payload["account"] == "alice@example.test"
    assert queued.data["mail_from"] == "alice@example.test"
    assert queued.data["rcpt_to"] == ["bob@remote.test"]
    outcome = (receiver.of_type("message.deferred") or receiver.of_type("message.delivered"))[0]
    assert outcome.data["queue_id"] == queued.data["queue_id"]
    assert outcome.data["recipient"] == "bob@remote.test"
    if outcome.type == "message.deferred":
        assert outcome.data["attempt"] == 1 and outcome.data["error"]
        assert outcome.data["next_attempt"]
    # Each one signed, each under its own webhook-id.
    ids = []
    for headers, body, _ in receiver.requests:
        verify(SECRET, body, headers)
        ids.append(headers["webhook-id"])
    assert len(ids) == len(set(ids)) == len(receiver.events)
    assert {e.webhook_id for e in receiver.events} == set(ids)


def cli(config_path: Path, *args: str) -> str:
    result = CliRunner().invoke(main, ["--config", str(config_path), "webhook", *args])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_endpoints_changed_by_the_cli_apply_to_a_running_server(tmp_path: Path) -> None:
    with (
        Receiver() as configured,
        Receiver() as added,
        server_for(tmp_path, configured.url) as (server, config_path),
    ):
        cli(config_path, "add", added.url, "--events", "message.received", "--secret", SECRET)
        time.sleep(1.5)  # the server re-reads the endpoints every second
        with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as smtp:
            smtp.sendmail("zoe@sender.test", ["alice@example.test"], b"Subject: 1\r\n\r\nx\r\n")
        wait_for(lambda: bool(configured.events) and bool(added.events))

        (listed,) = [
            e for e in json.loads(cli(config_path, "list", "--json")) if e["source"] == "config"
        ]
        cli(config_path, "disable", listed["id"])
        time.sleep(1.5)
        with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as smtp:
            smtp.sendmail("zoe@sender.test", ["alice@example.test"], b"Subject: 2\r\n\r\nx\r\n")
        wait_for(lambda: len(added.events) == 2)
        time.sleep(0.5)
    assert len(configured.events) == 1
    assert configured.events[0].id == added.events[0].id  # one event, one delivery per endpoint
    assert configured.events[0].webhook_id != added.events[0].webhook_id


# -- b. retried: same webhook-id, fresh signature ------------------------------------------


def test_a_500_is_retried_under_the_same_id_with_a_fresh_signature(tmp_path: Path) -> None:
    with Receiver(answers=[500]) as receiver, server_for(tmp_path, receiver.url) as (server, _):
        with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as smtp:
            smtp.sendmail("zoe@sender.test", ["bob@example.test"], b"Subject: retry\r\n\r\nx\r\n")
        wait_for(lambda: bool(receiver.events))  # the first retry comes within 5 s

    (first, _, at_first), (second, body, at_second) = receiver.requests
    assert first["webhook-id"] == second["webhook-id"] == receiver.events[0].webhook_id
    assert 3.5 < at_second - at_first < 10
    assert first["webhook-timestamp"] != second["webhook-timestamp"]
    assert first["webhook-signature"] != second["webhook-signature"]
    verify(SECRET, body, second)


# -- c. kill -9 with events pending --------------------------------------------------------


def deliveries(proc: ServerProcess) -> list[dict[str, Any]]:
    """``mailstead webhook deliveries --json``, as the operator would run it."""
    result = CliRunner().invoke(
        main, ["--config", str(proc.config_path), "webhook", "deliveries", "--json"]
    )
    assert result.exit_code == 0, result.output
    listed: list[dict[str, Any]] = json.loads(result.stdout)
    return listed


def send(port: int, count: int) -> None:
    """``count`` messages to alice on one connection, each answered 250."""
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        smtp.ehlo("client.sender.test")
        for n in range(count):
            assert smtp.mail("zoe@sender.test")[0] == 250
            assert smtp.rcpt("alice@example.test")[0] == 250
            assert smtp.data(f"Subject: {n}\r\n\r\nx\r\n".encode())[0] == 250


def wait_for_events(proc: ServerProcess, receiver: Receiver, count: int, timeout: float) -> None:
    try:
        wait_for(lambda: len({e.id for e in receiver.events}) >= count, timeout=timeout)
    except AssertionError:
        raise AssertionError(f"{deliveries(proc)}\n{proc.log_tail(60)}") from None


def test_events_pending_at_a_kill_are_delivered_after_restart(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there yet: every first attempt fails
    url = f"http://127.0.0.1:{port}/hooks"
    proc = ServerProcess(tmp_path, extra=webhook_config(url, '["message.received"]'))
    with proc:
        send(proc.ports["smtp"], 5)
        # Killed between attempts (the first retry is ~4 s away); a kill
        # during a POST is the next test.
        wait_for(lambda: [d["attempts"] for d in deliveries(proc)] == [1] * 5)
        proc.kill()
        with Receiver(port) as receiver:
            proc.start()
            wait_for_events(proc, receiver, 5, timeout=30)
            proc.stop()

    assert {e.type for e in receiver.events} == {"message.received"}
    subjects = {e.data["message"]["headers"]["subject"] for e in receiver.events}
    assert subjects == {"0", "1", "2", "3", "4"}
    assert len({e.id for e in receiver.events}) == 5


def test_posts_come_from_a_dispatcher_process_of_lower_priority(tmp_path: Path) -> None:
    with Receiver() as receiver:
        proc = ServerProcess(tmp_path, workers=2, extra=webhook_config(receiver.url))
        with proc:
            send(proc.ports["smtp"], 1)
            wait_for_events(proc, receiver, 1, timeout=20)
            assert proc.proc is not None
            niceness = sorted(children(proc.proc.pid).values())
            proc.stop()
    # Two mail workers, and the dispatcher that the one accepting the
    # message woke (its POST is the event the receiver got).
    assert niceness == [0, 0, WebhookLimits().dispatcher_niceness]


def test_a_delivery_in_flight_at_a_kill_is_retried_soon_after_restart(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/hooks"
    proc = ServerProcess(tmp_path, extra=webhook_config(url, '["message.received"]'))
    with proc:
        with Silent(port) as silent:
            send(proc.ports["smtp"], 1)
            wait_for(lambda: bool(silent.held))  # the POST is in flight, unanswered
            proc.kill()
        with Receiver(port) as receiver:
            proc.start()
            wait_for_events(proc, receiver, 1, timeout=20)
            proc.stop()


# -- d. hostile mail ------------------------------------------------------------------------


def test_hostile_mail_gives_bounded_valid_json(tmp_path: Path) -> None:
    recipients = ",\r\n ".join(f"r{n}@crowd.test" for n in range(10_000))
    content = (
        b"Subject: bad \xff\xfe utf-8 \xc3\x28 here\r\n"
        b"From: Mallory <mallory@sender.test>\r\n"
        b"To: " + recipients.encode() + b"\r\n"
        b"X-Huge: " + b"h" * (1024 * 1024) + b"\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"\r\n"
        b"body \xff\xfe\xc3\x28 invalid\r\n"
    )
    with Receiver() as receiver, server_for(tmp_path, receiver.url) as (server, _):
        with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=30) as smtp:
            smtp.sendmail("mallory@sender.test", ["alice@example.test"], content)
        wait_for(lambda: bool(receiver.events))

    ((headers, body, _),) = receiver.requests
    verify(SECRET, body, headers)
    assert len(body) < 2 * 1024 * 1024
    payload = json.loads(body.decode("utf-8"))  # strict UTF-8, valid JSON
    message = payload["data"]["message"]
    assert message["headers_truncated"] is True
    assert len(message["headers"]["to"]) < 10_000
    assert message["headers"]["subject"].startswith("bad \ufffd")
    assert "\ufffd" in message["text"] and message["text"].startswith("body ")
    assert message["size"] > 1024 * 1024


# -- e. a dead endpoint never slows mail ------------------------------------------------------


def test_an_endpoint_that_never_answers_does_not_hold_up_mail(tmp_path: Path) -> None:
    with Silent() as silent, server_for(tmp_path, silent.url) as (server, config_path):
        url = silent.url
        replies: list[tuple[int, bytes]] = []
        with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as smtp:
            smtp.ehlo("client.sender.test")
            for n in range(20):
                assert smtp.mail("zoe@sender.test")[0] == 250
                assert smtp.rcpt("alice@example.test")[0] == 250
                replies.append(smtp.data(f"Subject: {n}\r\n\r\nx\r\n".encode()))
        assert [code for code, _ in replies] == [250] * 20
        assert len(server.new_messages("alice@example.test")) == 20
        wait_for(lambda: bool(silent.held))  # the dispatcher is stuck on it meanwhile
        assert len(silent.held) <= WebhookLimits().per_endpoint

        result = CliRunner().invoke(
            main, ["--config", str(config_path), "webhook", "deliveries", "--json"]
        )
        assert result.exit_code == 0, result.output
        deliveries: list[dict[str, Any]] = json.loads(result.stdout)
    assert len(deliveries) == 20
    assert {d["state"] for d in deliveries} == {"pending"}
    assert {d["event_type"] for d in deliveries} == {"message.received"}
    assert {d["url"] for d in deliveries} == {url}
