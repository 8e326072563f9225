"""Login (USER/PASS, AUTH per RFC 5034) and STLS (RFC 2595), as transcripts."""

from __future__ import annotations

from mailstead.proto.pop3.events import AuthRequest, StartTLS
from mailstead.proto.pop3.server import State
from mailstead.proto.sasl import Credentials
from tests.proto.pop3.transcript import PLAIN, Transcript

# base64 of "\0alice\0secret", "\0alice\0wrong", "alice", "secret", "wrong"
PLAIN_OK = "AGFsaWNlAHNlY3JldA=="
PLAIN_BAD = "AGFsaWNlAHdyb25n"
ALICE, SECRET, WRONG = "YWxpY2U=", "c2VjcmV0", "d3Jvbmc="

CAPA_AFTER_TLS = """
    S: +OK Capability list follows
    S: TOP
    S: UIDL
    S: RESP-CODES
    S: AUTH-RESP-CODE
    S: PIPELINING
    S: EXPIRE NEVER
    S: USER
    S: SASL PLAIN LOGIN
    S: IMPLEMENTATION Mailstead
    S: .
"""


def test_plain_listener_offers_stls_and_no_login_until_tls() -> None:
    t = Transcript(PLAIN)
    t.run(
        """
    S: +OK pop.example.test Mailstead POP3 ready
    C: CAPA
    S: +OK Capability list follows
    S: TOP
    S: UIDL
    S: RESP-CODES
    S: AUTH-RESP-CODE
    S: PIPELINING
    S: EXPIRE NEVER
    S: STLS
    S: IMPLEMENTATION Mailstead
    S: .
    C: USER alice
    S: -ERR Login needs TLS: send STLS first
    C: PASS secret
    S: -ERR Login needs TLS: send STLS first
    C: AUTH PLAIN AGFsaWNlAHNlY3JldA==
    S: -ERR Login needs TLS: send STLS first
    C: STLS
    S: +OK Begin TLS negotiation
    C: CAPA
    """
        + CAPA_AFTER_TLS
        + """
    C: STLS
    S: -ERR TLS already active
    C: USER alice
    S: +OK Send PASS
    C: PASS secret
    S: +OK Logged in, 3 messages (138 octets)
    """
    )
    assert StartTLS() in t.events
    assert t.server.secure and t.server.state is State.TRANSACTION


def test_commands_pipelined_behind_stls_are_discarded() -> None:
    t = Transcript(PLAIN)
    t.run("""
    S: +OK pop.example.test Mailstead POP3 ready
    C: STLS
    C: USER alice
    C: PASS secret
    S: +OK Begin TLS negotiation
    C: STAT
    S: -ERR STAT not valid in the AUTHORIZATION state
    """)
    assert not any(isinstance(e, AuthRequest) for e in t.events)


def test_bytes_arriving_during_the_handshake_are_discarded() -> None:
    t = Transcript(PLAIN)
    t.output()
    t.server.receive_data(b"STLS\r\n")
    assert isinstance(t.server.next_event(), StartTLS)
    t.server.receive_data(b"USER mallory\r\n")  # plaintext injected mid-handshake
    t.server.tls_started()
    assert t.server.data_to_send() == b"+OK Begin TLS negotiation\r\n"
    assert t.feed(b"PASS x\r\n") == b"-ERR Send USER first\r\n"


def test_without_a_certificate_login_needs_the_pop3s_port() -> None:
    from mailstead.proto.pop3.server import POP3Settings

    t = Transcript(POP3Settings(hostname="pop.example.test"))
    t.run("""
    S: +OK pop.example.test Mailstead POP3 ready
    C: STLS
    S: -ERR STLS not available
    C: USER alice
    S: -ERR Login needs TLS: use the POP3S port
    """)


def test_auth_plain_with_initial_response() -> None:
    t = Transcript()
    t.run(f"""
    S: +OK pop.example.test Mailstead POP3 ready
    C: AUTH PLAIN {PLAIN_OK}
    S: +OK Logged in, 3 messages (138 octets)
    """)
    assert t.events == [AuthRequest("PLAIN", Credentials("alice", "secret"))]


