"""Fuzz: the POP3 server under streams of real and mutated commands, cut anywhere.

Properties (for every stream, every cut into reads, every point where the
client closes):

* every call returns after at most a few events per octet fed, and
  nothing is raised;
* what is said, read whole or in ``data_to_send(limit)`` pieces, is whole
  responses: ``+OK``/``-ERR`` status lines, ``+ `` SASL challenges, and
  multi-line bodies that are dot-stuffed and end in ``.`` (RFC 1939 §3),
  every line ending in CRLF;
* at most one unfinished line is buffered between reads;
* when input ends ``next_event()`` keeps returning ``NEED_DATA``, and after
  ``close()`` (autologout or shutdown) nothing is taken or said.
"""

from __future__ import annotations

import base64
import re

from hypothesis import event, given, settings
from hypothesis import strategies as st

from mailstead.limits import POP3Limits
from mailstead.proto.pop3.content import crlf_size
from mailstead.proto.pop3.events import (
    NEED_DATA,
    PAUSED,
    AuthRequest,
    Closing,
    Event,
    Retrieve,
    StartTLS,
    Update,
)
from mailstead.proto.pop3.server import POP3Server, POP3Settings
from tests.fuzz.wire import (
    DEADLINE_MS,
    Case,
    cases,
    crlf_lines,
    event_budget,
    mutated,
    watchdog,
    weighted,
)

HOST = "pop.example.test"
# No line starts with "+" or "-", so a status line is never mistaken for content.
MESSAGES = (
    b"From: bob@example.test\nSubject: one\n\nHello\n.hidden dot\n..two dots\n.\nbye\n",
    b"Subject: two\r\n\r\nline 1\r\n.\r\nline 3",
    b"",
    b"Subject: four\n\n" + b"body line\n" * 40,
)
LISTING = [(f"uid-{i + 1}", crlf_size(m)) for i, m in enumerate(MESSAGES)]
TIGHT = POP3Limits(command_line=40, sasl_line=64, errors_per_session=4, auth_failures_per_session=2)
ROLES = st.sampled_from(
    [
        POP3Settings(HOST, secure=True),
        POP3Settings(HOST, tls_available=True),
        POP3Settings(HOST, cleartext_login=True, delete_retrieved=True, login_delay=60),
        POP3Settings(HOST, secure=True, limits=TIGHT),
        POP3Settings(HOST, tls_available=True, limits=TIGHT),
    ]
)


def _b64(raw: bytes) -> bytes:
    return base64.b64encode(raw)


# -- real commands (RFC 1939, RFC 2449, RFC 2595, RFC 5034) ---------------------------

# alice logs in; carol finds her maildrop locked, dave logs in too soon,
# erin's maildrop cannot be opened; any other password is wrong.
_user = st.sampled_from([b"alice", b"carol", b"dave", b"erin", b"mallory"])
_password = st.sampled_from([b"secret", b"secret", b"wrong", b"pass word"])
_number = st.sampled_from([b"1", b"1", b"1", b"2", b"2", b"3", b"4", b"5", b"0", b"01"])
_login = st.one_of(
    st.builds(lambda u, p: b"USER " + u + b"\r\nPASS " + p + b"\r\n", _user, _password),
    st.builds(
        lambda u, p: b"AUTH PLAIN " + _b64(b"\0" + u + b"\0" + p) + b"\r\n", _user, _password
    ),
    st.builds(
        lambda u, p: b"AUTH PLAIN\r\n" + _b64(u + b"\0" + u + b"\0" + p) + b"\r\n", _user, _password
    ),
    st.builds(
        lambda u, p: b"AUTH LOGIN\r\n" + _b64(u) + b"\r\n" + _b64(p) + b"\r\n", _user, _password
    ),
    st.sampled_from([b"AUTH\r\n", b"AUTH LOGIN\r\n*\r\n", b"AUTH PLAIN =\r\n", b"AUTH X\r\n"]),
)
_simple = st.sampled_from(
    [
        *(b"CAPA", b"STLS", b"STAT", b"LIST", b"LIST", b"UIDL", b"UIDL", b"RSET", b"NOOP"),
        *(b"QUIT", b"capa", b"APOP a b"),
    ]
)
_numbered = st.builds(
    lambda verb, n: verb + b" " + n + b"\r\n",
    st.sampled_from([b"LIST", b"UIDL", b"RETR", b"DELE", b"DELE", b"retr"]),
    _number,
)
_command = weighted(
    (2, _simple.map(lambda c: c + b"\r\n")),
    (4, _numbered),
    (1, st.builds(lambda n, k: b"TOP " + n + b" " + k + b"\r\n", _number, _number)),
    (1, _login),
)
_prelude = st.sampled_from(
    [
        b"",
        b"USER alice\r\nPASS secret\r\n",
        b"STLS\r\nUSER alice\r\nPASS secret\r\n",
        b"STLS\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n",
        b"CAPA\r\nSTLS\r\nCAPA\r\nAUTH LOGIN\r\nYWxpY2U=\r\nc2VjcmV0\r\n",
    ]
)
VALID = st.builds(lambda p, cs: p + b"".join(cs), _prelude, st.lists(_command, max_size=14))
STLS = b"STLS\r\n"


