"""The sans-IO SMTP client, as transcripts: S: is the remote host, C: the client."""

from __future__ import annotations

import pytest

from mailstead.limits import SMTPClientLimits
from mailstead.proto.errors import LocalProtocolError
from mailstead.proto.smtp.address import decode_xtext
from mailstead.proto.smtp.client_events import (
    CLOSED,
    Closed,
    MessageResult,
    Ready,
    SessionFailed,
    StartTLSRequested,
)
from mailstead.proto.smtp.events import NEED_DATA, PAUSED, MailParams, RcptParams, Recipient
from mailstead.proto.smtp.extensions import encode_xtext
from mailstead.proto.smtp.replies import Reply
from tests.proto.smtp.client_transcript import ClientTranscript

PLAIN_EHLO = """
    S: 220 mx.remote.test ESMTP
    C: EHLO client.example
    S: 250-mx.remote.test
    S: 250-SIZE 10000
    S: 250-8BITMIME
    S: 250 ENHANCEDSTATUSCODES
"""

PIPELINING_EHLO = """
    S: 220 mx.remote.test ESMTP
    C: EHLO client.example
    S: 250-mx.remote.test
    S: 250-PIPELINING
    S: 250-8BITMIME
    S: 250 ENHANCEDSTATUSCODES
"""

CHUNKING_EHLO = """
    S: 220 mx.remote.test ESMTP
    C: EHLO client.example
    S: 250-mx.remote.test
    S: 250-PIPELINING
    S: 250-CHUNKING
    S: 250-SMTPUTF8
    S: 250 8BITMIME
"""


def session(
    script: str = PLAIN_EHLO, *, require_tls: bool = False, tls_available: bool = True
) -> ClientTranscript:
    t = ClientTranscript(require_tls=require_tls, tls_available=tls_available)
    t.run(script)
    return t


# -- happy paths ------------------------------------------------------------------


def test_lockstep_delivery_with_dot_stuffing_and_quit() -> None:
    t = session()
    (ready,) = t.of_type(Ready)
    assert ready == Ready(False, frozenset({"SIZE", "8BITMIME", "ENHANCEDSTATUSCODES"}), 10000)
    assert t.client.next_event() is PAUSED
    t.send(["bob@remote.test"], b"Subject: hi\r\n\r\n.hello\r\n.\r\nbye")
    t.run("""
        C: MAIL FROM:<alice@example.test> SIZE=31
        S: 250 2.1.0 Sender OK
        C: RCPT TO:<bob@remote.test>
        S: 250 2.1.5 Recipient OK
        C: DATA
        S: 354 End data with <CR><LF>.<CR><LF>
        C: Subject: hi
        C:
        C: ..hello
        C: ..
        C: bye
        C: .
        S: 250 2.0.0 Queued as ABC
    """)
    assert t.outcomes() == [("bob@remote.test", "delivered", 250, "2.0.0", True)]
    result = t.of_type(MessageResult)[0]
    assert result.reply == Reply(250, "2.0.0", "Queued as ABC")
    assert not result.dsn_passed
    t.client.quit()
    t.run("""
        C: QUIT
        S: 221 2.0.0 Bye
    """)
    assert isinstance(t.events[-1], Closed)
    assert t.client.next_event() is CLOSED


def test_pipelining_sends_mail_rcpts_and_data_in_one_write() -> None:
    t = session(PIPELINING_EHLO)
    t.send(["bob@remote.test", "carol@remote.test"], b"Hi\r\n")
    t.run("""
        C: MAIL FROM:<alice@example.test>
        C: RCPT TO:<bob@remote.test>
        C: RCPT TO:<carol@remote.test>
        C: DATA
        S: 250 2.1.0 OK
        S: 250 2.1.5 OK
        S: 250 2.1.5 OK
        S: 354 Go ahead
        C: Hi
        C: .
        S: 250 2.0.0 OK
    """)
    assert [o[1] for o in t.outcomes()] == ["delivered", "delivered"]


