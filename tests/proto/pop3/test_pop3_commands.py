"""RFC 1939 commands in the TRANSACTION and UPDATE states, as transcripts."""

from __future__ import annotations

from dataclasses import replace

from mailstead.proto.pop3.events import Update
from tests.proto.pop3.transcript import SECURE, Transcript


def test_greeting_capa_and_quit_before_login() -> None:
    t = Transcript()
    t.run("""
    S: +OK pop.example.test Mailstead POP3 ready
    C: CAPA
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
    C: QUIT
    S: +OK Mailstead POP3 signing off
    """)
    assert t.closed and not t.updates


def test_stat_list_uidl_and_quit_without_changes() -> None:
    t = Transcript()
    t.run("""
    S: +OK pop.example.test Mailstead POP3 ready
    C: USER alice
    S: +OK Send PASS
    C: PASS secret
    S: +OK Logged in, 3 messages (138 octets)
    C: STAT
    S: +OK 3 138
    C: LIST
    S: +OK 3 messages (138 octets)
    S: 1 77
    S: 2 40
    S: 3 21
    S: .
    C: LIST 2
    S: +OK 2 40
    C: UIDL
    S: +OK Unique-ID listing follows
    S: 1 uid-1
    S: 2 uid-2
    S: 3 uid-3
    S: .
    C: UIDL 3
    S: +OK 3 uid-3
    C: NOOP
    S: +OK
    C: QUIT
    S: +OK Mailstead POP3 signing off (3 left)
    """)
    assert t.updates == [Update(deleted=(), seen=())]


def test_retr_converts_lf_to_crlf_and_dot_stuffs() -> None:
    t = Transcript().login()
    t.run("""
    C: RETR 1
    S: +OK 77 octets
    S: From: bob@example.test
    S: Subject: one
    S:
    S: Hello
    S: ..hidden dot
    S: ...two dots
    S: bye
    S: .
    """)


def test_retr_adds_the_missing_final_line_end() -> None:
    t = Transcript().login()
    t.run("""
    C: RETR 2
    S: +OK 40 octets
    S: Subject: two
    S:
    S: line 1
    S: line 2
    S: line 3
    S: .
    """)


def test_top_sends_header_blank_line_and_n_body_lines() -> None:
    t = Transcript().login()
    t.run("""
    C: TOP 2 2
    S: +OK Top of message follows
    S: Subject: two
    S:
    S: line 1
    S: line 2
    S: .
    C: TOP 1 0
    S: +OK Top of message follows
    S: From: bob@example.test
    S: Subject: one
    S:
    S: .
    C: TOP 3 100
    S: +OK Top of message follows
    S: Subject: three
    S:
    S: x
    S: .
    C: TOP 1
    S: -ERR Syntax: TOP message lines
    """)


def test_dele_rset_and_update_on_quit() -> None:
    t = Transcript().login()
    t.run("""
    C: DELE 1
    S: +OK Message 1 deleted
    C: DELE 1
    S: -ERR Message 1 already deleted
    C: RETR 1
    S: -ERR Message 1 already deleted
    C: LIST 1
    S: -ERR Message 1 already deleted
    C: STAT
    S: +OK 2 61
    C: LIST
    S: +OK 2 messages (61 octets)
    S: 2 40
    S: 3 21
    S: .
    C: RSET
    S: +OK 3 messages (138 octets)
    C: DELE 3
    S: +OK Message 3 deleted
    C: RETR 2
    S: +OK 40 octets
    S: Subject: two
    S:
    S: line 1
    S: line 2
    S: line 3
    S: .
    C: QUIT
    S: +OK Mailstead POP3 signing off (2 left)
    """)
    # RETR marks \Seen; deleted messages need no flag.
    assert t.updates == [Update(deleted=(2,), seen=(1,))]


