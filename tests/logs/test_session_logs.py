"""The log of a real server (in-process): sessions, refusals, queue ids, and no secrets.

C/S below: what the client does; the assertions read the lines as a mail
admin would, with grep.
"""

from __future__ import annotations

import base64
import smtplib
from pathlib import Path

import pytest

from mailstead import logs
from mailstead.cli.log import follow
from mailstead.config import load_config
from mailstead.directory import Directory
from tests.e2e.harness import client_tls_context, running_config, write_config
from tests.logs.capture import captured

PASSWORD = "S3cret-Pa55word!"
WRONG = "Wr0ng-Secret-Guess"
BODY_SECRET = "BODY-SECRET-4242"


def test_a_day_in_the_log(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path))
    with Directory(config.db_path("directory"), config.domains) as directory:
        directory.add_user("dora@example.test", PASSWORD)
    with captured() as out, running_config(config) as server:
        with smtplib.SMTP("127.0.0.1", server.ports["submission"]) as smtp:
            smtp.starttls(context=client_tls_context())
            smtp.ehlo("laptop.example.test")
            with pytest.raises(smtplib.SMTPAuthenticationError):
                smtp.login("dora@example.test", WRONG)
            # AUTH PLAIN: the credentials travel base64-encoded in one line.
            code, _ = smtp.docmd(
                "AUTH PLAIN", base64.b64encode(f"\0dora@example.test\0{PASSWORD}".encode()).decode()
            )
            assert code == 235
            smtp.mail("dora@example.test")
            smtp.rcpt("alice@example.test")  # local: delivered at once
            smtp.rcpt("carol@remote.test")  # remote: queued
            code, said = smtp.data(f"Subject: plans\r\n\r\nThe code is {BODY_SECRET}.\r\n".encode())
        assert code == 250
        queue_id = said.decode().rsplit(" ", 1)[1]
        with smtplib.SMTP("127.0.0.1", server.ports["smtp"]) as smtp:
            smtp.ehlo("client.remote.test")
            smtp.mail("carol@remote.test")
            assert smtp.rcpt("nobody@example.test")[0] == 550
            assert smtp.rcpt("dave@elsewhere.test")[0] == 554

    # Never a password, in clear or as the client sent it, nor a message body.
    plain = base64.b64encode(f"\0dora@example.test\0{PASSWORD}".encode()).decode()
    for secret in (PASSWORD, WRONG, plain, BODY_SECRET, "The code is"):
        assert secret not in out.text

    # smtplib tries PLAIN, then LOGIN: the name tried, never the password.
    failed = out.matching('msg="login failed for')
    assert [line.split(" session=")[1].split(" ", 2)[2] for line in failed] == [
        "protocol=smtp mechanism=PLAIN failures=1 msg=\"login failed for 'dora@example.test'\"",
        "protocol=smtp mechanism=LOGIN failures=2 msg=\"login failed for 'dora@example.test'\"",
    ]
    (login,) = out.matching("msg=login")
    assert "protocol=smtp mechanism=PLAIN user=dora@example.test msg=login" in login

    # The 250's id finds the arrival and the local delivery, in the same session.
    (received,) = out.matching(f"queue_id={queue_id}", "msg=received")
    assert (
        f"queue_id={queue_id} from=<dora@example.test> to=<alice@example.test>,<carol@remote.test>"
        " size=" in received
    )
    assert "user=dora@example.test local=1 queued=1 msg=received" in received
    (local,) = out.matching(f"queue_id={queue_id}", "relay=local")
    assert "to=<alice@example.test> relay=local delay=" in local
    assert local.endswith('dsn=2.0.0 status=sent msg="delivered to mailbox"')
    session = logs.parse_line(received)
    assert session is not None and session["ip"] == "127.0.0.1"
    assert session["session"].startswith("s")

    # Postfix's NOQUEUE lines for refused recipients.
    (unknown,) = out.matching("NOQUEUE: reject: RCPT", "nobody@")
    assert (
        'msg="NOQUEUE: reject: RCPT from unknown[127.0.0.1]: 550 5.1.1 <nobody@example.test>:'
        " Recipient address rejected: No such user here; from=<carol@remote.test>"
        ' to=<nobody@example.test> proto=ESMTP helo=<client.remote.test>"'
    ) in unknown
    assert "status=reject" in unknown
    (relay,) = out.matching("NOQUEUE: reject: RCPT", "dave@")
    assert "554 5.7.1 <dave@elsewhere.test>: Recipient address rejected: Relay access denied" in (
        relay
    )

    # mailstead log --queue-id: the message's lines and its session's.
    path = tmp_path / "mailstead.log"
    path.write_text(out.text)
    story = [logs.parse_line(line) for line in follow(queue_id, [path])]
    said_ = [line and line["msg"] for line in story]
    assert said_ == [
        "connect",
        "login failed for 'dora@example.test'",
        "login failed for 'dora@example.test'",
        "login",
        "received",
        "delivered to mailbox",
        "disconnect",
    ]
    assert {line and line["session"] for line in story} == {session["session"]}