def test_pipelined_replies_may_arrive_one_by_one() -> None:
    t = session(PIPELINING_EHLO)
    t.send(["bob@remote.test"], b"Hi\r\n")
    t.run("""
        C: MAIL FROM:<alice@example.test>
        C: RCPT TO:<bob@remote.test>
        C: DATA
        S: 250 2.1.0 OK
    """)
    assert t.client.timeout == 300.0  # RCPT (RFC 5321 §4.5.3.2.3)
    t.run("""
        S: 250 2.1.5 OK
    """)
    assert t.client.timeout == 120.0  # DATA initiation (§4.5.3.2.4)
    t.run("""
        S: 354 Go ahead
        C: Hi
        C: .
    """)
    assert t.client.timeout == 600.0  # DATA termination (§4.5.3.2.6)
    t.run("S: 250 2.0.0 OK")
    assert t.client.timeout is None


def test_chunking_sends_bdat_last_after_the_rcpt_replies() -> None:
    t = session(CHUNKING_EHLO)
    t.send(["bob@remote.test"], b"Subject: x\r\n\r\n.dot\r\n")
    t.run("""
        C: MAIL FROM:<alice@example.test>
        C: RCPT TO:<bob@remote.test>
    """)
    t.run("""
        S: 250 2.1.0 OK
        S: 250 2.1.5 OK
        C: BDAT 20 LAST
        C: Subject: x
        C:
        C: .dot
    """)
    assert t.client.timeout == 600.0
    t.run("S: 250 2.0.0 Queued")
    assert t.outcomes() == [("bob@remote.test", "delivered", 250, "2.0.0", True)]


def test_chunking_splits_big_messages_and_pipelines_the_chunks() -> None:
    t = ClientTranscript(limits=SMTPClientLimits(bdat_chunk=8))
    t.run(CHUNKING_EHLO)
    t.send(["bob@remote.test"], b"0123456789abcdef\r\n")
    t.output()
    said = t.feed(b"250 2.1.0 OK\r\n250 2.1.5 OK\r\n")
    assert said == (b"BDAT 8\r\n01234567BDAT 8\r\n89abcdefBDAT 2 LAST\r\n\r\n")
    assert t.client.timeout == 180.0  # a non-LAST chunk: the data block timeout
    assert t.feed(b"250 2.0.0 8 octets\r\n250 2.0.0 16 octets\r\n250 2.0.0 Queued\r\n") == b""
    assert t.outcomes()[0][1] == "delivered"


def test_chunk_refused_midway_fails_the_message_and_resets_next_time() -> None:
    t = ClientTranscript(limits=SMTPClientLimits(bdat_chunk=8))
    t.run(CHUNKING_EHLO)
    t.send(["bob@remote.test"], b"0123456789abcdef\r\n")
    t.output()
    t.feed(b"250 2.1.0 OK\r\n250 2.1.5 OK\r\n")
    t.feed(b"552 5.3.4 Too big\r\n503 5.5.1 No\r\n503 5.5.1 No\r\n")
    assert t.outcomes() == [("bob@remote.test", "failed", 552, "5.3.4", True)]
    t.send(["bob@remote.test"], b"x\r\n")
    t.run("""
        C: RSET
        S: 250 2.0.0 OK
        C: MAIL FROM:<alice@example.test>
        C: RCPT TO:<bob@remote.test>
    """)


def test_empty_message_is_one_empty_last_chunk() -> None:
    t = session(CHUNKING_EHLO)
    t.send(["bob@remote.test"], b"")
    t.output()
    assert t.feed(b"250 OK\r\n250 OK\r\n") == b"BDAT 0 LAST\r\n"


# -- EHLO, HELO and what the host offers ------------------------------------------------


