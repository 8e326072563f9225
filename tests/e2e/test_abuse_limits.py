"""Rate limits, DNSBL and greylisting on the real server, with smtplib: each refuses, then
accepts as configured, and each refusal is a ``message.refused`` webhook event."""

from __future__ import annotations

import smtplib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mailstead.config import load_config
from mailstead.testing.dns import DNSServer, Zones
from tests.e2e.harness import (
    USERS,
    ServerHandle,
    client_tls_context,
    running_config,
    write_config,
)
from tests.e2e.process import ServerProcess
from tests.e2e.test_webhooks import Receiver, wait_for, webhook_config

ALICE = "alice@example.test"
BOB = "bob@example.test"
MESSAGE = b"From: someone@sender.test\r\nTo: bob@example.test\r\nSubject: hi\r\n\r\nHello.\r\n"

# The client is 127.0.0.1; 127.0.0.2 is not listed (RFC 5782 §2.1: A, then TXT for why).
ZEN: Zones = {
    "1.0.0.127.zen.test": {"A": ["127.0.0.2"], "TXT": ["Listed for the test, see zen.test"]},
}


# The test's clients come from loopback, which the smtp checks skip by default.
NOT_EXEMPT = "exempt = []\n"


@contextmanager
def serving(tmp_path: Path, abuse: str, *, dns: Zones | None = None) -> Iterator[ServerHandle]:
    with DNSServer(dns or {}) as (host, port):
        extra = f"[abuse]\n{NOT_EXEMPT}{abuse}\n"
        path = write_config(tmp_path, delivery=f'dns_servers = ["{host}:{port}"]', extra=extra)
        with running_config(load_config(path)) as handle:
            yield handle


def smtp(port: int, source: str = "127.0.0.1") -> smtplib.SMTP:
    client = smtplib.SMTP("127.0.0.1", port, timeout=20, source_address=(source, 0))
    client.ehlo("mail.sender.test")
    return client


def send(client: smtplib.SMTP, sender: str = "someone@sender.test") -> tuple[int, bytes]:
    """One transaction: the first reply that is not a success, or the 250 to DATA."""
    for code, text in (client.mail(sender), client.rcpt(BOB)):
        if code >= 400:
            client.rset()
            return code, text
    return client.data(MESSAGE)


def test_messages_over_the_rate_get_450_then_pass_as_it_refills(tmp_path: Path) -> None:
    # 2 per 2 s: a burst of two, then one a second.
    with serving(tmp_path, 'ip_messages = "2/2s"') as server, smtp(server.ports["smtp"]) as client:
        assert send(client)[0] == 250
        assert send(client)[0] == 250
        # C: MAIL FROM:<someone@sender.test>
        # S: 450 4.7.1 Too much mail from your address, try again later
        assert send(client) == (450, b"4.7.1 Too much mail from your address, try again later")
        time.sleep(1.1)
        assert send(client)[0] == 250
    assert len(server.new_messages(BOB)) == 3


def test_recipients_over_the_rate_get_450(tmp_path: Path) -> None:
    with serving(tmp_path, 'ip_recipients = "1/1h"') as server, smtp(server.ports["smtp"]) as c:
        c.mail("someone@sender.test")
        assert c.rcpt(BOB)[0] == 250
        assert c.rcpt(ALICE) == (
            450,
            b"4.7.1 Too many recipients from your address, try again later",
        )
        assert c.data(MESSAGE)[0] == 250
    assert len(server.new_messages(BOB)) == 1
    assert server.new_messages(ALICE) == []


