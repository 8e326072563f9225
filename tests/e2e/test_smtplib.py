"""Python's smtplib against the running server: the MTA and both MSA ports."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage

import pytest

from tests.e2e.harness import ServerHandle, client_tls_context


def _message(sender: str, to: str, subject: str = "Hello") -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, to, subject
    msg.set_content("Line one\n.leading dot\n..two dots\nFrom: not a header\n")
    return msg


def test_mta_delivers_to_local_maildir(server: ServerHandle) -> None:
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"]) as smtp:
        smtp.send_message(_message("carol@remote.test", "alice@example.test"))
    (stored,) = server.new_messages("alice@example.test")
    assert stored.startswith(
        b"Return-Path: <carol@remote.test>\nDelivered-To: alice@example.test\n"
    )
    assert (
        b"\nReceived: from " in stored and b"by mx.example.test (Mailstead) with ESMTP id" in stored
    )
    # Dot-stuffing undone, Unix line endings on disk.
    assert b"\n.leading dot\n..two dots\nFrom: not a header\n" in stored
    assert b"\r\n" not in stored


def test_mta_refuses_relay_and_unknown_users(server: ServerHandle) -> None:
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"]) as smtp:
        smtp.ehlo("client.remote.test")
        assert smtp.mail("carol@remote.test")[0] == 250
        code, text = smtp.rcpt("dave@elsewhere.test")
        assert (code, text[:5]) == (554, b"5.7.1")
        code, text = smtp.rcpt("nobody@example.test")
        assert (code, text[:5]) == (550, b"5.1.1")
    assert not list(server.mail_root.glob("*/*/Maildir/new/*"))


def test_alias_fans_out_once_per_mailbox(server: ServerHandle) -> None:
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"]) as smtp:
        smtp.sendmail(
            "carol@remote.test",
            ["team@example.test", "ALICE@Example.Test"],
            _message("carol@remote.test", "team@example.test").as_bytes(),
        )
    assert len(server.new_messages("alice@example.test")) == 1
    assert len(server.new_messages("bob@example.test")) == 1


def test_postmaster_without_domain_is_accepted(server: ServerHandle) -> None:
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"]) as smtp:
        smtp.sendmail("carol@remote.test", ["<postmaster>"], b"Subject: hi\r\n\r\nhi\r\n")
    assert len(server.new_messages("alice@example.test")) == 1


def test_submission_starttls_auth_and_queue(server: ServerHandle) -> None:
    with smtplib.SMTP("127.0.0.1", server.ports["submission"]) as smtp:
        smtp.ehlo()
        assert not smtp.has_extn("auth"), "AUTH must not be offered before TLS"
        code, _ = smtp.docmd("AUTH", "PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABhbGljZS1wdw==")
        assert code == 530
        smtp.starttls(context=client_tls_context())
        smtp.ehlo()
        assert "PLAIN" in smtp.esmtp_features["auth"]
        smtp.login("alice@example.test", "alice-pw")
        refused = smtp.sendmail(
            "alice@example.test",
            ["bob@example.test", "friend@remote.test"],
            _message("alice@example.test", "friend@remote.test").as_bytes(),
        )
        assert refused == {}
    (stored,) = server.new_messages("bob@example.test")
    assert b"with ESMTPSA id" in stored
    # The remote recipient waits in the durable queue for the outbound MTA.
    queued = list((server.config.data_dir / "queue" / "msg").iterdir())
    assert len(queued) == 1
    assert b"Subject: Hello" in queued[0].read_bytes()


def test_submission_requires_auth_and_owned_sender(server: ServerHandle) -> None:
    with smtplib.SMTP("127.0.0.1", server.ports["submission"]) as smtp:
        smtp.starttls(context=client_tls_context())
        smtp.ehlo()
        code, text = smtp.mail("alice@example.test")
        assert (code, text[:5]) == (530, b"5.7.0")
        smtp.login("alice@example.test", "alice-pw")
        code, text = smtp.mail("bob@example.test")
        assert (code, text[:5]) == (553, b"5.7.1")
        assert smtp.mail("Alice@EXAMPLE.test")[0] == 250


def test_submission_wrong_password(server: ServerHandle) -> None:
    with smtplib.SMTP("127.0.0.1", server.ports["submission"]) as smtp:
        smtp.starttls(context=client_tls_context())
        with pytest.raises(smtplib.SMTPAuthenticationError) as failure:
            smtp.login("alice@example.test", "wrong")
        assert failure.value.smtp_code == 535


def test_authzid_of_another_user_fails(server: ServerHandle) -> None:
    import base64

    with smtplib.SMTP("127.0.0.1", server.ports["submission"]) as smtp:
        smtp.starttls(context=client_tls_context())
        smtp.ehlo()
        token = base64.b64encode(b"bob@example.test\0alice@example.test\0alice-pw").decode()
        assert smtp.docmd("AUTH", f"PLAIN {token}")[0] == 535
        token = base64.b64encode(b"alice@example.test\0alice@example.test\0alice-pw").decode()
        assert smtp.docmd("AUTH", f"PLAIN {token}")[0] == 235


def test_submissions_implicit_tls_with_login(server: ServerHandle) -> None:
    with smtplib.SMTP_SSL(
        "127.0.0.1", server.ports["submissions"], context=client_tls_context()
    ) as smtp:
        smtp.ehlo()
        assert not smtp.has_extn("starttls")
        smtp.login("bob@example.test", "bob-pw")  # smtplib prefers CRAM-MD5, then PLAIN
        smtp.sendmail("bob@example.test", ["alice@example.test"], b"Subject: x\r\n\r\nbody\r\n")
    (stored,) = server.new_messages("alice@example.test")
    assert b"with ESMTPSA id" in stored


def test_smtputf8_address_and_body(server: ServerHandle) -> None:
    body = "Subject: Grüße\r\nFrom: carol@remote.test\r\n\r\nÄpfel und Birnen\r\n".encode()
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"]) as smtp:
        smtp.ehlo()
        assert smtp.has_extn("smtputf8")
        smtp.sendmail(
            "josé@remote.test",
            ["alice@example.test"],
            body,
            mail_options=["SMTPUTF8", "BODY=8BITMIME"],
        )
    (stored,) = server.new_messages("alice@example.test")
    assert "Return-Path: <josé@remote.test>".encode() in stored
    assert "Äpfel und Birnen".encode() in stored
    assert b"with UTF8ESMTP id" in stored


def test_bdat_chunks_through_raw_commands(server: ServerHandle) -> None:
    part1 = b"Subject: chunked\r\n\r\nfirst part\r\n"
    part2 = b".not stuffed\r\nMAIL FROM:<x@y.test>\r\n"
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"]) as smtp:
        smtp.ehlo()
        assert smtp.has_extn("chunking")
        smtp.mail("carol@remote.test")
        smtp.rcpt("alice@example.test")
        smtp.send(f"BDAT {len(part1)}\r\n".encode() + part1)
        assert smtp.getreply()[0] == 250
        smtp.send(f"BDAT {len(part2)} LAST\r\n".encode() + part2)
        code, text = smtp.getreply()
        assert code == 250 and b"queued as" in text
    (stored,) = server.new_messages("alice@example.test")
    assert stored.endswith(b"first part\n.not stuffed\nMAIL FROM:<x@y.test>\n")


def test_dsn_parameters_are_accepted(server: ServerHandle) -> None:
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"]) as smtp:
        smtp.sendmail(
            "carol@remote.test",
            ["alice@example.test"],
            b"Subject: dsn\r\n\r\nx\r\n",
            mail_options=["RET=HDRS", "ENVID=abc+2Bdef"],
            rcpt_options=["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;alice@example.test"],
        )
    assert len(server.new_messages("alice@example.test")) == 1


def test_mbox_delivery(mbox_server: ServerHandle) -> None:
    with smtplib.SMTP("127.0.0.1", mbox_server.ports["smtp"]) as smtp:
        for n in range(2):
            smtp.sendmail(
                "carol@remote.test",
                ["alice@example.test"],
                f"Subject: {n}\r\n\r\nFrom here\r\n>From there\r\n".encode(),
            )
    mbox = (mbox_server.mail_root / "example.test" / "alice" / "mbox").read_bytes()
    assert mbox.count(b"\nFrom carol@remote.test ") + mbox.startswith(b"From carol@") == 2
    assert b"\n>From here\n>>From there\n" in mbox
