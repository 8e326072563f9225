"""SMTP server transcripts: greeting, EHLO/HELO, the mail transaction, small commands."""

from __future__ import annotations

import pytest

from mailstead.proto.errors import LocalProtocolError
from mailstead.proto.smtp.events import (
    Closing,
    Hello,
    MailFrom,
    MailParams,
    Message,
    RcptParams,
    RcptTo,
    Recipient,
    Reset,
)
from mailstead.proto.smtp.replies import Reply
from tests.proto.smtp.transcript import MTA_NO_TLS, Transcript


def test_greeting_and_ehlo_with_starttls_offered() -> None:
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
    """)
    assert t.events == [Hello("client.example", extended=True)]


def test_ehlo_without_a_certificate_offers_no_starttls() -> None:
    Transcript(MTA_NO_TLS).run("""
    S: 220 mx.example.test ESMTP Mailstead
    C: ehlo client.example
    S: 250-mx.example.test greets client.example
    S: 250-PIPELINING
    S: 250-SIZE 52428800
    S: 250-8BITMIME
    S: 250-SMTPUTF8
    S: 250-ENHANCEDSTATUSCODES
    S: 250-CHUNKING
    S: 250-DSN
    S: 250 HELP
    C: STARTTLS
    S: 502 5.5.1 STARTTLS not available
    """)


def test_helo_answers_one_line_and_no_extensions() -> None:
    t = Transcript()
    t.run("""
    S: 220 mx.example.test ESMTP Mailstead
    C: HELO client.example
    S: 250 mx.example.test
    C: HELO
    S: 501 5.5.4 HELO needs a domain
    C: EHLO
    S: 501 5.5.4 EHLO needs a domain
    """)
    assert t.events == [Hello("client.example", extended=False)]


def test_mail_before_helo_is_a_bad_sequence() -> None:
    Transcript().run("""
    S: 220 mx.example.test ESMTP Mailstead
    C: MAIL FROM:<carol@remote.test>
    S: 503 5.5.1 Send EHLO or HELO first
    """)


def test_one_message_from_mail_to_queued() -> None:
    t = Transcript().handshake()
    t.run("""
    C: MAIL FROM:<carol@remote.test>
    S: 250 2.1.0 Sender OK
    C: RCPT TO:<alice@example.test>
    S: 250 2.1.5 Recipient OK
    C: RCPT TO:<nobody@example.test>
    S: 550 5.1.1 No such user here
    C: RCPT TO:<dave@elsewhere.example>
    S: 554 5.7.1 Relay access denied
    C: RCPT TO:<Bob@example.test>
    S: 250 2.1.5 Recipient OK
    C: DATA
    S: 354 End data with <CR><LF>.<CR><LF>
    C: Subject: hi
    C:
    C: Hello Alice.
    C: .
    S: 250 2.0.0 Queued as M1
    C: QUIT
    S: 221 2.0.0 Bye
    """)
    assert t.messages == [
        Message(
            "carol@remote.test",
            MailParams(),
            (
                Recipient("alice@example.test", RcptParams()),
                Recipient("Bob@example.test", RcptParams()),
            ),
            b"Subject: hi\r\n\r\nHello Alice.\r\n",
        )
    ]
    assert isinstance(t.events[-1], Closing) and t.closed


def test_dot_stuffing_is_undone_on_every_line_including_the_first() -> None:
    t = Transcript().handshake()
    t.run("""
    C: MAIL FROM:<carol@remote.test>
    C: RCPT TO:<alice@example.test>
    C: DATA
    S: 250 2.1.0 Sender OK
    S: 250 2.1.5 Recipient OK
    S: 354 End data with <CR><LF>.<CR><LF>
    C: ..first line starts with a dot
    C: middle
    C: ...
    C: ..
    C: .x.
    C: .
    S: 250 2.0.0 Queued as M1
    """)
    assert t.messages[0].content == (
        b".first line starts with a dot\r\nmiddle\r\n..\r\n.\r\nx.\r\n"
    )


def test_an_empty_message_is_one_message_with_no_content() -> None:
    t = Transcript().handshake()
    t.run("""
    C: MAIL FROM:<>
    C: RCPT TO:<alice@example.test>
    C: DATA
    S: 250 2.1.0 Sender OK
    S: 250 2.1.5 Recipient OK
    S: 354 End data with <CR><LF>.<CR><LF>
    C: .
    S: 250 2.0.0 Queued as M1
    """)
    assert [(m.sender, m.content) for m in t.messages] == [("", b"")]


def test_pipelined_commands_get_their_replies_in_order_in_one_batch() -> None:
    t = Transcript().handshake()
    t.run("""
    C: MAIL FROM:<carol@remote.test> SIZE=20
    C: RCPT TO:<nobody@example.test>
    C: RCPT TO:<alice@example.test>
    C: NOOP
    C: RCPT TO:<bob@example.test>
    C: DATA
    S: 250 2.1.0 Sender OK
    S: 550 5.1.1 No such user here
    S: 250 2.1.5 Recipient OK
    S: 250 2.0.0 OK
    S: 250 2.1.5 Recipient OK
    S: 354 End data with <CR><LF>.<CR><LF>
    C: one line
    C: .
    C: MAIL FROM:<carol@remote.test>
    C: RSET
    C: QUIT
    S: 250 2.0.0 Queued as M1
    S: 250 2.1.0 Sender OK
    S: 250 2.0.0 OK
    S: 221 2.0.0 Bye
    """)
    assert [type(e).__name__ for e in t.events] == [
        "Hello",
        "MailFrom",
        "RcptTo",
        "RcptTo",
        "RcptTo",
        "Message",
        "MailFrom",
        "Reset",
        "Closing",
    ]


def test_rejected_sender_starts_no_transaction() -> None:
    Transcript().handshake().run("""
    C: MAIL FROM:<spammer@bad.example>
    S: 550 5.7.1 Sender refused
    C: RCPT TO:<alice@example.test>
    S: 503 5.5.1 Send MAIL first
    C: MAIL FROM:<carol@remote.test>
    S: 250 2.1.0 Sender OK
    C: MAIL FROM:<carol@remote.test>
    S: 503 5.5.1 Sender already given
    """)


def test_rset_ends_the_transaction_and_noop_does_nothing() -> None:
    t = Transcript().handshake()
    t.run("""
    C: MAIL FROM:<carol@remote.test>
    S: 250 2.1.0 Sender OK
    C: RCPT TO:<alice@example.test>
    S: 250 2.1.5 Recipient OK
    C: NOOP whatever
    S: 250 2.0.0 OK
    C: RSET
    S: 250 2.0.0 OK
    C: DATA
    S: 503 5.5.1 Send MAIL first
    C: RSET now
    S: 501 5.5.4 RSET takes no arguments
    """)
    assert Reset() in t.events


def test_ehlo_again_resets_the_transaction() -> None:
    Transcript().handshake().run("""
    C: MAIL FROM:<carol@remote.test>
    S: 250 2.1.0 Sender OK
    C: HELO again.example
    S: 250 mx.example.test
    C: RCPT TO:<alice@example.test>
    S: 503 5.5.1 Send MAIL first
    """)


def test_sequence_errors() -> None:
    Transcript().handshake().run("""
    C: RCPT TO:<alice@example.test>
    S: 503 5.5.1 Send MAIL first
    C: DATA
    S: 503 5.5.1 Send MAIL first
    C: MAIL FROM:<carol@remote.test>
    S: 250 2.1.0 Sender OK
    C: DATA
    S: 554 5.5.1 No valid recipients
    C: RCPT TO:<nobody@example.test>
    S: 550 5.1.1 No such user here
    C: DATA
    S: 554 5.5.1 No valid recipients
    C: DATA now
    S: 501 5.5.4 DATA takes no arguments
    """)


def test_vrfy_expn_help_and_unknown_commands() -> None:
    Transcript().handshake().run("""
    C: VRFY alice
    S: 252 2.0.0 Cannot VRFY user, but will accept message
    C: VRFY
    S: 501 5.5.4 Syntax: VRFY <address>
    C: EXPN staff
    S: 502 5.5.1 EXPN not available
    C: HELP
    S: 214-2.0.0 Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP
    S: 214 2.0.0 STARTTLS AUTH where offered; see RFC 5321
    C: TURN
    S: 500 5.5.1 Command unrecognized
    C: MAIL TO:<alice@example.test>
    S: 501 5.5.4 Syntax: MAIL FROM:<address>
    C: quit
    S: 221 2.0.0 Bye
    """)


def test_quit_closes_and_ignores_everything_after_it() -> None:
    t = Transcript().handshake()
    t.run("""
    C: QUIT
    C: NOOP
    S: 221 2.0.0 Bye
    C: NOOP
    """)
    assert t.events[-1] == Closing("QUIT") and t.closed


# -- MAIL and RCPT parameters ----------------------------------------------------


def _sender_params(line: str) -> tuple[bytes, list[MailFrom]]:
    t = Transcript().handshake()
    said = t.feed(f"{line}\r\n".encode())
    return said, [e for e in t.events if isinstance(e, MailFrom)]


@pytest.mark.parametrize(
    ("line", "params"),
    [
        ("MAIL FROM:<c@remote.test> SIZE=1000", MailParams(size=1000)),
        ("MAIL FROM:<c@remote.test> SIZE=52428800", MailParams(size=52428800)),
        ("MAIL FROM:<c@remote.test> BODY=8BITMIME", MailParams(body="8BITMIME")),
        ("MAIL FROM:<c@remote.test> body=7bit", MailParams(body="7BIT")),
        ("MAIL FROM:<c@remote.test> RET=hdrs", MailParams(ret="HDRS")),
        ("MAIL FROM:<c@remote.test> ENVID=QQ+2B+3Dx", MailParams(envid="QQ+=x")),
        ("MAIL FROM:<c@remote.test> AUTH=<>", MailParams()),  # RFC 4954 §5: ignored
        ("MAIL FROM:<c@remote.test> SMTPUTF8", MailParams(smtputf8=True)),
        ("MAIL FROM:<jörg@bücher.example> SMTPUTF8", MailParams(smtputf8=True)),
        ("MAIL FROM: <c@remote.test>", MailParams()),  # a space after the colon
        ("MAIL FROM:<@relay.example,@b.example:c@remote.test>", MailParams()),
    ],
)
def test_mail_parameters_accepted(line: str, params: MailParams) -> None:
    said, events = _sender_params(line)
    assert said == b"250 2.1.0 Sender OK\r\n"
    assert [e.params for e in events] == [params]


def test_source_route_is_ignored() -> None:
    _, events = _sender_params("MAIL FROM:<@relay.example,@b.example:c@remote.test>")
    assert events[0].sender == "c@remote.test"


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        (
            "MAIL FROM:<c@remote.test> SIZE=52428801",
            "552 5.3.4 Message size exceeds fixed maximum message size",
        ),
        ("MAIL FROM:<c@remote.test> SIZE=big", "501 5.5.4 Bad SIZE value"),
        ("MAIL FROM:<c@remote.test> SIZE=²", "501 5.5.4 Bad SIZE value"),
        ("MAIL FROM:<c@remote.test> SIZE=" + "9" * 21, "501 5.5.4 Bad SIZE value"),
        ("MAIL FROM:<c@remote.test> BODY=BINARYMIME", "501 5.5.4 BODY must be 7BIT or 8BITMIME"),
        (
            "MAIL FROM:<jörg@bücher.example>",
            "553 5.6.7 Must declare SMTPUTF8 to use a non-ASCII address",
        ),
        ("MAIL FROM:<c@remote.test> FOO=bar", "555 5.5.4 Unsupported parameter FOO"),
        ("MAIL FROM:<c@remote.test> SMTPUTF8=yes", "501 5.5.4 SMTPUTF8 takes no value"),
        ("MAIL FROM:<c@remote.test> SIZE=1 SIZE=2", "501 5.5.4 Duplicate parameter SIZE"),
        ("MAIL FROM:<c@remote.test> ENVID=a+zz", "501 5.5.4 Bad xtext encoding"),
        # RFC 3461 §4.4: ENVID goes into a DSN header; no encoded CR LF.
        ("MAIL FROM:<c@remote.test> ENVID=a+0D+0AX-Evil:+201", "501 5.5.4 Bad xtext encoding"),
        ("MAIL FROM:<c@remote.test> ENVID=" + "a" * 101, "501 5.5.4 Bad ENVID value"),
        ("MAIL FROM:<c@remote.test> RET=bogus", "501 5.5.4 RET must be FULL or HDRS"),
        ("MAIL FROM:c@remote.test", "501 5.1.7 Address must be enclosed in <>"),
        ("MAIL FROM:<c@remote.test", "501 5.1.7 Unterminated address"),
        ("MAIL FROM:<c@remote.test>SIZE=1", "501 5.5.4 Syntax error after address"),
        ("MAIL FROM:<c>", "501 5.1.7 Address must have a domain"),
        ("MAIL FROM:<c d@remote.test>", "501 5.1.7 Bad local part syntax"),
        ("MAIL FROM:<c@-bad-.test>", "501 5.1.7 Bad domain syntax"),
        ("MAIL FROM:<" + "a" * 65 + "@remote.test>", "501 5.1.7 Local part too long"),
    ],
)
def test_mail_parameters_refused(line: str, reply: str) -> None:
    said, events = _sender_params(line)
    assert said == f"{reply}\r\n".encode()
    assert events == []


def _recipient_params(
    line: str, mail: str = "MAIL FROM:<c@remote.test>"
) -> tuple[bytes, list[RcptTo]]:
    t = Transcript().handshake()
    assert t.feed(f"{mail}\r\n".encode()) == b"250 2.1.0 Sender OK\r\n"
    said = t.feed(f"{line}\r\n".encode())
    return said, [e for e in t.events if isinstance(e, RcptTo)]


@pytest.mark.parametrize(
    ("line", "recipient", "params"),
    [
        ("RCPT TO:<alice@example.test> NOTIFY=NEVER", "alice@example.test", RcptParams(("NEVER",))),
        (
            "RCPT TO:<alice@example.test> NOTIFY=success,Failure,DELAY",
            "alice@example.test",
            RcptParams(("SUCCESS", "FAILURE", "DELAY")),
        ),
        (
            "RCPT TO:<alice@example.test> ORCPT=rfc822;al+2Bice@example.test",
            "alice@example.test",
            RcptParams(orcpt="rfc822;al+ice@example.test"),
        ),
        ("RCPT TO:<postmaster>", "postmaster", RcptParams()),
        ("RCPT TO:<PostMaster> NOTIFY=NEVER", "postmaster", RcptParams(("NEVER",))),
        ("RCPT TO:<@hop.example:alice@example.test>", "alice@example.test", RcptParams()),
        ('RCPT TO:<"alice"@example.test>', '"alice"@example.test', RcptParams()),
    ],
)
def test_rcpt_parameters_accepted(line: str, recipient: str, params: RcptParams) -> None:
    said, events = _recipient_params(line)
    assert said.startswith(b"250 2.1.5 ") or said.startswith(b"550 5.1.1 ")
    assert [(e.recipient, e.params) for e in events] == [(recipient, params)]


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        ("RCPT TO:<alice@example.test> NOTIFY=NEVER,SUCCESS", "501 5.5.4 Bad NOTIFY value"),
        ("RCPT TO:<alice@example.test> NOTIFY=SUCCESS,SUCCESS", "501 5.5.4 Bad NOTIFY value"),
        ("RCPT TO:<alice@example.test> NOTIFY=SOMETIMES", "501 5.5.4 Bad NOTIFY value"),
        ("RCPT TO:<alice@example.test> ORCPT=alice@example.test", "501 5.5.4 Bad ORCPT value"),
        ("RCPT TO:<alice@example.test> ORCPT=rfc822;a+0Ab", "501 5.5.4 Bad xtext encoding"),
        ("RCPT TO:<alice@example.test> SIZE=1", "555 5.5.4 Unsupported parameter SIZE"),
        ("RCPT TO:<>", "501 5.1.3 Null address not allowed here"),
        ("RCPT TO:alice@example.test", "501 5.1.3 Address must be enclosed in <>"),
        ("RCPT FROM:<alice@example.test>", "501 5.5.4 Syntax: RCPT TO:<address>"),
        (
            "RCPT TO:<jörg@example.test>",
            "553 5.6.7 Must declare SMTPUTF8 to use a non-ASCII address",
        ),
    ],
)
def test_rcpt_parameters_refused(line: str, reply: str) -> None:
    said, events = _recipient_params(line)
    assert said == f"{reply}\r\n".encode()
    assert events == []


def test_utf8_recipient_after_smtputf8() -> None:
    said, events = _recipient_params(
        "RCPT TO:<jörg@example.test>", mail="MAIL FROM:<c@remote.test> SMTPUTF8"
    )
    assert said == b"550 5.1.1 No such user here\r\n"
    assert events[0].recipient == "jörg@example.test"


def test_message_carries_the_envelope_parameters() -> None:
    t = Transcript().handshake()
    t.run("""
    C: MAIL FROM:<jörg@bücher.example> SMTPUTF8 BODY=8BITMIME RET=FULL ENVID=id+2B1
    C: RCPT TO:<alice@example.test> NOTIFY=FAILURE ORCPT=rfc822;alice@example.test
    C: DATA
    S: 250 2.1.0 Sender OK
    S: 250 2.1.5 Recipient OK
    S: 354 End data with <CR><LF>.<CR><LF>
    C: Grüße
    C: .
    S: 250 2.0.0 Queued as M1
    """)
    (msg,) = t.messages
    assert msg.sender == "jörg@bücher.example"
    assert msg.mail_params == MailParams(body="8BITMIME", smtputf8=True, ret="FULL", envid="id+1")
    assert msg.recipients == (
        Recipient("alice@example.test", RcptParams(("FAILURE",), "rfc822;alice@example.test")),
    )
    assert msg.content == "Grüße\r\n".encode()


# -- the application misusing the API ---------------------------------------------


def test_reply_with_nothing_pending_is_a_local_error() -> None:
    t = Transcript().handshake()
    with pytest.raises(LocalProtocolError):
        t.server.reply(Reply(250, "2.0.0", "OK"))
    with pytest.raises(LocalProtocolError):
        t.server.auth_result("alice")
    with pytest.raises(LocalProtocolError):
        t.server.tls_started()


def test_reply_twice_to_one_event_is_a_local_error() -> None:
    t = Transcript().handshake()
    t.server.receive_data(b"MAIL FROM:<c@remote.test>\r\n")
    assert isinstance(t.server.next_event(), MailFrom)
    assert t.server.awaiting == "mail"
    t.server.reply(Reply(250, "2.1.0", "Sender OK"))
    with pytest.raises(LocalProtocolError):
        t.server.reply(Reply(250, "2.1.0", "Sender OK"))


def test_the_protocol_pauses_until_the_application_answers() -> None:
    t = Transcript().handshake()
    t.server.receive_data(b"MAIL FROM:<c@remote.test>\r\nNOOP\r\n")
    assert isinstance(t.server.next_event(), MailFrom)
    assert repr(t.server.next_event()) == "PAUSED"
    assert t.server.data_to_send() == b""
    t.server.reply(Reply(451, "4.3.0", "Try later"))
    t.drive()
    assert t.server.data_to_send() == b"451 4.3.0 Try later\r\n250 2.0.0 OK\r\n"


def test_close_says_a_last_reply_and_takes_no_more_input() -> None:
    t = Transcript().handshake()
    t.server.close(Reply(421, "4.4.2", "Timeout, closing connection"))
    assert t.feed(b"NOOP\r\n") == b"421 4.4.2 Timeout, closing connection\r\n"
    assert t.feed(b"NOOP\r\n") == b""


def test_parameters_need_ehlo() -> None:
    # RFC 5321 §4.1.2: ESMTP parameters belong to sessions that said EHLO.
    Transcript().run(
        """
        S: 220 mx.example.test ESMTP Mailstead
        C: HELO client.example
        S: 250 mx.example.test
        C: MAIL FROM:<c@remote.test> SIZE=10
        S: 555 5.5.4 Parameters need EHLO
        C: MAIL FROM:<c@remote.test>
        S: 250 2.1.0 Sender OK
        """
    )


def test_ehlo_name_with_control_characters_is_refused_not_echoed() -> None:
    t = Transcript()
    t.output()
    said = t.feed(b"EHLO evil\x01\x7fname\r\n")
    assert said == b"501 5.5.2 EHLO takes one domain name or address literal\r\n"
