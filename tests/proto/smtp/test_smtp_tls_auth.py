"""STARTTLS (RFC 3207) and AUTH (RFC 4954) as the MTA and MSA roles offer them."""

from __future__ import annotations

from dataclasses import replace

import pytest

from mailstead.limits import SMTPLimits
from mailstead.proto.sasl import Credentials
from mailstead.proto.smtp.events import AuthRequest, Hello, StartTLS
from mailstead.proto.smtp.server import ServerSettings
from tests.proto.smtp.transcript import SUBMISSION, SUBMISSIONS, Transcript

# base64 of "\0alice\0secret", "\0alice\0wrong", "alice", "secret", "wrong"
PLAIN_OK = "AGFsaWNlAHNlY3JldA=="
PLAIN_BAD = "AGFsaWNlAHdyb25n"
ALICE, SECRET, WRONG = "YWxpY2U=", "c2VjcmV0", "d3Jvbmc="


def _after_tls(settings: ServerSettings = SUBMISSION) -> Transcript:
    t = Transcript(settings)
    t.run("""
    S: 220 mx.example.test ESMTP Mailstead
    C: EHLO client.example
    S: 250-mx.example.test greets client.example
    S: 250-PIPELINING
    S: 250-SIZE 52428800
    S: 250-8BITMIME
    S: 250-SMTPUTF8
    S: 250-ENHANCEDSTATUSCODES
    S: 250-CHUNKING
    S: 250-DSN
    S: 250-STARTTLS
    S: 250 HELP
    C: STARTTLS
    S: 220 2.0.0 Ready to start TLS
    C: EHLO client.example
    S: 250-mx.example.test greets client.example
    S: 250-PIPELINING
    S: 250-SIZE 52428800
    S: 250-8BITMIME
    S: 250-SMTPUTF8
    S: 250-ENHANCEDSTATUSCODES
    S: 250-CHUNKING
    S: 250-DSN
    S: 250-AUTH PLAIN LOGIN
    S: 250 HELP
    """)
    return t


# -- STARTTLS ----------------------------------------------------------------------


def test_submission_offers_auth_only_after_starttls() -> None:
    t = _after_tls()
    assert t.server.secure
    assert StartTLS() in t.events


def test_starttls_resets_the_session_so_ehlo_is_needed_again() -> None:
    t = Transcript()
    t.run("""
    S: 220 mx.example.test ESMTP Mailstead
    C: EHLO client.example
    S: 250-mx.example.test greets client.example
    S: 250-PIPELINING
    S: 250-SIZE 52428800
    S: 250-8BITMIME
    S: 250-SMTPUTF8
    S: 250-ENHANCEDSTATUSCODES
    S: 250-CHUNKING
    S: 250-DSN
    S: 250-STARTTLS
    S: 250 HELP
    C: MAIL FROM:<carol@remote.test>
    S: 250 2.1.0 Sender OK
    C: STARTTLS
    S: 220 2.0.0 Ready to start TLS
    C: RCPT TO:<alice@example.test>
    S: 503 5.5.1 Send MAIL first
    C: MAIL FROM:<carol@remote.test>
    S: 503 5.5.1 Send EHLO or HELO first
    C: STARTTLS
    S: 503 5.5.1 TLS already active
    """)


def test_commands_pipelined_behind_starttls_are_discarded() -> None:
    # CVE-2011-0411: bytes sent in the clear must not run as commands under TLS.
    t = Transcript()
    t.handshake()
    said = t.feed(b"STARTTLS\r\nMAIL FROM:<evil@bad.example>\r\nRCPT TO:<alice@example.test>\r\n")
    assert said == b"220 2.0.0 Ready to start TLS\r\n"
    t.run("""
    C: HELO client.example
    S: 250 mx.example.test
    C: RCPT TO:<alice@example.test>
    S: 503 5.5.1 Send MAIL first
    """)
    assert [e for e in t.events if type(e).__name__ in ("MailFrom", "RcptTo")] == []