def test_ehlo_refused_falls_back_to_helo_without_extensions() -> None:
    t = session("""
        S: 220 mx.remote.test ESMTP
        C: EHLO client.example
        S: 502 5.5.1 Command not implemented
        C: HELO client.example
        S: 250 mx.remote.test
    """)
    assert t.of_type(Ready) == [Ready(False, frozenset(), None)]
    assert not t.client.esmtp
    # No 8BITMIME after HELO: 8-bit content is refused here (RFC 6152 §3).
    t.send(["bob@remote.test"], "Subject: café\r\n".encode())
    assert t.output() == b""
    assert t.outcomes() == [("bob@remote.test", "failed", 554, "5.6.3", False)]
    t.send(["bob@remote.test"], b"plain\r\n")
    t.run("""
        C: MAIL FROM:<alice@example.test>
        S: 250 OK
        C: RCPT TO:<bob@remote.test>
    """)


def test_helo_refused_too_fails_the_session_permanently() -> None:
    t = session("""
        S: 220 mx.remote.test ESMTP
        C: EHLO client.example
        S: 500 What?
        C: HELO client.example
        S: 550 5.7.1 Go away
        C: QUIT
    """)
    assert t.failure == SessionFailed(Reply(550, "5.7.1", "Go away"), True, True)


def test_ehlo_4xx_defers_the_session() -> None:
    t = session("""
        S: 220 mx.remote.test ESMTP
        C: EHLO client.example
        S: 451 4.3.0 Try later
        C: QUIT
    """)
    assert t.failure == SessionFailed(Reply(451, "4.3.0", "Try later"), True, False)


def test_size_too_big_fails_without_sending() -> None:
    t = session()
    t.send(["bob@remote.test", "carol@remote.test"], b"x" * 10000)
    assert t.output() == b""
    assert t.outcomes() == [
        ("bob@remote.test", "failed", 552, "5.3.4", False),
        ("carol@remote.test", "failed", 552, "5.3.4", False),
    ]
    # Exactly the limit (with the CRLF added at the end) is sent.
    t.send(["bob@remote.test"], b"x" * 9998)
    t.run("C: MAIL FROM:<alice@example.test> SIZE=10000")


def test_smtputf8_missing_fails_with_5_6_7() -> None:
    t = session()
    t.send(["josé@remote.test"], b"Hi\r\n")
    assert t.output() == b""
    assert t.outcomes() == [("josé@remote.test", "failed", 554, "5.6.7", False)]
    t.send(["bob@remote.test"], b"Hi\r\n", params=MailParams(smtputf8=True))
    assert t.output() == b""
    assert t.outcomes()[-1][3] == "5.6.7"


def test_smtputf8_and_8bitmime_are_declared_when_offered() -> None:
    t = session(CHUNKING_EHLO)
    t.send(["josé@remote.test"], "Subject: é\r\n".encode(), sender="zoë@example.test")
    t.run("""
        C: MAIL FROM:<zoë@example.test> BODY=8BITMIME SMTPUTF8
        C: RCPT TO:<josé@remote.test>
    """)


def test_dsn_parameters_are_passed_on_xtext_encoded_only_when_offered() -> None:
    t = session("""
        S: 220 mx.remote.test ESMTP
        C: EHLO client.example
        S: 250-mx.remote.test
        S: 250 DSN
    """)
    params = MailParams(ret="hdrs", envid="id+1=a b")
    rcpt = Recipient(
        "bob@remote.test", RcptParams(("SUCCESS", "FAILURE"), "rfc822;bob+x@remote.test")
    )
    t.client.send_message("alice@example.test", [rcpt], b"Hi\r\n", params)
    t.run("""
        C: MAIL FROM:<alice@example.test> RET=HDRS ENVID=id+2B1+3Da+20b
        S: 250 OK
        C: RCPT TO:<bob@remote.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob+2Bx@remote.test
        S: 250 OK
        C: DATA
    """)
    t.run("S: 354 go\nC: Hi\nC: .\nS: 250 OK")
    assert t.of_type(MessageResult)[0].dsn_passed
    plain = session()
    plain.client.send_message("alice@example.test", [rcpt], b"Hi\r\n", params)
    plain.run("C: MAIL FROM:<alice@example.test> SIZE=4")


def test_xtext_round_trips_through_the_servers_decoder() -> None:
    for value in ["simple", "a+b=c d", "~!\x7e"]:
        assert decode_xtext(encode_xtext(value)) == value
    assert encode_xtext("é") == "+C3+A9"


