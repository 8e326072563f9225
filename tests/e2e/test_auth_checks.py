"""SPF, DKIM and DMARC on the real server: smtplib in, Maildir, the webhook and IMAP out.

The server's ``delivery.dns_servers`` points at a DNS server of the test's
own on 127.0.0.1 (tests/mailauth/authzones.py); ``sender.test`` authorises
only 127.0.0.1 and publishes ``p=reject``, so a client bound to 127.0.0.2
is an unauthorised address.
"""

from __future__ import annotations

import imaplib
import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailstead.config import load_config
from mailstead.testing.dns import DNSServer
from tests.e2e.harness import USERS, ServerHandle, client_tls_context, running_config, write_config
from tests.e2e.test_webhooks import Receiver, wait_for, webhook_config
from tests.mailauth import authzones
from tests.mailauth.authzones import message, sign

BOB = "bob@example.test"


@pytest.fixture
def hooks() -> Iterator[Receiver]:
    with Receiver() as receiver:
        yield receiver


@pytest.fixture
def server(tmp_path: Path, hooks: Receiver) -> Iterator[ServerHandle]:
    with DNSServer(authzones.zones()) as (host, port):
        path = write_config(
            tmp_path,
            delivery=f'dns_servers = ["{host}:{port}"]',
            extra=webhook_config(hooks.url, '["message.received"]'),
        )
        with running_config(load_config(path)) as handle:
            yield handle


def smtp(server: ServerHandle, source: str = "127.0.0.1") -> smtplib.SMTP:
    client = smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=20, source_address=(source, 0))
    client.ehlo("mail.sender.test")
    return client


def test_signed_mail_passes_and_the_event_says_so(server: ServerHandle, hooks: Receiver) -> None:
    with smtp(server) as client:
        client.sendmail("alice@sender.test", [BOB], sign(message()))
    (stored,) = server.new_messages(BOB)
    header = stored.split(b"\nReceived: ", 1)[1].split(b"\nFrom: ", 1)[0]
    assert (
        b"\nAuthentication-Results: mx.example.test;\n"
        b"\tspf=pass smtp.mailfrom=alice@sender.test;\n"
        b"\tdkim=pass header.d=sender.test header.s=sel header.b="
    ) in header
    assert b"\tdmarc=pass (p=reject dis=none) header.from=sender.test\n" in header
    wait_for(lambda: len(hooks.of_type("message.received")) == 1)
    (event,) = hooks.of_type("message.received")
    assert event.data["authentication"] == {
        "spf": {"result": "pass", "domain": "sender.test"},
        "dkim": [{"result": "pass", "domain": "sender.test", "selector": "sel"}],
        "arc": {"result": "none", "sets": 0, "sealer": ""},
        "dmarc": {
            "result": "pass",
            "header_from": "sender.test",
            "policy": "reject",
            "disposition": "none",
        },
        "action": "deliver",
    }


def test_p_reject_from_an_unauthorised_address_is_refused_at_data(server: ServerHandle) -> None:
    with smtp(server, source="127.0.0.2") as client:
        client.mail("alice@sender.test")
        client.rcpt(BOB)
        code, text = client.data(message())
    assert (code, text) == (550, b"5.7.1 Message rejected by the sender domain's DMARC policy")
    assert server.new_messages(BOB) == []


def test_altered_body_is_refused(server: ServerHandle) -> None:
    altered = sign(message()).replace(b"Hello Bob.", b"Pay Mallory.")
    with smtp(server, source="127.0.0.2") as client, pytest.raises(smtplib.SMTPDataError) as err:
        client.sendmail("alice@sender.test", [BOB], altered)
    assert err.value.smtp_code == 550


def test_forged_results_are_gone_and_quarantine_lands_in_junk(server: ServerHandle) -> None:
    forged = b"Authentication-Results: mx.example.test; dmarc=pass header.from=quarantine.test\r\n"
    content = forged + message(from_="carol@quarantine.test")
    with smtp(server, source="127.0.0.2") as client:
        client.sendmail("carol@quarantine.test", [BOB], content)
    assert server.new_messages(BOB) == []
    imap = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=10)
    try:
        imap.starttls(client_tls_context())
        imap.login(BOB, USERS[BOB])
        assert imap.select("Junk")[0] == "OK"
        status, data = imap.fetch("1", "(BODY.PEEK[HEADER])")
        assert status == "OK"
        header = data[0][1]  # type: ignore[index]
    finally:
        imap.logout()
    assert header.count(b"Authentication-Results:") == 1
    assert b"dmarc=fail (p=quarantine dis=quarantine) header.from=quarantine.test" in header