# -- the driver (as net/pop3_session.py) and what it checks ---------------------------


# RFC 1939 §3 status indicator and printable ASCII text; RFC 5034 §4 challenge.
_STATUS = re.compile(rb"(\+OK|-ERR)( [\x20-\x7e]*)?")
_CHALLENGE = re.compile(rb"\+ [A-Za-z0-9+/]*=*")


def check_responses(out: bytes) -> None:
    """Status lines, challenges, and whole dot-stuffed multi-line bodies (RFC 1939 §3)."""
    in_body = False
    last_ok = False
    for line in crlf_lines(out):
        if in_body:
            if line == b".":
                in_body = False
            else:
                assert not line.startswith(b".") or line.startswith(b".."), f"unstuffed {line!r}"
            continue
        if line.startswith((b"+OK", b"-ERR", b"+ ")):
            assert _STATUS.fullmatch(line) or _CHALLENGE.fullmatch(line), f"malformed {line!r}"
            last_ok = line.startswith(b"+OK")
            continue
        # Anything else is the body of the multi-line response just begun.
        assert last_ok, f"not a response: {line!r}"
        last_ok = False
        in_body = line != b"."
        assert not line.startswith(b".") or line in (b".",) or line.startswith(b"..")
    assert not in_body, "a multi-line response without its terminating '.'"


class Session:
    """One POP3Server driven as the asyncio session drives it, with fake maildrops."""

    def __init__(self, role: POP3Settings, piece: int | None, drop: int = len(MESSAGES)) -> None:
        self.server = POP3Server(role)
        self.listing = LISTING[:drop]  # alice's maildrop: the first ``drop`` messages
        self.limits = role.limits
        self.piece = piece  # how much data_to_send() is asked for at a time
        self.events: list[Event] = []
        self.over = False
        self.said = bytearray()
        self.flush()  # the greeting

    def flush(self) -> None:
        conn = self.server
        out = bytearray()
        for _ in range(100_000):
            piece = conn.data_to_send(self.piece)
            if not piece:
                break
            out += piece
        assert not conn.output_pending, "data_to_send() ran dry with output pending"
        self.said += out

    def feed(self, read: bytes) -> None:
        conn = self.server
        conn.receive_data(read)
        self.drain(event_budget(read))
        self.flush()
        assert conn.buffered <= self.limits.sasl_line, f"{conn.buffered} octets buffered"
        self.over = self.over or conn.closing

    def drain(self, budget: int) -> None:
        conn = self.server
        for _ in range(budget):
            ev = conn.next_event()
            if ev is NEED_DATA:
                return
            assert ev is not PAUSED, f"paused awaiting {conn.awaiting}"
            self.events.append(ev)
            if isinstance(ev, AuthRequest):
                self.flush()  # the session writes what came before the slow check
                user, password = ev.credentials.authcid, ev.credentials.password
                if password != "secret" or ev.credentials.authzid not in ("", user):
                    conn.auth_result(None)
                    continue
                conn.auth_result(user)
                if user == "carol":
                    conn.maildrop_in_use()
                elif user == "dave":
                    conn.login_too_soon()
                elif user == "erin":
                    conn.maildrop_failed()
                else:
                    conn.maildrop_opened(self.listing)
            elif isinstance(ev, Retrieve):
                assert 0 <= ev.index < len(self.listing)
                if ev.index == 3 and ev.body_lines is None:
                    conn.retrieve_failed()
                else:
                    conn.retrieved(MESSAGES[ev.index])
            elif isinstance(ev, Update):
                assert not set(ev.deleted) & set(ev.seen)
                conn.update_done(len(ev.deleted) < 3)
            elif isinstance(ev, StartTLS):
                conn.tls_started()
            elif isinstance(ev, Closing):
                self.over = True
                return
        raise AssertionError(f"more than {budget} events from one read: it spins")

    def end(self) -> None:
        """The client is gone, or the autologout timer fires (RFC 1939 §3)."""
        conn = self.server
        for _ in range(3):
            assert conn.next_event() is NEED_DATA
        assert not conn.output_pending
        conn.close(None)
        assert conn.closing and conn.data_to_send() == b""
        conn.receive_data(b"QUIT\r\n")
        assert conn.next_event() is NEED_DATA
        assert conn.data_to_send() == b"" and conn.buffered == 0