def test_bytes_arriving_before_the_handshake_ends_are_discarded() -> None:
    t = Transcript(auto_tls=False)
    t.handshake()
    assert t.feed(b"STARTTLS\r\n") == b"220 2.0.0 Ready to start TLS\r\n"
    assert t.server.awaiting == "tls"
    assert t.feed(b"MAIL FROM:<evil@bad.example>\r\n") == b""
    t.server.tls_started()
    assert t.feed(b"NOOP\r\n") == b"250 2.0.0 OK\r\n"
    assert t.server.buffered == 0


def test_starttls_with_an_argument() -> None:
    Transcript().handshake().run("""
    C: STARTTLS now
    S: 501 5.5.4 STARTTLS takes no arguments
    """)


# -- AUTH ----------------------------------------------------------------------------


def test_auth_plain_with_initial_response() -> None:
    t = _after_tls()
    t.run(f"""
    C: AUTH PLAIN {PLAIN_OK}
    S: 235 2.7.0 Authentication successful
    C: AUTH PLAIN {PLAIN_OK}
    S: 503 5.5.1 Already authenticated
    C: MAIL FROM:<alice@example.test>
    S: 250 2.1.0 Sender OK
    """)
    assert AuthRequest("PLAIN", Credentials("alice", "secret")) in t.events
    assert t.server.authenticated_user == "alice"


def test_auth_plain_with_an_empty_challenge_first() -> None:
    t = _after_tls()
    # The empty challenge is "334 " with its trailing space (RFC 4954 §4).
    assert t.feed(b"AUTH PLAIN\r\n") == b"334 \r\n"
    assert t.feed(f"{PLAIN_OK}\r\n".encode()) == b"235 2.7.0 Authentication successful\r\n"


def test_auth_login_asks_for_user_then_password() -> None:
    t = _after_tls()
    t.run(f"""
    C: auth login
    S: 334 VXNlcm5hbWU6
    C: {ALICE}
    S: 334 UGFzc3dvcmQ6
    C: {SECRET}
    S: 235 2.7.0 Authentication successful
    """)
    assert t.server.authenticated_user == "alice"


def test_auth_login_with_the_user_as_initial_response() -> None:
    _after_tls().run(f"""
    C: AUTH LOGIN {ALICE}
    S: 334 UGFzc3dvcmQ6
    C: {SECRET}
    S: 235 2.7.0 Authentication successful
    """)


def test_auth_cancelled_and_bad_base64() -> None:
    _after_tls().run("""
    C: AUTH LOGIN
    S: 334 VXNlcm5hbWU6
    C: *
    S: 501 5.0.0 Authentication cancelled
    C: AUTH LOGIN
    S: 334 VXNlcm5hbWU6
    C: not base64!
    S: 501 5.5.2 Invalid base64 data
    C: AUTH PLAIN ====
    S: 501 5.5.2 Invalid base64 data
    C: AUTH PLAIN =
    S: 501 5.5.2 Malformed PLAIN response
    C: AUTH CRAM-MD5
    S: 504 5.5.4 Unrecognized authentication type
    C: NOOP
    S: 250 2.0.0 OK
    """)


def test_failures_say_535_and_the_third_closes_the_session() -> None:
    t = _after_tls()
    t.run(f"""
    C: AUTH PLAIN {PLAIN_BAD}
    S: 535 5.7.8 Authentication credentials invalid
    C: AUTH LOGIN {ALICE}
    S: 334 UGFzc3dvcmQ6
    C: {WRONG}
    S: 535 5.7.8 Authentication credentials invalid
    C: AUTH PLAIN {PLAIN_BAD}
    S: 535 5.7.8 Authentication credentials invalid
    S: 421 4.7.0 Too many authentication failures
    C: AUTH PLAIN {PLAIN_OK}
    """)
    assert t.closed and t.server.authenticated_user is None


def test_auth_before_tls_on_submission_says_530() -> None:
    Transcript(SUBMISSION).handshake().run(f"""
    C: AUTH PLAIN {PLAIN_OK}
    S: 530 5.7.0 Must issue a STARTTLS command first
    C: MAIL FROM:<alice@example.test>
    S: 530 5.7.0 Must issue a STARTTLS command first
    """)


def test_mail_before_auth_on_submission_says_530() -> None:
    _after_tls().run("""
    C: MAIL FROM:<alice@example.test>
    S: 530 5.7.0 Authentication required
    """)


