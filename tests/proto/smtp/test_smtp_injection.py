"""Header and log injection through text the peer chooses: one line per attack.

Every field a client names that ends up in a header (Received, Return-Path,
a DSN's Original-Envelope-Id / Original-Recipient) or a log line is held to
its grammar at the protocol: a CR, LF, NUL or other control character is
refused with the reply the RFC gives, and nothing of it is echoed.
"""

from __future__ import annotations

import base64

import pytest

from mailstead.proto.smtp.events import AuthRequest, Hello, MailFrom, RcptTo
from tests.proto.smtp.transcript import EHLO_LINES, SUBMISSIONS, Transcript

BAD_EHLO = b"501 5.5.2 EHLO takes one domain name or address literal\r\n"
BAD_HELO = b"501 5.5.2 HELO takes one domain name or address literal\r\n"
CONTROL_SENDER = b"501 5.1.7 Control characters are not allowed in an address\r\n"
CONTROL_RECIPIENT = b"501 5.1.3 Control characters are not allowed in an address\r\n"
BAD_PARAM = b"501 5.5.4 Bad parameter syntax\r\n"
BAD_XTEXT = b"501 5.5.4 Bad xtext encoding\r\n"
BAD_USER = b"501 5.5.2 Control characters are not allowed in a user name\r\n"


# -- EHLO / HELO (RFC 5321 §4.1.1.1, §4.1.3; RFC 6531 §3.7.1) ----------------------


def test_the_reported_injection_is_refused_and_the_session_stays_unnamed() -> None:
    # C: EHLO t.test<CR>X-Inj: 1 once became "Received: from t.test<CR>X-Inj: ...".
    t = Transcript()
    assert t.output() == b"220 mx.example.test ESMTP Mailstead\r\n"
    assert t.feed(b"EHLO t.test\rX-Inj: 1\r\n") == BAD_EHLO
    assert t.feed(b"MAIL FROM:<c@remote.test>\r\n") == b"503 5.5.1 Send EHLO or HELO first\r\n"
    assert t.of_type(Hello) == []


def test_a_refused_ehlo_keeps_the_name_given_before() -> None:
    t = Transcript()
    t.run("""
    S: 220 mx.example.test ESMTP Mailstead
    C: EHLO t.test
    S: 250-mx.example.test greets t.test
    S: 250-PIPELINING
    S: 250-SIZE 52428800
    S: 250-8BITMIME
    S: 250-SMTPUTF8
    S: 250-ENHANCEDSTATUSCODES
    S: 250-CHUNKING
    S: 250-DSN
    S: 250-STARTTLS
    S: 250 HELP
    C: EHLO t.test X-Inj: 1
    S: 501 5.5.2 EHLO takes one domain name or address literal
    C: HELO t.test (forged)
    S: 501 5.5.2 HELO takes one domain name or address literal
    C: MAIL FROM:<c@remote.test>
    S: 250 2.1.0 Sender OK
    """)
    assert t.of_type(Hello) == [Hello("t.test", extended=True)]


@pytest.mark.parametrize(
    "name",
    [
        b"t.test\rX-Inj: 1",
        b"t.test\x00",
        b"t.test\x00X-Inj: 1",
        b"\x00",
        b"t.test\tX-Inj: 1",
        b"t.test\x1b[31m",
        b"t.test\x7f",
        "t.test\u0085X-Inj: 1".encode(),  # NEL, a C1 control
        "t.test\u2028X-Inj: 1".encode(),  # LINE SEPARATOR
        b"t.test X-Inj: 1",  # a second word
        b"t.test (forged)",
        "名前.example".encode(),  # RFC 6531 §3.7.1: A-labels only in EHLO
        b"xn--wgv71a.example\xc2\xa0",
        b"-lead.example",
        b"trail-.example",
        b"a..b.example",
        b".example",
        b".",
        b"t.test..",
        b"user@t.test",
        b"<t.test>",
        b"a" * 64 + b".example",  # RFC 1035: 63 octets a label
        b"a." * 127 + b"aa",  # 256 octets
        b"[192.0.2.1",
        b"[192.0.2.256]",
        b"[192.0.2]",
        b"[192.0.2.1]x",
        b"[IPv6:fe80::1%eth0]",  # ipaddress would take the zone
        b"[IPv6:fe80::1%\rX-Inj: 1]",
        b"[IPv6:2001:db8::g]",
        b"[IPv6:]",
        b"[tag:anything]",  # RFC 5321 §4.1.3: no other tag is registered
        b"[]",
    ],
)
def test_ehlo_takes_only_a_domain_or_an_address_literal(name: bytes) -> None:
    t = Transcript()
    t.output()
    assert t.feed(b"EHLO " + name + b"\r\n") == BAD_EHLO
    assert t.feed(b"HELO " + name + b"\r\n") == BAD_HELO
    assert t.of_type(Hello) == [] and not t.closed