# -- per-recipient outcomes -------------------------------------------------------


def test_250_450_550_at_rcpt_give_exact_outcomes() -> None:
    t = session(PIPELINING_EHLO)
    t.send(["a@remote.test", "b@remote.test", "c@remote.test"], b"Hi\r\n")
    t.run("""
        C: MAIL FROM:<alice@example.test>
        C: RCPT TO:<a@remote.test>
        C: RCPT TO:<b@remote.test>
        C: RCPT TO:<c@remote.test>
        C: DATA
        S: 250 2.1.0 OK
        S: 250 2.1.5 OK
        S: 450 4.2.1 Mailbox busy
        S: 550 5.1.1 No such user
        S: 354 Go ahead
        C: Hi
        C: .
        S: 250 2.0.0 Queued
    """)
    assert t.outcomes() == [
        ("a@remote.test", "delivered", 250, "2.0.0", True),
        ("b@remote.test", "deferred", 450, "4.2.1", True),
        ("c@remote.test", "failed", 550, "5.1.1", True),
    ]
    (result,) = t.of_type(MessageResult)
    assert result.recipients[1].reply == Reply(450, "4.2.1", "Mailbox busy")


def test_all_rcpts_refused_sends_no_data_and_rset_before_the_next_message() -> None:
    t = session()
    t.send(["a@remote.test", "b@remote.test"], b"Hi\r\n")
    t.run("""
        C: MAIL FROM:<alice@example.test> SIZE=4
        S: 250 2.1.0 OK
        C: RCPT TO:<a@remote.test>
        S: 550 5.1.1 No such user
        C: RCPT TO:<b@remote.test>
        S: 451 4.3.0 Later
    """)
    assert t.outcomes() == [
        ("a@remote.test", "failed", 550, "5.1.1", True),
        ("b@remote.test", "deferred", 451, "4.3.0", True),
    ]
    assert t.of_type(MessageResult)[0].reply is None
    t.send(["c@remote.test"], b"Hi\r\n")
    t.run("""
        C: RSET
        S: 250 2.0.0 OK
        C: MAIL FROM:<alice@example.test> SIZE=4
    """)


def test_pipelined_data_after_all_rcpts_refused() -> None:
    t = session(PIPELINING_EHLO)
    t.send(["a@remote.test"], b"Hi\r\n")
    t.output()
    t.run("""
        S: 250 2.1.0 OK
        S: 550 5.1.1 No such user
        S: 554 5.5.1 No valid recipients
    """)
    assert t.outcomes() == [("a@remote.test", "failed", 550, "5.1.1", True)]
    # A host that says 354 anyway gets an empty message, not the content.
    t.send(["a@remote.test"], b"Hi\r\n")
    t.run("""
        C: RSET
        S: 250 OK
        C: MAIL FROM:<alice@example.test>
        C: RCPT TO:<a@remote.test>
        C: DATA
        S: 250 OK
        S: 550 5.1.1 No
        S: 354 Go on then
        C: .
        S: 554 5.5.1 Nothing
    """)
    assert t.outcomes() == [("a@remote.test", "failed", 550, "5.1.1", True)]


def test_mail_refused_covers_every_recipient() -> None:
    t = session(PIPELINING_EHLO)
    t.send(["a@remote.test", "b@remote.test"], b"Hi\r\n")
    t.output()
    t.run("""
        S: 553 5.7.1 Sender refused
        S: 503 5.5.1 Need MAIL
        S: 503 5.5.1 Need MAIL
        S: 503 5.5.1 Need MAIL
    """)
    assert [o[1:4] for o in t.outcomes()] == [("failed", 553, "5.7.1")] * 2
    # MAIL refused leaves no transaction at the host: no RSET.
    t.send(["a@remote.test"], b"Hi\r\n")
    assert t.output().startswith(b"MAIL FROM:")