def test_auth_on_the_mta_port_is_not_available() -> None:
    Transcript().handshake().run(f"""
    C: AUTH PLAIN {PLAIN_OK}
    S: 502 5.5.1 AUTH not available on this port
    """)


def test_auth_needs_ehlo_and_no_transaction() -> None:
    t = Transcript(SUBMISSIONS)
    t.run(f"""
    S: 220 mx.example.test ESMTP Mailstead
    C: AUTH PLAIN {PLAIN_OK}
    S: 503 5.5.1 Send EHLO first
    C: HELO client.example
    S: 250 mx.example.test
    C: AUTH PLAIN {PLAIN_OK}
    S: 503 5.5.1 Send EHLO first
    """)


def test_auth_during_a_transaction_is_refused() -> None:
    settings = replace(SUBMISSIONS, auth_required=False)
    Transcript(settings).handshake().run(f"""
    C: MAIL FROM:<carol@remote.test>
    S: 250 2.1.0 Sender OK
    C: AUTH PLAIN {PLAIN_OK}
    S: 503 5.5.1 AUTH not allowed during a mail transaction
    """)


def test_implicit_tls_offers_auth_at_once() -> None:
    t = Transcript(SUBMISSIONS)
    t.run(f"""
    S: 220 mx.example.test ESMTP Mailstead
    C: EHLO client.example
    S: 250-mx.example.test greets client.example
    S: 250-PIPELINING
    S: 250-SIZE 52428800
    S: 250-8BITMIME
    S: 250-SMTPUTF8
    S: 250-ENHANCEDSTATUSCODES
    S: 250-CHUNKING
    S: 250-DSN
    S: 250-AUTH PLAIN LOGIN
    S: 250 HELP
    C: AUTH PLAIN {PLAIN_OK}
    S: 235 2.7.0 Authentication successful
    C: STARTTLS
    S: 503 5.5.1 TLS already active
    """)


def test_auth_without_tls_when_the_role_allows_it() -> None:
    settings = replace(SUBMISSION, tls_available=False, auth_requires_tls=False)
    t = Transcript(settings).handshake()
    assert t.feed(f"AUTH PLAIN {PLAIN_OK}\r\n".encode()) == (
        b"235 2.7.0 Authentication successful\r\n"
    )


def test_starttls_clears_an_authentication_made_in_the_clear() -> None:
    settings = replace(SUBMISSION, auth_requires_tls=False)
    t = Transcript(settings).handshake()
    assert t.feed(f"AUTH PLAIN {PLAIN_OK}\r\n".encode()).startswith(b"235 ")
    assert t.feed(b"STARTTLS\r\n") == b"220 2.0.0 Ready to start TLS\r\n"
    assert t.server.authenticated_user is None
    t.run("""
    C: EHLO client.example
    S: 250-mx.example.test greets client.example
    S: 250-PIPELINING
    S: 250-SIZE 52428800
    S: 250-8BITMIME
    S: 250-SMTPUTF8
    S: 250-ENHANCEDSTATUSCODES
    S: 250-CHUNKING
    S: 250-DSN
    S: 250-AUTH PLAIN LOGIN
    S: 250 HELP
    C: MAIL FROM:<alice@example.test>
    S: 530 5.7.0 Authentication required
    """)
    assert [e for e in t.events if isinstance(e, Hello)][-1] == Hello("client.example", True)


def test_an_overlong_sasl_line_ends_the_exchange() -> None:
    t = _after_tls(replace(SUBMISSION, limits=SMTPLimits(sasl_line=64)))
    assert t.feed(b"AUTH LOGIN\r\n") == b"334 VXNlcm5hbWU6\r\n"
    assert t.feed(b"A" * 100 + b"\r\nNOOP\r\n") == b"500 5.5.2 Line too long\r\n250 2.0.0 OK\r\n"


@pytest.mark.parametrize("mechanism", ["PLAIN", "plain", "Login"])
def test_mechanism_names_are_case_insensitive(mechanism: str) -> None:
    assert _after_tls().feed(f"AUTH {mechanism}\r\n".encode()).startswith(b"334 ")
