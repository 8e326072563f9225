"""Greeting, CAPABILITY, STARTTLS, LOGIN and AUTHENTICATE, as C:/S: transcripts byte for byte.

Commands of any state and of the not-authenticated state (RFC 9051 §6.1,
§6.2), with the storage of :mod:`tests.proto.imap.imap_transcript`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.proto.imap.imap_transcript import (
    CAPS_AUTHED,
    CAPS_PLAIN,
    CAPS_TLS,
    HOST,
    PLAIN,
    IMAPTranscript,
)

GREETING_TLS = f"* OK [CAPABILITY {CAPS_TLS}] {HOST} IMAP4rev2 ready"
GREETING_PLAIN = f"* OK [CAPABILITY {CAPS_PLAIN}] {HOST} IMAP4rev2 ready"
LOGGED_IN = f"OK [CAPABILITY {CAPS_AUTHED}] Logged in"
# base64 of "\0alice@example.test\0alice-pw" and of a wrong password.
PLAIN_OK = "AGFsaWNlQGV4YW1wbGUudGVzdABhbGljZS1wdw=="
PLAIN_WRONG = "AGFsaWNlQGV4YW1wbGUudGVzdAB3cm9uZw=="


@pytest.fixture
def t(root: Path) -> IMAPTranscript:
    return IMAPTranscript(root)


# -- greeting, CAPABILITY, TLS and login (RFC 9051 §6.1, §6.2) ---------------------


def test_capabilities_before_tls_offer_starttls_and_refuse_login(root: Path) -> None:
    t = IMAPTranscript(root, PLAIN)
    t.run(f"""
        S: {GREETING_PLAIN}
        C: a CAPABILITY
        S: * CAPABILITY {CAPS_PLAIN}
        S: a OK CAPABILITY completed
        C: b LOGIN alice@example.test alice-pw
        S: b NO [PRIVACYREQUIRED] LOGIN is disabled before STARTTLS
        C: c AUTHENTICATE PLAIN {PLAIN_OK}
        S: c NO [PRIVACYREQUIRED] Authentication needs TLS first
        C: d STARTTLS
        S: d OK Begin TLS negotiation now
        C: e CAPABILITY
        S: * CAPABILITY {CAPS_TLS}
        S: e OK CAPABILITY completed
        C: f STARTTLS
        S: f BAD TLS already active
        C: g LOGIN alice@example.test alice-pw
        S: g {LOGGED_IN}
        C: h CAPABILITY
        S: * CAPABILITY {CAPS_AUTHED}
        S: h OK CAPABILITY completed
    """)
    assert t.server.authenticated


def test_commands_pipelined_behind_starttls_are_discarded(root: Path) -> None:
    # RFC 9051 §6.2.1: anything after STARTTLS in the same write is dropped.
    t = IMAPTranscript(root, PLAIN)
    t.run(f"""
        S: {GREETING_PLAIN}
        C: a STARTTLS
        C: b LOGIN alice@example.test alice-pw
        S: a OK Begin TLS negotiation now
        C: c NOOP
        S: c OK NOOP completed
    """)
    assert not t.server.authenticated


def test_starttls_without_a_certificate_is_bad(root: Path) -> None:
    from mailstead.proto.imap.server import IMAPSettings

    t = IMAPTranscript(root, IMAPSettings(HOST))
    assert b"STARTTLS" not in t.output()
    t.run("""
        C: a STARTTLS
        S: a BAD TLS is not available
    """)


def test_authenticate_plain_with_initial_response(t: IMAPTranscript) -> None:
    t.run(f"""
        S: {GREETING_TLS}
        C: a AUTHENTICATE PLAIN {PLAIN_OK}
        S: a {LOGGED_IN}
        C: b LOGIN alice@example.test alice-pw
        S: b BAD Already logged in
    """)


def test_authenticate_plain_with_continuation(t: IMAPTranscript) -> None:
    t.run(f"""
        S: {GREETING_TLS}
        C: a AUTHENTICATE PLAIN
        S: +\x20
        C: {PLAIN_OK}
        S: a {LOGGED_IN}
    """)


def test_authenticate_login_mechanism(t: IMAPTranscript) -> None:
    t.run(f"""
        S: {GREETING_TLS}
        C: a AUTHENTICATE LOGIN
        S: + VXNlcm5hbWU6
        C: YWxpY2VAZXhhbXBsZS50ZXN0
        S: + UGFzc3dvcmQ6
        C: YWxpY2UtcHc=
        S: a {LOGGED_IN}
    """)


def test_authenticate_cancelled_with_star(t: IMAPTranscript) -> None:
    # RFC 9051 §6.2.2: "*" cancels; the server answers BAD.
    t.run(f"""
        S: {GREETING_TLS}
        C: a AUTHENTICATE PLAIN
        S: +\x20
        C: *
        S: a BAD Authentication cancelled
        C: b AUTHENTICATE CRAM-MD5
        S: b NO Unsupported authentication mechanism
        C: c LOGIN alice@example.test alice-pw
        S: c {LOGGED_IN}
    """)


def test_literal_login(t: IMAPTranscript) -> None:
    t.run(f"""
        S: {GREETING_TLS}
        C: a LOGIN {{18}}
        S: + Ready for literal data
        C: alice@example.test {{8+}}
        C: alice-pw
        S: a {LOGGED_IN}
    """)


def test_three_failed_logins_end_the_session(t: IMAPTranscript) -> None:
    t.run(f"""
        S: {GREETING_TLS}
        C: a LOGIN alice@example.test wrong
        S: a NO [AUTHENTICATIONFAILED] Authentication failed
        C: b AUTHENTICATE PLAIN {PLAIN_WRONG}
        S: b NO [AUTHENTICATIONFAILED] Authentication failed
        C: c LOGIN nobody@example.test alice-pw
        S: c NO [AUTHENTICATIONFAILED] Authentication failed
        S: * BYE Too many failed logins
    """)
    assert t.closed
    assert t.feed(b"d LOGIN alice@example.test alice-pw\r\n") == b""


def test_commands_before_login(t: IMAPTranscript) -> None:
    t.run(f"""
        S: {GREETING_TLS}
        C: a SELECT INBOX
        S: a BAD Log in first
        C: b ENABLE IMAP4rev2
        S: b BAD Log in first
        C: c FROB
        S: c BAD Unknown command FROB
        C: d NOOP
        S: d OK NOOP completed
        C: e ID NIL
        S: * ID ("name" "Mailstead")
        S: e OK ID completed
        C: f LOGOUT
        S: * BYE Logging out
        S: f OK LOGOUT completed
    """)
    assert t.closed