def run(role: POP3Settings, case: Case, piece: int | None) -> None:
    session = Session(role, piece)
    with watchdog():
        for read in case.reads():
            if session.over:
                session.server.receive_data(read)
                assert session.server.next_event() is NEED_DATA
                assert session.server.data_to_send() == b""
                continue
            session.feed(read)
        session.end()
    check_responses(bytes(session.said))
    for kind in sorted({type(e).__name__ for e in session.events}):
        event(kind)


_PIECE = st.none() | st.integers(1, 64)


@settings(max_examples=300, deadline=DEADLINE_MS)
@given(role=ROLES, case=cases(VALID, STLS), piece=_PIECE)
def test_real_commands_in_any_reads_keep_pop3_well_formed(
    role: POP3Settings, case: Case, piece: int | None
) -> None:
    run(role, case, piece)


@settings(max_examples=300, deadline=DEADLINE_MS)
@given(role=ROLES, case=cases(mutated(VALID), STLS), piece=_PIECE)
def test_mutated_commands_in_any_reads_keep_pop3_well_formed(
    role: POP3Settings, case: Case, piece: int | None
) -> None:
    run(role, case, piece)


_MULTI_LINE = {b"CAPA", b"RETR", b"TOP"}  # and LIST, UIDL, AUTH without an argument
_CLOSE_AFTER_ERROR = b"-ERR Too many errors, closing connection"


@settings(max_examples=300, deadline=DEADLINE_MS)
@given(role=ROLES, drop=st.sampled_from([0, 1, 1, 2, len(MESSAGES)]), stream=VALID)
def test_each_real_command_gets_one_whole_response(
    role: POP3Settings, drop: int, stream: bytes
) -> None:
    """Line by line, as a client that waits for each response: exactly one response
    per command, multi-line exactly where RFC 1939 and RFC 2449 say."""
    session = Session(role, None, drop)
    in_sasl = False
    with watchdog():
        for line in re.findall(rb"[^\n]*\n", stream):
            if session.over:
                break
            before = len(session.said)
            session.feed(line)
            lines = crlf_lines(bytes(session.said[before:]))
            assert lines, f"no response to {line!r}"
            words = line.split()
            verb = b"" if in_sasl else words[0].upper()
            if lines[0].startswith(b"+ "):
                assert lines == lines[:1], f"challenge and more: {lines!r}"
                in_sasl = True
                continue
            in_sasl = False
            multi = lines[0].startswith(b"+OK") and (
                verb in _MULTI_LINE or (verb in (b"LIST", b"UIDL", b"AUTH") and len(words) == 1)
            )
            rest = lines[1:]
            if multi:
                assert b"." in rest, f"{verb!r}: no terminating '.' in {lines!r}"
                rest = rest[rest.index(b".") + 1 :]
            assert rest in ([], [_CLOSE_AFTER_ERROR]), f"{verb!r}: more than one response"
            assert not rest or session.over
    check_responses(bytes(session.said))


def test_check_responses_needs_the_terminator() -> None:
    check_responses(b"+OK 2 messages\r\n1 10\r\n2 20\r\n.\r\n-ERR no\r\n")
    check_responses(b"+OK 0 messages\r\n.\r\n+OK\r\n")
    for broken in (b"+OK 1 message\r\n1 10\r\n", b"+OK 0 messages\r\n+OK\r\n1 10\r\n"):
        try:
            check_responses(broken)
        except AssertionError:
            continue
        raise AssertionError(f"accepted {broken!r}")