@pytest.mark.parametrize(
    "name",
    [
        "t.test",
        "T.Test",
        "localhost",
        "DESKTOP-4R2D2X",
        "xn--wgv71a.example",
        "192.0.2.1",  # digits are Let-dig: a Domain by the grammar
        "[192.0.2.1]",
        "[IPv6:2001:db8::1]",
        "[ipv6:::ffff:192.0.2.1]",
        "t.test.",  # leniency: a trailing dot (docs/quirks.md)
        "my_pc.lan",  # leniency: an underscore (docs/quirks.md)
        "a" * 63 + ".example",
    ],
)
def test_ehlo_names_real_clients_send(name: str) -> None:
    t = Transcript()
    t.output()
    said = t.feed(f"EHLO {name}\r\n".encode())
    assert said == b"".join(
        f"{line}\r\n".encode()
        for line in (f"250-mx.example.test greets {name}", *EHLO_LINES[1:], "250-STARTTLS")
    ) + (b"250 HELP\r\n")
    assert t.feed(f"HELO {name}\r\n".encode()) == b"250 mx.example.test\r\n"
    assert t.of_type(Hello) == [Hello(name, extended=True), Hello(name, extended=False)]


def test_ehlo_without_a_name_is_refused_as_before() -> None:
    t = Transcript()
    t.output()
    assert t.feed(b"EHLO\r\n") == b"501 5.5.4 EHLO needs a domain\r\n"


# -- MAIL FROM / RCPT TO (RFC 5321 §4.1.2; RFC 6531 §3.3) -------------------------


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        (b"MAIL FROM:<c\x00@remote.test>", CONTROL_SENDER),
        (b"MAIL FROM:<c@remote.test\rX-Inj: 1>", CONTROL_SENDER),
        (b'MAIL FROM:<"c\rX-Inj: 1"@remote.test>', CONTROL_SENDER),
        (b'MAIL FROM:<"c\\\x00"@remote.test>', CONTROL_SENDER),
        (b"MAIL FROM:<@relay\rX-Inj: 1:c@remote.test>", CONTROL_SENDER),
        ("MAIL FROM:<j\u0085rg@remote.test> SMTPUTF8".encode(), CONTROL_SENDER),
        ("MAIL FROM:<jörg\u2028X-Inj@remote.test> SMTPUTF8".encode(), CONTROL_SENDER),
        ('MAIL FROM:<"j\u009brg"@remote.test> SMTPUTF8'.encode(), CONTROL_SENDER),
        (b"MAIL FROM:<c@remote.test> SIZE=1\rX-Inj=1", BAD_PARAM),
        (b"MAIL FROM:<c@remote.test> SIZE=1\x0bBODY=8BITMIME", BAD_PARAM),
        (b"MAIL FROM:<c@remote.test> \x00", BAD_PARAM),
        ("MAIL FROM:<c@remote.test> AUTH=<\u0085>".encode(), BAD_PARAM),
        (b"MAIL FROM:<c@remote.test> ENVID=a=b", BAD_PARAM),  # "=" is no xchar either
    ],
)
def test_sender_with_control_characters_is_refused(line: bytes, reply: bytes) -> None:
    t = Transcript().handshake()
    assert t.feed(line + b"\r\n") == reply
    assert t.of_type(MailFrom) == []


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        (b"RCPT TO:<alice\x00@example.test>", CONTROL_RECIPIENT),
        (b"RCPT TO:<alice@example.test\rX-Inj: 1>", CONTROL_RECIPIENT),
        (b'RCPT TO:<"alice\rX-Inj: 1"@example.test>', CONTROL_RECIPIENT),
        (b"RCPT TO:<@hop\x00:alice@example.test>", CONTROL_RECIPIENT),
        ("RCPT TO:<alice\u2028@example.test>".encode(), CONTROL_RECIPIENT),
        ("RCPT TO:<ali\u0085ce@example.test>".encode(), CONTROL_RECIPIENT),
        (b"RCPT TO:<postmaster>\rX-Inj: 1", BAD_PARAM),
        (b"RCPT TO:<alice@example.test> NOTIFY=NEVER\rX-Inj=1", BAD_PARAM),
    ],
)
def test_recipient_with_control_characters_is_refused(line: bytes, reply: bytes) -> None:
    t = Transcript().handshake()
    assert t.feed(b"MAIL FROM:<c@remote.test> SMTPUTF8\r\n") == b"250 2.1.0 Sender OK\r\n"
    assert t.feed(line + b"\r\n") == reply
    assert t.of_type(RcptTo) == []