def test_delete_retrieved_deletes_what_was_retrieved_and_says_expire_0() -> None:
    t = Transcript(replace(SECURE, delete_retrieved=True, login_delay=300)).login()
    t.run("""
    C: CAPA
    S: +OK Capability list follows
    S: TOP
    S: UIDL
    S: RESP-CODES
    S: AUTH-RESP-CODE
    S: PIPELINING
    S: EXPIRE 0
    S: LOGIN-DELAY 300
    S: USER
    S: SASL PLAIN LOGIN
    S: IMPLEMENTATION Mailstead
    S: .
    C: TOP 1 0
    S: +OK Top of message follows
    S: From: bob@example.test
    S: Subject: one
    S:
    S: .
    C: RETR 3
    S: +OK 21 octets
    S: Subject: three
    S:
    S: x
    S: .
    C: QUIT
    S: +OK Mailstead POP3 signing off (2 left)
    """)
    # TOP is not a retrieval; RETR 3 is, and goes without a DELE.
    assert t.updates == [Update(deleted=(2,), seen=())]


def test_no_such_message_and_bad_numbers() -> None:
    t = Transcript().login()
    t.run("""
    C: RETR 4
    S: -ERR No such message
    C: RETR 0
    S: -ERR No such message
    C: LIST 99999999999
    S: -ERR Syntax: a message number is needed
    C: DELE +1
    S: -ERR Syntax: a message number is needed
    C: RETR
    S: -ERR Syntax: a message number is needed
    C: UIDL x
    S: -ERR Syntax: a message number is needed
    """)


def test_commands_in_the_wrong_state() -> None:
    t = Transcript()
    t.run("""
    S: +OK pop.example.test Mailstead POP3 ready
    C: STAT
    S: -ERR STAT not valid in the AUTHORIZATION state
    C: NOOP
    S: -ERR NOOP not valid in the AUTHORIZATION state
    C: PASS secret
    S: -ERR Send USER first
    C: USER alice
    S: +OK Send PASS
    C: PASS secret
    S: +OK Logged in, 3 messages (138 octets)
    C: USER alice
    S: -ERR USER not valid in the TRANSACTION state
    C: AUTH PLAIN
    S: -ERR AUTH not valid in the TRANSACTION state
    C: APOP alice 0123456789abcdef
    S: -ERR Unknown command
    """)


def test_pipelined_batch_gets_all_responses_in_order() -> None:
    t = Transcript()
    t.run("""
    S: +OK pop.example.test Mailstead POP3 ready
    C: USER alice
    C: PASS secret
    C: STAT
    C: UIDL 1
    C: DELE 1
    C: LIST
    C: RETR 3
    C: QUIT
    S: +OK Send PASS
    S: +OK Logged in, 3 messages (138 octets)
    S: +OK 3 138
    S: +OK 1 uid-1
    S: +OK Message 1 deleted
    S: +OK 2 messages (61 octets)
    S: 2 40
    S: 3 21
    S: .
    S: +OK 21 octets
    S: Subject: three
    S:
    S: x
    S: .
    S: +OK Mailstead POP3 signing off (2 left)
    """)
    assert t.updates == [Update(deleted=(0,), seen=(2,))]


def test_list_pipelined_before_dele_shows_the_message() -> None:
    t = Transcript().login()
    t.run("""
    C: LIST
    C: DELE 2
    S: +OK 3 messages (138 octets)
    S: 1 77
    S: 2 40
    S: 3 21
    S: .
    S: +OK Message 2 deleted
    """)


def test_empty_maildrop() -> None:
    from tests.proto.pop3.transcript import FakeMaildrops

    t = Transcript(drops=FakeMaildrops(messages=()))
    t.run("""
    S: +OK pop.example.test Mailstead POP3 ready
    C: USER alice
    C: PASS secret
    C: LIST
    C: UIDL
    C: RETR 1
    S: +OK Send PASS
    S: +OK Logged in, 0 messages (0 octets)
    S: +OK 0 messages (0 octets)
    S: .
    S: +OK Unique-ID listing follows
    S: .
    S: -ERR No such message
    """)


def test_large_listing_comes_out_in_pieces() -> None:
    from tests.proto.pop3.transcript import FakeMaildrops

    t = Transcript(drops=FakeMaildrops(messages=(b"x\n",) * 100_000)).login()
    t.server.receive_data(b"LIST\r\n")
    t.drive()
    first = t.server.data_to_send(4096)
    assert first.startswith(b"+OK 100000 messages (300000 octets)\r\n1 3\r\n")
    assert len(first) < 64 * 1024  # not the whole listing at once
    rest = t.server.data_to_send()
    lines = (first + rest).split(b"\r\n")
    assert lines[-3:] == [b"100000 3", b".", b""]
    assert len(lines) == 100_003