def test_a_listed_client_is_refused_and_an_unlisted_one_accepted(tmp_path: Path) -> None:
    abuse = 'dnsbl = ["zen.test"]'
    refused = (
        554,
        b"5.7.1 Service unavailable; client [127.0.0.1] blocked using zen.test; "
        b"Listed for the test, see zen.test",
    )
    with serving(tmp_path, abuse, dns=ZEN) as server:
        with smtp(server.ports["smtp"]) as client:
            # The lookup starts at the first MAIL FROM: the refusal comes at RCPT TO
            # once the answer is in, at the latest at the end of DATA.
            assert send(client) == refused
            # C: MAIL FROM:<someone@sender.test>   S: 554 5.7.1 … (the answer is known now)
            assert client.mail("someone@sender.test") == refused
        with smtp(server.ports["smtp"], source="127.0.0.2") as client:
            assert send(client)[0] == 250
    assert len(server.new_messages(BOB)) == 1


def test_loopback_is_exempt_by_default(tmp_path: Path) -> None:
    path = write_config(tmp_path, extra='[abuse]\nip_messages = "1/1h"\ngreylist = true\n')
    with running_config(load_config(path)) as server, smtp(server.ports["smtp"]) as client:
        assert [send(client)[0] for _ in range(3)] == [250] * 3


def test_greylisting_puts_off_the_first_attempt_and_takes_the_retry(tmp_path: Path) -> None:
    abuse = 'greylist = true\ngreylist_delay = "2s"'
    with serving(tmp_path, abuse) as server, smtp(server.ports["smtp"]) as client:
        # C: RCPT TO:<bob@example.test>   S: 451 4.7.1 Greylisted, try again in 2 seconds
        assert send(client) == (451, b"4.7.1 Greylisted, try again in 2 seconds")
        assert send(client)[0] == 451  # too early
        time.sleep(2.1)
        assert send(client)[0] == 250
        assert send(client)[0] == 250  # the triplet passes from now on
    assert len(server.new_messages(BOB)) == 2


def test_submission_rate_per_user(tmp_path: Path) -> None:
    # Submission limits apply wherever the user is (abuse.exempt is for smtp clients).
    with (
        serving(tmp_path, 'user_messages = "2/1h"') as server,
        smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=20) as client,
    ):
        client.starttls(context=client_tls_context())
        client.login(ALICE, USERS[ALICE])
        for _ in range(2):
            client.sendmail(ALICE, [BOB], MESSAGE)
        assert client.mail(ALICE) == (
            450,
            b"4.7.1 Too much mail from alice@example.test: "
            b"at most 2 messages per hour, try again later",
        )
    assert len(server.new_messages(BOB)) == 2


def test_each_refusal_is_a_webhook_event(tmp_path: Path) -> None:
    with Receiver() as hooks, DNSServer({}) as (host, port):
        path = write_config(
            tmp_path,
            delivery=f'dns_servers = ["{host}:{port}"]',
            extra=webhook_config(hooks.url, '["message.refused"]')
            + f'[abuse]\n{NOT_EXEMPT}ip_messages = "1/1h"\n',
        )
        with running_config(load_config(path)) as server, smtp(server.ports["smtp"]) as client:
            assert send(client)[0] == 250
            assert send(client)[0] == 450
            wait_for(lambda: len(hooks.of_type("message.refused")) == 1)
    (event,) = hooks.of_type("message.refused")
    assert event.data == {
        "listener": "smtp",
        "check": "ratelimit",
        "stage": "sender",
        "reason": "ip_messages 1/1h",
        "reply": "450 4.7.1 Too much mail from your address, try again later",
        "remote_ip": "127.0.0.1",
        "helo": "mail.sender.test",
        "user": None,
        "mail_from": "someone@sender.test",
        "recipient": None,
    }


def test_every_worker_process_draws_from_the_same_bucket(tmp_path: Path) -> None:
    # Two workers accept on the same socket; a count per process would let 8 through.
    extra = f'[abuse]\n{NOT_EXEMPT}ip_messages = "4/1h"\n'
    with ServerProcess(tmp_path, workers=2, extra=extra) as proc:
        codes = []
        for _ in range(8):
            with smtp(proc.ports["smtp"]) as client:  # a new connection each: any worker
                codes.append(send(client)[0])
    assert sorted(codes) == [250] * 4 + [450] * 4
