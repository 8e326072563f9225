"""``[listen] metrics`` on a real ``serve`` with two workers, scraped while mail flows.

Real clients (smtplib, imaplib) send and read mail; the webhook dispatcher
(a process of its own) POSTs to an HTTP server of the test's; the outbound
MTA tries a remote MX where nothing listens. Every counter must move by
exactly what the test did, whichever worker handled what, and every scrape
(any worker may answer) must say the same.
"""

from __future__ import annotations

import http.server
import imaplib
import os
import pwd
import shutil
import smtplib
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from mailstead import metrics
from mailstead.config import load_config
from mailstead.testing.dns import DNSServer
from tests.e2e.harness import client_tls_context, free_port
from tests.e2e.process import ALL_ROLES, ServerProcess

SECRET = "whsec_bWFpbHN0ZWFkIHRlc3Qga2V5LCAzMiBieXRlcyBvayE="
ZONES = {
    "remote.test": {"MX": [(10, "mx.remote.test")]},
    "mx.remote.test": {"A": ["127.0.0.9"]},  # nothing listens there
}
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


class _Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def hook() -> Iterator[str]:
    """A webhook endpoint on 127.0.0.1 answering 204 to every POST."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()


@pytest.fixture
def server(tmp_path: Path, hook: str) -> Iterator[ServerProcess]:
    with DNSServer(ZONES) as (dns_host, dns_port):
        process = ServerProcess(
            tmp_path,
            workers=2,
            roles=ALL_ROLES,
            delivery=f'dns_servers = ["{dns_host}:{dns_port}"]\nsmtp_port = {free_port()}\n',
            extra=(
                '[http_client]\nallow_networks = ["127.0.0.0/8"]\n'
                f'[[webhooks]]\nurl = "{hook}"\nevents = ["message.received"]\n'
                f'secret = "{SECRET}"\n'
            ),
        )
        with with_metrics(process):
            yield process


def with_metrics(process: ServerProcess) -> ServerProcess:
    """``process`` with ``[listen] metrics`` on a free port (the harness writes no such key)."""
    port = free_port()
    path = process.config_path
    path.write_text(
        path.read_text().replace("[listen]\n", f'[listen]\nmetrics = ["127.0.0.1:{port}"]\n')
    )
    process.config = process.handle.config = load_config(path)
    process.ports["metrics"] = port
    return process


def scrape(server: ServerProcess) -> Samples:
    url = f"http://127.0.0.1:{server.ports['metrics']}/metrics"
    with urllib.request.urlopen(url, timeout=10) as answer:
        assert answer.status == 200
        assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = answer.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def get(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def wait_for(
    server: ServerProcess, done: Callable[[Samples], bool], timeout: float = 30.0
) -> Samples:
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(server)
        if done(samples):
            return samples
        assert time.monotonic() < deadline, "the metrics did not get there in time"
        time.sleep(0.1)


def started(samples: Samples, protocol: str) -> float:
    return get(samples, "mailstead_sessions_started_total", protocol=protocol)


def send(server: ServerProcess, to: list[str]) -> None:
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as smtp:
        message = b"From: carol@remote.test\r\nSubject: counted\r\n\r\nhello\r\n"
        smtp.sendmail("carol@remote.test", to, message)


def test_counters_move_by_exactly_what_the_mail_did(server: ServerProcess) -> None:
    # serve's start-up probe opened one connection per mail port: once they
    # are counted and closed, that is the baseline.
    before = wait_for(
        server,
        lambda s: (
            all(started(s, p) == 1 for p in metrics.PROTOCOLS)
            and all(get(s, "mailstead_sessions", protocol=p) == 0 for p in metrics.PROTOCOLS)
        ),
    )

    # C: 7 SMTP connections, one message each: 6 to alice, 1 to an alias of two.
    for _ in range(6):
        send(server, ["alice@example.test"])
    send(server, ["team@example.test"])

    # C: submission with STARTTLS: a wrong password, then alice sends to a
    #    local and a remote recipient.
    with smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=10) as smtp:
        smtp.starttls(context=client_tls_context())
        with pytest.raises(smtplib.SMTPAuthenticationError):
            smtp.login("alice@example.test", "wrong")
        smtp.login("alice@example.test", "alice-pw")
        smtp.sendmail(
            "alice@example.test",
            ["bob@example.test", "dave@remote.test"],
            b"From: alice@example.test\r\nSubject: out\r\n\r\nbye\r\n",
        )

    # The remote MX refuses the connection: deferred once (the retry is 1m away).
    after = wait_for(
        server,
        lambda s: (
            get(s, "mailstead_messages_deferred_total", transport="smtp", domain="example.test")
            == 1
            and get(s, "mailstead_webhook_deliveries_total", outcome="delivered")
            - get(before, "mailstead_webhook_deliveries_total", outcome="delivered")
            == 9
        ),
    )

    def moved(name: str, **labels: str) -> float:
        return get(after, name, **labels) - get(before, name, **labels)

    assert moved("mailstead_messages_received_total", listener="smtp", domain="example.test") == 7
    assert (
        moved("mailstead_messages_received_total", listener="submission", domain="example.test")
        == 2
    )
    assert (
        moved("mailstead_messages_delivered_total", transport="local", domain="example.test") == 9
    )
    assert moved("mailstead_local_delivery_seconds_count") == 8
    assert moved("mailstead_messages_bounced_total", transport="smtp", domain="example.test") == 0
    assert started(after, "smtp") - started(before, "smtp") == 7
    assert started(after, "submission") - started(before, "submission") == 1
    # smtplib's login tries PLAIN, then LOGIN, with the wrong password: two failures.
    assert moved("mailstead_auth_failures_total", protocol="submission", reason="invalid") == 2
    assert moved("mailstead_tls_handshakes_total", protocol="submission", version="TLSv1.3") == 1
    # One message.received per mailbox copy, each POSTed once with a 204.
    assert moved("mailstead_webhook_attempts_total", result="2xx") == 9
    assert get(after, "mailstead_queue_messages") == 1
    assert get(after, "mailstead_queue_recipients", state="deferred") == 1
    assert get(after, "mailstead_queue_oldest_age_seconds") > 0

    # C: an IMAPS session stays open while the scrapes look at it.
    imap = imaplib.IMAP4_SSL("127.0.0.1", server.ports["imaps"], ssl_context=client_tls_context())
    try:
        imap.login("alice@example.test", "alice-pw")
        status, data = imap.select("INBOX")
        assert (status, data) == ("OK", [b"7"])
        during = wait_for(server, lambda s: get(s, "mailstead_sessions", protocol="imaps") == 1)
        assert metrics.sessions_by_protocol(server.config)["imaps"] == 1
        assert (
            get(during, "mailstead_tls_handshakes_total", protocol="imaps", version="TLSv1.3") == 1
        )
    finally:
        imap.logout()
    wait_for(server, lambda s: get(s, "mailstead_sessions", protocol="imaps") == 0)
    assert metrics.sessions_by_protocol(server.config)["imaps"] == 0

    # The dispatcher counted the webhooks, a mail worker the mail: files of
    # two processes at least (of three) were added up.
    assert len(list(metrics.metrics_dir(server.config).glob("counter_*.db"))) >= 2
    # Whichever worker answers, the totals are the same.
    counted = [
        get(
            scrape(server),
            "mailstead_messages_received_total",
            listener="smtp",
            domain="example.test",
        )
        for _ in range(6)
    ]
    assert (
        counted
        == [get(after, "mailstead_messages_received_total", listener="smtp", domain="example.test")]
        * 6
    )


def test_the_real_listener_answers_only_get_metrics(server: ServerProcess) -> None:
    with pytest.raises(urllib.error.HTTPError) as not_found:
        urllib.request.urlopen(f"http://127.0.0.1:{server.ports['metrics']}/", timeout=10)
    assert not_found.value.code == 404
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.ports['metrics']}/metrics", data=b"x", method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as not_allowed:
        urllib.request.urlopen(request, timeout=10)
    assert not_allowed.value.code == 405


@pytest.mark.skipif(os.geteuid() != 0, reason="serve drops root only when started as root")
def test_workers_that_left_root_count_into_the_directory_root_made() -> None:
    root = Path(tempfile.mkdtemp(prefix="mailstead-run-", dir="/tmp"))
    root.chmod(0o755)  # the [run] account must reach its data dir
    try:
        extra = '[run]\nuser = "nobody"\ngroup = "nogroup"\n'
        with with_metrics(ServerProcess(root, workers=2, extra=extra, roles=ALL_ROLES)) as server:
            wait_for(server, lambda s: started(s, "imap") == 1)
            # C: IMAP, STARTTLS, a login; the session stays open for the scrape.
            imap = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=10)
            try:
                imap.starttls(client_tls_context())
                imap.login("alice@example.test", "alice-pw")
                during = wait_for(
                    server, lambda s: get(s, "mailstead_sessions", protocol="imap") == 1
                )
                assert metrics.sessions_by_protocol(server.config)["imap"] == 1
            finally:
                imap.logout()
            assert started(during, "imap") == 2
            assert (
                get(during, "mailstead_tls_handshakes_total", protocol="imap", version="TLSv1.3")
                == 1
            )
            directory = metrics.metrics_dir(server.config)
            nobody = pwd.getpwnam("nobody").pw_uid
            assert {p.stat().st_uid for p in [directory, *directory.iterdir()]} == {nobody}
    finally:
        shutil.rmtree(root)