def test_data_452_defers_every_accepted_recipient() -> None:
    t = session()
    t.send(["a@remote.test", "b@remote.test", "c@remote.test"], b"Hi\r\n")
    t.run("""
        C: MAIL FROM:<alice@example.test> SIZE=4
        S: 250 OK
        C: RCPT TO:<a@remote.test>
        S: 250 OK
        C: RCPT TO:<b@remote.test>
        S: 550 5.1.1 No such user
        C: RCPT TO:<c@remote.test>
        S: 250 OK
        C: DATA
        S: 452 4.3.1 Insufficient system storage
    """)
    assert t.outcomes() == [
        ("a@remote.test", "deferred", 452, "4.3.1", True),
        ("b@remote.test", "failed", 550, "5.1.1", True),
        ("c@remote.test", "deferred", 452, "4.3.1", True),
    ]


def test_end_of_data_554_fails_every_accepted_recipient() -> None:
    t = session()
    t.send(["a@remote.test"], b"Hi\r\n")
    t.run("""
        C: MAIL FROM:<alice@example.test> SIZE=4
        S: 250 OK
        C: RCPT TO:<a@remote.test>
        S: 250 OK
        C: DATA
        S: 354 go
        C: Hi
        C: .
        S: 554 5.7.1 Spam
    """)
    assert t.outcomes() == [("a@remote.test", "failed", 554, "5.7.1", True)]


def test_two_messages_over_one_connection() -> None:
    t = session(PIPELINING_EHLO)
    for n in (1, 2):
        t.send(["bob@remote.test"], f"Message {n}\r\n".encode())
        t.run(f"""
            C: MAIL FROM:<alice@example.test>
            C: RCPT TO:<bob@remote.test>
            C: DATA
            S: 250 OK
            S: 250 OK
            S: 354 go
            C: Message {n}
            C: .
            S: 250 2.0.0 Queued as {n}
        """)
    assert [r.reply for r in t.of_type(MessageResult)] == [
        Reply(250, "2.0.0", "Queued as 1"),
        Reply(250, "2.0.0", "Queued as 2"),
    ]


def test_rset_refused_defers_the_message_and_ends_the_session() -> None:
    t = session()
    t.send(["a@remote.test"], b"Hi\r\n")
    t.run("C: MAIL FROM:<alice@example.test> SIZE=4\nS: 250 OK\nC: RCPT TO:<a@remote.test>")
    t.run("S: 550 5.1.1 No")
    t.send(["b@remote.test"], b"Hi\r\n")
    t.run("""
        C: RSET
        S: 500 5.5.1 What?
        C: QUIT
    """)
    assert t.outcomes() == [("b@remote.test", "deferred", 500, "5.5.1", True)]
    assert not t.failure.permanent


# -- STARTTLS -------------------------------------------------------------------------


STARTTLS_EHLO = """
    S: 220 mx.remote.test ESMTP
    C: EHLO client.example
    S: 250-mx.remote.test
    S: 250-PIPELINING
    S: 250 STARTTLS
    C: STARTTLS
"""


def test_opportunistic_starttls_then_ehlo_again() -> None:
    t = session(STARTTLS_EHLO)
    t.run("""
        S: 220 2.0.0 Ready to start TLS
        C: EHLO client.example
        S: 250-mx.remote.test
        S: 250 PIPELINING
    """)
    assert len(t.of_type(StartTLSRequested)) == 1
    assert t.of_type(Ready) == [Ready(True, frozenset({"PIPELINING"}), None)]
    assert t.client.secure


def test_starttls_refused_carries_on_in_clear_text_unless_required() -> None:
    t = session(STARTTLS_EHLO)
    t.run("S: 454 4.7.0 TLS not available")
    assert t.of_type(Ready) == [Ready(False, frozenset({"PIPELINING", "STARTTLS"}), None)]
    t = session(STARTTLS_EHLO, require_tls=True)
    t.run("""
        S: 454 4.7.0 TLS not available
        C: QUIT
    """)
    assert t.failure.reply.enhanced == "4.7.4"