# -- ENVID / ORCPT (RFC 3461 §4, §4.2, §4.4: xtext of printable US-ASCII) -----------


@pytest.mark.parametrize(
    "envid",
    [
        b"a+0D+0AX-Inj:+201",  # an encoded CR LF
        b"a+0Db",
        b"a+00b",
        b"a+09b",  # TAB: not printable
        b"a+7Fb",
        b"a+85b",  # decodes to NEL, a C1 control
        b"j+C3+B6rg",  # hexchar encodes US-ASCII only
        "jörg".encode(),  # raw non-ASCII is no xchar
    ],
)
def test_envid_that_is_not_printable_xtext_is_refused(envid: bytes) -> None:
    t = Transcript().handshake()
    assert t.feed(b"MAIL FROM:<c@remote.test> ENVID=" + envid + b"\r\n") == BAD_XTEXT
    assert t.of_type(MailFrom) == []


@pytest.mark.parametrize(
    ("orcpt", "reply"),
    [
        (b"rfc822;a+0D+0AX-Inj:+201@remote.test", BAD_XTEXT),
        (b"rfc822;a+00@remote.test", BAD_XTEXT),
        (b"rfc822;a+0A@remote.test", BAD_XTEXT),
        (b"rfc822;a+9B@remote.test", BAD_XTEXT),
        (b"rfc822;j+C3+B6rg@remote.test", BAD_XTEXT),
        ("rfc822;jörg@remote.test".encode(), BAD_XTEXT),
        ("rfc\u0085822;a@remote.test".encode(), BAD_PARAM),
        ("rfcé;a@remote.test".encode(), b"501 5.5.4 Bad ORCPT value\r\n"),
    ],
)
def test_orcpt_that_is_not_printable_xtext_is_refused(orcpt: bytes, reply: bytes) -> None:
    t = Transcript().handshake()
    assert t.feed(b"MAIL FROM:<c@remote.test> SMTPUTF8\r\n") == b"250 2.1.0 Sender OK\r\n"
    assert t.feed(b"RCPT TO:<alice@example.test> ORCPT=" + orcpt + b"\r\n") == reply
    assert t.of_type(RcptTo) == []


def test_printable_envid_and_orcpt_still_pass_decoded() -> None:
    t = Transcript().handshake()
    t.run("""
    C: MAIL FROM:<c@remote.test> ENVID=a+20b+2B+3Dc\\x{E9}
    C: RCPT TO:<alice@example.test> ORCPT=utf-8;j\\x{F6}rg+2Bx@remote.test
    S: 250 2.1.0 Sender OK
    S: 250 2.1.5 Recipient OK
    """)
    (mail,) = t.of_type(MailFrom)
    (rcpt,) = t.of_type(RcptTo)
    assert mail.params.envid == "a b+=c\\x{E9}"
    assert rcpt.params.orcpt == "utf-8;j\\x{F6}rg+x@remote.test"  # RFC 6533 §3


# -- AUTH identities (RFC 4616 §2 via SASLprep, RFC 4013 §2.3) ---------------------


def _b64(raw: bytes) -> bytes:
    return base64.b64encode(raw)


@pytest.mark.parametrize(
    "command",
    [
        b"AUTH PLAIN " + _b64(b"\x00alice\r\nX-Inj: 1\x00secret"),
        b"AUTH PLAIN " + _b64(b"\x00alice\x1b[2J\x00secret"),
        b"AUTH PLAIN " + _b64(b"bob\rX\x00alice\x00secret"),  # the authzid
        b"AUTH PLAIN " + _b64("\x00ali\u2028ce\x00secret".encode()),
        b"AUTH LOGIN " + _b64(b"alice\nX-Inj: 1"),
    ],
)
def test_user_names_with_control_characters_are_refused(command: bytes) -> None:
    t = Transcript(SUBMISSIONS).handshake()
    assert t.feed(command + b"\r\n") == BAD_USER
    assert t.of_type(AuthRequest) == [] and t.server.authenticated_user is None


def test_auth_login_user_with_a_control_character_is_refused_after_the_prompt() -> None:
    t = Transcript(SUBMISSIONS).handshake()
    assert t.feed(b"AUTH LOGIN\r\n") == b"334 VXNlcm5hbWU6\r\n"  # "Username:"
    assert t.feed(_b64(b"alice\x00") + b"\r\n") == BAD_USER
    assert t.feed(b"NOOP\r\n") == b"250 2.0.0 OK\r\n"