def test_auth_plain_with_empty_challenge() -> None:
    t = Transcript()
    t.run(f"""
    S: +OK pop.example.test Mailstead POP3 ready
    C: AUTH PLAIN
    S: +{" "}
    C: {PLAIN_OK}
    S: +OK Logged in, 3 messages (138 octets)
    """)


def test_auth_login_exchange() -> None:
    t = Transcript()
    t.run(f"""
    S: +OK pop.example.test Mailstead POP3 ready
    C: AUTH LOGIN
    S: + VXNlcm5hbWU6
    C: {ALICE}
    S: + UGFzc3dvcmQ6
    C: {SECRET}
    S: +OK Logged in, 3 messages (138 octets)
    """)


def test_auth_cancelled_with_star() -> None:
    t = Transcript()
    t.run(f"""
    S: +OK pop.example.test Mailstead POP3 ready
    C: AUTH LOGIN
    S: + VXNlcm5hbWU6
    C: *
    S: -ERR Authentication cancelled
    C: AUTH LOGIN {ALICE}
    S: + UGFzc3dvcmQ6
    C: *
    S: -ERR Authentication cancelled
    C: STAT
    S: -ERR STAT not valid in the AUTHORIZATION state
    """)


def test_auth_without_mechanism_lists_them_and_unknown_is_refused() -> None:
    t = Transcript()
    t.run("""
    S: +OK pop.example.test Mailstead POP3 ready
    C: AUTH
    S: +OK Supported mechanisms follow
    S: PLAIN
    S: LOGIN
    S: .
    C: AUTH CRAM-MD5
    S: -ERR Unrecognized authentication type
    C: AUTH PLAIN !!notbase64
    S: -ERR Invalid base64 data
    """)


def test_wrong_password_says_auth_and_three_failures_close() -> None:
    t = Transcript()
    t.run(f"""
    S: +OK pop.example.test Mailstead POP3 ready
    C: USER alice
    S: +OK Send PASS
    C: PASS wrong
    S: -ERR [AUTH] Authentication failed
    C: PASS secret
    S: -ERR Send USER first
    C: AUTH PLAIN {PLAIN_BAD}
    S: -ERR [AUTH] Authentication failed
    C: AUTH LOGIN {ALICE}
    S: + UGFzc3dvcmQ6
    C: {WRONG}
    S: -ERR [AUTH] Authentication failed, closing connection
    """)
    assert t.closed


def test_password_with_spaces() -> None:
    t = Transcript()
    t.drops.passwords["alice"] = "correct horse battery"
    t.run("""
    S: +OK pop.example.test Mailstead POP3 ready
    C: USER alice
    S: +OK Send PASS
    C: PASS correct horse battery
    S: +OK Logged in, 3 messages (138 octets)
    """)


def test_locked_maildrop_says_in_use_and_stays_in_authorization() -> None:
    t = Transcript()
    t.run("""
    S: +OK pop.example.test Mailstead POP3 ready
    C: USER carol
    S: +OK Send PASS
    C: PASS secret
    S: -ERR [IN-USE] Maildrop is locked by another session
    C: STAT
    S: -ERR STAT not valid in the AUTHORIZATION state
    C: USER alice
    S: +OK Send PASS
    C: PASS secret
    S: +OK Logged in, 3 messages (138 octets)
    """)


def test_login_delay_and_maildrop_failure_codes() -> None:
    t = Transcript()
    t.output()
    t.server.receive_data(b"USER alice\r\nPASS secret\r\nUSER alice\r\nPASS secret\r\n")
    assert isinstance(t.server.next_event(), AuthRequest)
    t.server.auth_result("alice")
    t.server.login_too_soon()
    assert isinstance(t.server.next_event(), AuthRequest)
    t.server.auth_result("alice")
    t.server.maildrop_failed()
    assert t.server.data_to_send() == (
        b"+OK Send PASS\r\n-ERR [LOGIN-DELAY] Minimum time between logins not elapsed\r\n"
        b"+OK Send PASS\r\n-ERR [SYS/TEMP] Maildrop unavailable, try again later\r\n"
    )