def test_tls_required_but_not_offered_defers() -> None:
    t = session(PIPELINING_EHLO + "    C: QUIT\n", require_tls=True)
    assert t.failure == SessionFailed(
        Reply(451, "4.7.4", "TLS is required, but was not offered by the host"), False
    )
    assert t.of_type(Ready) == []


def test_starttls_offered_but_no_local_tls_goes_on_in_clear() -> None:
    t = session(STARTTLS_EHLO.replace("C: STARTTLS", ""), tls_available=False)
    assert t.of_type(Ready)[0].secure is False


def test_data_after_220_to_starttls_aborts() -> None:
    t = session(STARTTLS_EHLO)
    # A man in the middle appends a reply to be read once TLS is on.
    assert t.feed(b"220 Ready\r\n250 injected\r\n") == b""
    assert t.failure.reply.enhanced == "4.7.0"
    assert t.of_type(StartTLSRequested) == []
    assert isinstance(t.events[-1], Closed)


def test_data_arriving_before_the_handshake_aborts() -> None:
    t = ClientTranscript(auto_tls=False)
    t.run(STARTTLS_EHLO)
    assert t.feed(b"220 Ready\r\n") == b""
    assert t.client.timeout == 60.0  # the TLS handshake
    assert t.feed(b"250 injected\r\n") == b""
    assert t.failure.reply.enhanced == "4.7.0"
    with pytest.raises(LocalProtocolError):
        t.client.tls_started()


# -- failures ----------------------------------------------------------------------


def test_554_greeting_fails_permanently_with_quit() -> None:
    t = session("""
        S: 554 5.7.1 No SMTP service here
        C: QUIT
    """)
    assert t.failure == SessionFailed(Reply(554, "5.7.1", "No SMTP service here"), True, True)


def test_421_greeting_defers_without_quit() -> None:
    t = session("S: 421 4.3.2 Busy")
    assert t.failure == SessionFailed(Reply(421, "4.3.2", "Busy"), True, False)


def test_421_mid_transaction_defers_whatever_is_open() -> None:
    t = session(PIPELINING_EHLO)
    t.send(["a@remote.test", "b@remote.test", "c@remote.test"], b"Hi\r\n")
    t.output()
    t.run("""
        S: 250 OK
        S: 550 5.1.1 No such user
        S: 250 OK
        S: 421 4.4.2 Timeout, closing
    """)
    assert t.outcomes() == [
        ("a@remote.test", "failed", 550, "5.1.1", True),
        ("b@remote.test", "deferred", 421, "4.4.2", True),
        ("c@remote.test", "deferred", 421, "4.4.2", True),
    ]
    assert t.failure.reply.code == 421
    assert isinstance(t.events[-1], Closed)
    assert t.feed(b"250 late\r\n") == b""


def test_421_while_idle_ends_the_session() -> None:
    t = session()
    t.run("S: 421 4.4.2 Idle too long")
    assert t.failure.reply.code == 421


def test_connection_lost_after_the_dot_defers() -> None:
    t = session()
    t.send(["a@remote.test"], b"Hi\r\n")
    t.run("""
        C: MAIL FROM:<alice@example.test> SIZE=4
        S: 250 OK
        C: RCPT TO:<a@remote.test>
        S: 250 OK
        C: DATA
        S: 354 go
        C: Hi
        C: .
    """)
    t.feed(b"")
    assert t.outcomes() == [("a@remote.test", "deferred", 451, "4.4.2", False)]


def test_timeout_defers_and_eof_after_quit_closes() -> None:
    t = session()
    t.send(["a@remote.test"], b"Hi\r\n")
    t.output()
    t.client.timed_out()
    t.drive()
    assert t.outcomes() == [("a@remote.test", "deferred", 451, "4.4.2", False)]
    assert t.failure.reply.text == "Timeout waiting for mail reply"
    q = session()
    q.client.quit()
    assert q.output() == b"QUIT\r\n"
    q.feed(b"")
    assert isinstance(q.events[-1], Closed)
    assert q.of_type(SessionFailed) == []


def test_timeouts_follow_rfc_5321() -> None:
    t = ClientTranscript()
    assert t.client.timeout == 300.0  # initial 220
    t.run("S: 220 hi\nC: EHLO client.example")
    assert t.client.timeout == 300.0
    assert t.client.write_timeout == 180.0


