"""DSNs (RFC 3464) as a mail client would read them: parsed back with the email package."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage, Message

import pytest

from mailstead.mta.dsn import (
    DEFAULT_MAX_ORIGINAL,
    EXPIRED_STATUS,
    OriginalEnvelope,
    RecipientReport,
    build_dsn,
    is_bounce,
    local_diagnostic,
    should_notify,
    smtp_diagnostic,
    status_from_reply,
)
from mailstead.proto.smtp.replies import Reply

T0 = 1_700_000_000.0  # Tue, 14 Nov 2023 22:13:20 +0000
HOST = "mail.example.test"
QID = "0123456789ABCDEF01234567"
ORIGINAL = (
    b"From: Alice <alice@example.test>\r\n"
    b"To: bob@example.org\r\n"
    b"Subject: lunch?\r\n"
    b"Message-ID: <1@example.test>\r\n"
    b"\r\n"
    b"Shall we?\r\n"
)
REJECTED = Reply(550, "5.1.1", "<bob@example.org>: No such user")
BOB_FAILED = RecipientReport(
    "bob@example.org",
    "failed",
    "5.1.1",
    original_recipient="rfc822;Bob@Example.org",
    remote_mta="mx.example.org",
    diagnostic_code=smtp_diagnostic(REJECTED),
    last_attempt=T0 + 60,
)


def envelope(**changes: object) -> OriginalEnvelope:
    fields: dict[str, object] = {
        "sender": "alice@example.test",
        "queue_id": QID,
        "received_at": T0,
        "envid": None,
        "ret": None,
    }
    fields.update(changes)
    return OriginalEnvelope(**fields)  # type: ignore[arg-type]


def dsn(
    kind: str = "failed",
    *,
    env: OriginalEnvelope | None = None,
    recipients: list[RecipientReport] | None = None,
    original: bytes = ORIGINAL,
    **kw: int,
) -> bytes:
    return build_dsn(
        kind,  # type: ignore[arg-type]
        reporting_mta=HOST,
        original_envelope=env or envelope(),
        recipients=recipients or [BOB_FAILED],
        original_message=original,
        now=T0 + 120,
        **kw,
    )


def parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def parts(raw: bytes) -> tuple[EmailMessage, Message, Message, Message]:
    msg = parse(raw)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    payload = msg.get_payload()
    assert isinstance(payload, list)
    human, status, original = payload
    assert isinstance(human, Message) and isinstance(status, Message)
    assert isinstance(original, Message)
    return msg, human, status, original


def status_blocks(part: Message) -> list[Message]:
    """message/delivery-status parses as a list of header blocks: per-message, per-recipient."""
    blocks = part.get_payload()
    assert isinstance(blocks, list)
    return [b for b in blocks if isinstance(b, Message)]


# --------------------------------------------------------------------------- structure


def test_failed_dsn_structure_and_headers() -> None:
    raw = dsn(env=envelope(envid="QQ314159"))
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")  # CRLF only
    msg, human, status, original = parts(raw)
    assert msg["From"] == f"Mail Delivery System <MAILER-DAEMON@{HOST}>"
    assert msg["To"] == "alice@example.test"
    assert msg["Subject"] == "Undelivered Mail Returned to Sender"
    assert msg["Auto-Submitted"] == "auto-replied"  # RFC 3834
    assert msg["Date"] == "Tue, 14 Nov 2023 22:15:20 +0000"
    assert msg["Message-ID"].endswith(f"@{HOST}>")
    assert human.get_content_type() == "text/plain"
    text = human.get_payload(decode=True)
    assert isinstance(text, bytes)
    assert b"<bob@example.org>: host mx.example.org said: 550 5.1.1" in text
    assert status.get_content_type() == "message/delivery-status"
    assert original.get_content_type() == "message/rfc822"

    per_message, bob = status_blocks(status)
    assert per_message["Original-Envelope-Id"] == "QQ314159"
    assert per_message["Reporting-MTA"] == f"dns; {HOST}"
    assert per_message["Arrival-Date"] == "Tue, 14 Nov 2023 22:13:20 +0000"
    assert bob["Original-Recipient"] == "rfc822; Bob@Example.org"  # ORCPT
    assert bob["Final-Recipient"] == "rfc822; bob@example.org"
    assert bob["Action"] == "failed"
    assert bob["Status"] == "5.1.1"
    assert bob["Remote-MTA"] == "dns; mx.example.org"
    assert bob["Diagnostic-Code"] == "smtp; 550 5.1.1 <bob@example.org>: No such user"
    assert bob["Last-Attempt-Date"] == "Tue, 14 Nov 2023 22:14:20 +0000"
    assert bob["Will-Retry-Until"] is None


def test_returned_message_is_the_original_byte_for_byte() -> None:
    raw = dsn()
    assert ORIGINAL in raw
    *_, original = parts(raw)
    inner = original.get_payload()
    assert isinstance(inner, list) and isinstance(inner[0], Message)
    assert inner[0]["Subject"] == "lunch?"


def test_no_envid_no_orcpt_no_fields() -> None:
    plain = RecipientReport("bob@example.org", "failed", "5.1.1")
    *_, status, _ = parts(dsn(recipients=[plain]))
    per_message, bob = status_blocks(status)
    assert per_message["Original-Envelope-Id"] is None
    assert bob["Original-Recipient"] is None
    assert bob["Remote-MTA"] is None
    assert bob["Diagnostic-Code"] is None


def test_several_recipients_one_block_each() -> None:
    carol = RecipientReport("carol@example.net", "failed", EXPIRED_STATUS)
    *_, status, _ = parts(dsn(recipients=[BOB_FAILED, carol]))
    _, bob, c = status_blocks(status)
    assert bob["Final-Recipient"] == "rfc822; bob@example.org"
    assert c["Final-Recipient"] == "rfc822; carol@example.net"
    assert c["Status"] == "4.4.7"


# --------------------------------------------------------------------------- RET and size


def test_ret_hdrs_returns_headers_only() -> None:
    raw = dsn(env=envelope(ret="HDRS"))
    *_, original = parts(raw)
    assert original.get_content_type() == "text/rfc822-headers"
    body = original.get_payload(decode=True)
    assert isinstance(body, bytes)
    assert b"Subject: lunch?\r\n" in body
    assert b"Shall we?" not in raw


def test_ret_full_returns_everything() -> None:
    *_, original = parts(dsn(env=envelope(ret="FULL")))
    assert original.get_content_type() == "message/rfc822"


def test_large_original_only_headers() -> None:
    big = ORIGINAL + (b"x" * 76 + b"\r\n") * (DEFAULT_MAX_ORIGINAL // 78 + 1)
    assert len(big) > DEFAULT_MAX_ORIGINAL
    raw = dsn(original=big)
    *_, original = parts(raw)
    assert original.get_content_type() == "text/rfc822-headers"
    assert len(raw) < 10_000
    assert b"Shall we?" not in raw


def test_max_original_is_adjustable() -> None:
    *_, original = parts(dsn(max_original=10))
    assert original.get_content_type() == "text/rfc822-headers"


def test_delay_warning_returns_headers_and_retry_time() -> None:
    report = RecipientReport(
        "bob@example.org",
        "delayed",
        "4.4.1",
        remote_mta="mx.example.org",
        diagnostic_code="smtp; 421 4.4.1 Try again later",
        last_attempt=T0 + 3 * 3600,
        will_retry_until=T0 + 5 * 86400,
    )
    raw = dsn("delayed", recipients=[report], env=envelope(ret="FULL"))
    msg, _, status, original = parts(raw)
    assert msg["Subject"] == "Delayed Mail (still being retried)"
    assert original.get_content_type() == "text/rfc822-headers"
    _, bob = status_blocks(status)
    assert bob["Action"] == "delayed"
    assert bob["Will-Retry-Until"] == "Sun, 19 Nov 2023 22:13:20 +0000"
    assert b"WARNING ONLY" in raw


def test_success_report() -> None:
    report = RecipientReport("bob@example.org", "delivered", "2.0.0", remote_mta="mx.example.org")
    msg, *_ = parts(dsn("delivered", recipients=[report]))
    assert msg["Subject"] == "Successful Mail Delivery Report"


# --------------------------------------------------------------------------- hostile input


@pytest.mark.parametrize(
    "evil",
    [
        "550 5.1.1 nope\r\nX-Injected: yes",
        "550 5.1.1 nope\nX-Injected: yes",
        "550 5.1.1 nope\rX-Injected: yes",
        "550 5.1.1 nope\r\n\r\n--boundary\r\nX-Injected: yes",
        "550 5.1.1 nope\x00\x1b[31m\r\n\tX-Injected: yes",
    ],
)
def test_crlf_in_diagnostic_text_is_neutralised(evil: str) -> None:
    report = RecipientReport(
        "bob@example.org",
        "failed",
        "5.1.1",
        remote_mta="mx.example.org\r\nX-Injected: host",
        diagnostic_code=f"smtp; {evil}",
    )
    raw = dsn(recipients=[report])
    *_, status, _ = parts(raw)
    assert b"\nX-Injected" not in raw
    assert b"\x00" not in raw and b"\x1b" not in raw
    _, bob = status_blocks(status)
    assert bob["X-Injected"] is None
    assert bob["Diagnostic-Code"].startswith("smtp; 550 5.1.1 nope")
    assert "X-Injected: yes" in bob["Diagnostic-Code"]  # kept, as text on the same field


def test_crlf_in_envelope_values_is_neutralised() -> None:
    env = envelope(sender="alice@example.test\r\nBcc: victim@example.net", envid="id\r\nX-A: b")
    raw = dsn(env=env, recipients=[RecipientReport("b@x.org\r\nX-B: c", "failed", "5.0.0")])
    msg, _, status, _ = parts(raw)
    assert msg["Bcc"] is None
    per_message, rcpt = status_blocks(status)
    assert per_message["X-A"] is None
    assert rcpt["X-B"] is None


@pytest.mark.parametrize("sep", ["\x85", "\u2028", "\x0b", "\x9b"])
def test_c1_controls_and_line_separators_in_envelope_values_are_neutralised(sep: str) -> None:
    # mailstead.peertext.header_text: the same definition as every other header writer.
    env = envelope(sender=f"alice@example.test{sep}Bcc: v@example.net", envid=f"id{sep}X-A: b")
    report = RecipientReport(
        f"b@x.org{sep}X-B: c", "failed", "5.0.0", original_recipient=f"rfc822;b@x.org{sep}X-C: d"
    )
    raw = dsn(env=env, recipients=[report])
    assert sep.encode() not in raw
    msg, _, status, _ = parts(raw)
    assert msg["Bcc"] is None and b"\r\nTo: <alice@example.test Bcc: v@example.net>\r\n" in raw
    per_message, rcpt = status_blocks(status)
    assert per_message["Original-Envelope-Id"] == "id X-A: b"
    assert rcpt.keys() == ["Original-Recipient", "Final-Recipient", "Action", "Status"]


def test_long_diagnostic_is_folded_below_the_line_limit() -> None:
    long_text = "smtp; 550 5.7.1 " + " ".join(["blocked"] * 400) + " " + "y" * 3000
    report = RecipientReport("bob@example.org", "failed", "5.7.1", diagnostic_code=long_text)
    raw = dsn(recipients=[report])
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    _, _, status, _ = parts(raw)
    _, bob = status_blocks(status)
    assert bob["Diagnostic-Code"].startswith("smtp; 550 5.7.1 blocked blocked")


def test_non_ascii_addresses_use_the_utf8_address_type() -> None:
    report = RecipientReport(
        "jörg@bücher.example", "failed", "5.1.1", original_recipient="rfc822;jörg@bücher.example"
    )
    raw = dsn(recipients=[report])
    _, _, status, _ = parts(raw)
    _, r = status_blocks(status)
    # RFC 6533 §3: utf-8 address type, \x{HEX} inside the ASCII delivery-status.
    assert r["Final-Recipient"] == "utf-8; j\\x{F6}rg@b\\x{FC}cher.example"
    assert r["Original-Recipient"] == "utf-8; j\\x{F6}rg@b\\x{FC}cher.example"


def test_non_ascii_reply_text_is_made_ascii() -> None:
    report = RecipientReport("bob@example.org", "failed", "5.1.1", diagnostic_code="smtp; 550 Nö")
    _, _, status, _ = parts(dsn(recipients=[report]))
    _, bob = status_blocks(status)
    assert bob["Diagnostic-Code"] == "smtp; 550 N?"


def test_untyped_diagnostic_gets_a_type() -> None:
    report = RecipientReport("bob@example.org", "failed", "5.4.4", diagnostic_code="no MX or A")
    _, _, status, _ = parts(dsn(recipients=[report]))
    _, bob = status_blocks(status)
    assert bob["Diagnostic-Code"] == "X-Mailstead; no MX or A"


def test_a_failure_without_a_remote_reply_says_why_in_words() -> None:
    # RFC 3464 §2.3.6: our own diagnostic-type, as Postfix's X-Postfix.
    no_domain = Reply(
        550,
        "5.1.2",
        "Host or domain name not found. Name service error for name=nx.test type=MX:"
        " Host not found",
    )
    report = RecipientReport(
        "bob@nx.test", "failed", "5.1.2", diagnostic_code=local_diagnostic(no_domain)
    )
    _, human, status, _ = parts(dsn(recipients=[report]))
    _, bob = status_blocks(status)
    assert bob["Diagnostic-Code"] == (
        "X-Mailstead; Host or domain name not found. Name service error for name=nx.test"
        " type=MX: Host not found"
    )
    text = human.get_payload(decode=True)
    assert isinstance(text, bytes)
    assert b"<bob@nx.test>: Host or domain name not found. Name service error for" in text
    assert "Remote-MTA" not in bob


def test_boundary_never_occurs_in_the_original() -> None:
    first = parse(dsn()).get_boundary()
    assert first is not None
    tricky = ORIGINAL + f"--{first}\r\n".encode()
    raw = dsn(original=tricky)
    msg = parse(raw)
    assert msg.get_boundary() != first
    assert len(msg.get_payload()) == 3


@pytest.mark.parametrize(
    "change",
    [
        {"kind": "bounced"},
        {"sender": ""},
        {"sender": "<>"},
        {"status": "5.1"},
        {"status": "6.1.1"},
        {"status": "5.1.1\r\nX: y"},
        {"action": "exploded"},
        {"recipients": "none"},
    ],
)
def test_bad_arguments_are_refused(change: dict[str, str]) -> None:
    report = RecipientReport(
        "bob@example.org",
        change.get("action", "failed"),  # type: ignore[arg-type]
        change.get("status", "5.1.1"),
    )
    with pytest.raises(ValueError):
        build_dsn(
            change.get("kind", "failed"),  # type: ignore[arg-type]
            reporting_mta=HOST,
            original_envelope=envelope(sender=change.get("sender", "alice@example.test")),
            recipients=[] if "recipients" in change else [report],
            original_message=ORIGINAL,
            now=T0,
        )


# --------------------------------------------------------------------------- policy


@pytest.mark.parametrize(
    ("kind", "notify", "expected"),
    [
        ("failed", None, True),
        ("delayed", None, True),
        ("delivered", None, False),
        ("failed", ("NEVER",), False),
        ("delayed", ("NEVER",), False),
        ("delivered", ("NEVER",), False),
        ("failed", ("SUCCESS",), False),
        ("delivered", ("SUCCESS",), True),
        ("delayed", ("FAILURE",), False),
        ("delayed", ("FAILURE", "DELAY"), True),
        ("failed", ("failure",), True),
        ("failed", (), True),  # an empty stored value means "not given"
    ],
)
def test_should_notify(kind: str, notify: tuple[str, ...] | None, expected: bool) -> None:
    assert should_notify(kind, notify) is expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("sender", "expected"),
    [("", True), ("<>", True), (" ", True), ("MAILER-DAEMON@example.test", False), ("a@b", False)],
)
def test_is_bounce(sender: str, expected: bool) -> None:
    assert is_bounce(sender) is expected


@pytest.mark.parametrize(
    ("reply", "status", "diagnostic"),
    [
        (REJECTED, "5.1.1", "smtp; 550 5.1.1 <bob@example.org>: No such user"),
        (Reply(550, "", "go away"), "5.0.0", "smtp; 550 go away"),
        (Reply(451, "5.1.1", "inconsistent"), "4.0.0", "smtp; 451 5.1.1 inconsistent"),
        (Reply(452, "4.2.2", ("mailbox", "full")), "4.2.2", "smtp; 452 4.2.2 mailbox full"),
    ],
)
def test_status_and_diagnostic_from_reply(reply: Reply, status: str, diagnostic: str) -> None:
    assert status_from_reply(reply) == status
    assert smtp_diagnostic(reply) == diagnostic


def test_utf8_original_is_returned_as_message_global() -> None:
    # RFC 6533 §6.3, §6.5: UTF-8 header fields → message/global(-headers), 8bit.
    original = "Subject: Grüße\r\nFrom: jörg@bücher.example\r\n\r\nHallo\r\n".encode()
    env = envelope(sender="jörg@bücher.example")
    msg, _, status, returned = parts(dsn(env=env, original=original))
    assert msg["To"] == "jörg@bücher.example"
    assert msg["Content-Transfer-Encoding"] == "8bit"
    assert returned.get_content_type() == "message/global"
    per_message, _ = status_blocks(status)
    assert per_message["X-Mailstead-Sender"] == "utf-8; j\\x{F6}rg@b\\x{FC}cher.example"
    _, _, _, headers = parts(dsn(env=envelope(ret="HDRS"), original=original))
    assert headers.get_content_type() == "message/global-headers"


def test_original_without_body_or_final_crlf() -> None:
    for original in (b"Subject: x\r\n", b"Subject: x", b"", b"\r\nbody only\r\n"):
        for ret in ("FULL", "HDRS"):
            msg = parse(dsn(env=envelope(ret=ret), original=original))
            assert len(msg.get_payload()) == 3