HOSTILE = [
    pytest.param(b"2" * 5000, "reply line too long", id="endless line"),
    pytest.param(b"220-x\r\n" * 10_000, "reply has too many lines", id="10000 lines"),
    pytest.param(b"2x0 hi\r\n", "malformed reply line", id="2x0"),
    pytest.param(b"99 hi\r\n", "malformed reply line", id="99"),
    pytest.param(b"99\r\n", "malformed reply line", id="99 alone"),
    pytest.param(b"100 hi\r\n", "malformed reply line", id="1xx"),
    pytest.param(b"220x\r\n", "malformed reply line", id="no separator"),
    pytest.param(b"220-a\r\n250 b\r\n", "reply code changed within a multi-line reply", id="code"),
    pytest.param(b"250 hi\r\n", "unexpected reply to greeting", id="not 220"),
]


@pytest.mark.parametrize(("data", "why"), HOSTILE)
def test_hostile_greetings_are_protocol_errors(data: bytes, why: str) -> None:
    t = ClientTranscript()
    assert t.feed(data) == b""
    assert t.failure == SessionFailed(Reply(451, "4.5.0", f"Protocol error: {why}"), False)


@pytest.mark.parametrize(("data", "why"), HOSTILE[:-1])
def test_hostile_replies_mid_transaction_defer_the_message(data: bytes, why: str) -> None:
    t = session()
    t.send(["a@remote.test"], b"Hi\r\n")
    t.output()
    t.feed(data.replace(b"220-a", b"251-a").replace(b"220", b"250"))
    assert t.outcomes() == [("a@remote.test", "deferred", 451, "4.5.0", False)]


def test_unsolicited_reply_is_a_protocol_error() -> None:
    t = session()
    t.feed(b"250 surprise\r\n")
    assert t.failure.reply.text == "Protocol error: unexpected reply"


def test_misuse_is_a_local_protocol_error() -> None:
    t = ClientTranscript()
    with pytest.raises(LocalProtocolError):
        t.send(["a@remote.test"])
    t = session()
    with pytest.raises(LocalProtocolError):
        t.send([])
    with pytest.raises(LocalProtocolError):
        t.send(["a@remote.test>\r\nRCPT TO:<evil@x"])
    with pytest.raises(LocalProtocolError):
        ClientTranscript(require_tls=True, tls_available=False)
    assert t.client.next_event() is PAUSED
    t.send(["a@remote.test"])
    with pytest.raises(LocalProtocolError):
        t.client.quit()
    assert t.client.next_event() is NEED_DATA


def test_timeout_during_the_handshake_and_while_idle() -> None:
    t = ClientTranscript(auto_tls=False)
    t.run(STARTTLS_EHLO + "    S: 220 Go\n")
    t.client.timed_out()
    t.drive()
    assert t.failure.reply.text == "Timeout waiting for TLS handshake"
    t = session()
    t.client.timed_out()
    t.drive()
    assert t.failure.reply.text == "Timeout waiting for the host"


def test_smtputf8_is_judged_before_8bitmime() -> None:
    t = session("""
        S: 220 mx.remote.test ESMTP
        C: EHLO client.example
        S: 250 mx.remote.test
    """)
    t.send(["josé@remote.test"], "Subject: é\r\n".encode())
    assert t.output() == b""
    assert t.outcomes()[0][3] == "5.6.7"


def test_421_to_quit_still_closes_and_connection_lost_fails() -> None:
    t = session()
    t.client.quit()
    t.run("C: QUIT\nS: 421 4.3.2 Bye anyway")
    assert isinstance(t.events[-1], Closed)
    assert t.of_type(SessionFailed) == []
    t = session()
    t.send(["a@remote.test"])
    t.client.connection_lost("Connection reset")
    t.drive()
    assert t.outcomes() == [("a@remote.test", "deferred", 451, "4.4.2", False)]
    assert t.failure.reply.text == "Connection reset"
