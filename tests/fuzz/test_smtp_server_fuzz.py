"""Fuzz: the SMTP server under streams of real and mutated commands, cut anywhere.

Properties (for every stream, every way of cutting it into reads, every
point where the client closes):

* every call returns, after at most a few events per octet fed (no spin),
  and nothing is raised: the peer's errors are answered, not thrown;
* everything said is whole replies: ``ddd-``/``ddd `` lines of one code, in
  ASCII, each ending in CRLF, the last line of each reply with a space;
* memory stays bounded: at most one unfinished line (or the bounded tail
  of a DATA body) is buffered between reads;
* a message event holds CRLF-only content within the size limit;
* when input ends the engine is quiet: ``next_event()`` keeps returning
  ``NEED_DATA``; ``close()`` (the idle timer) says one 421 unless the
  session was already over, and after it nothing is taken or said.

``tests/proto/test_smtp_properties.py`` checks exact results for exact
inputs; this file only checks that no input can break the engine.
"""

from __future__ import annotations

import base64
import re
from dataclasses import replace

from hypothesis import event, given, settings
from hypothesis import strategies as st

from mailstead.limits import SMTPLimits
from mailstead.proto.smtp import replies as R
from mailstead.proto.smtp.dotstuff import stuff
from mailstead.proto.smtp.events import (
    NEED_DATA,
    PAUSED,
    AuthRequest,
    Closing,
    Event,
    MailFrom,
    Message,
    RcptTo,
    StartTLS,
)
from mailstead.proto.smtp.replies import Reply
from mailstead.proto.smtp.server import ServerSettings, SMTPServer
from tests.fuzz.wire import (
    DEADLINE_MS,
    Case,
    ascii_text,
    cases,
    crlf_lines,
    event_budget,
    mutated,
    watchdog,
    weighted,
)
from tests.proto.smtp.transcript import MTA, MTA_NO_TLS, SUBMISSION, SUBMISSIONS, FakePolicy

TIGHT = SMTPLimits(
    command_line=80,
    message_size=64,
    recipients_per_message=2,
    messages_per_session=2,
    commands_per_session=40,
    errors_per_session=4,
    auth_failures_per_session=2,
    sasl_line=48,
)
ROLES = st.sampled_from(
    [
        MTA,
        MTA_NO_TLS,
        SUBMISSION,
        SUBMISSIONS,
        replace(SUBMISSION, auth_requires_tls=False),
        replace(SUBMISSIONS, limits=TIGHT),
        replace(MTA, limits=TIGHT),
    ]
)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# -- real commands (RFC 5321 §4.1.1, RFC 3030, RFC 3207, RFC 4954) -------------

_local = st.sampled_from(["alice", "bob", "nobody", "Alice", "postmaster", '"a b"', "ü"])
_domain = st.sampled_from(["example.test", "remote.test", "EXAMPLE.test", "ü.test", "[192.0.2.1]"])
_address = st.builds("{}@{}".format, _local, _domain)
_mail_params = st.lists(
    st.sampled_from(
        [
            *("SIZE=100", "SIZE=99999999", "BODY=8BITMIME", "BODY=7BIT", "SMTPUTF8"),
            *("RET=HDRS", "ENVID=a+2Bb", "AUTH=<>"),
        ]
    ),
    max_size=3,
    unique=True,
)
_rcpt_params = st.lists(
    st.sampled_from(["NOTIFY=SUCCESS,FAILURE", "NOTIFY=NEVER", "ORCPT=rfc822;b+40x.test"]),
    max_size=2,
    unique=True,
)
_mail = st.builds(
    lambda a, p: " ".join([f"MAIL FROM:<{a}>", *p]),
    st.just("") | _address,
    _mail_params,
)
_rcpt = st.builds(
    lambda a, p: " ".join([f"RCPT TO:<{a}>", *p]),
    st.just("Postmaster") | _address,
    _rcpt_params,
)
_body_line = st.sampled_from(
    [b"Subject: hi", b"", b".", b"..", b".x", b"QUIT", b"caf\xc3\xa9", b"x" * 30]
)
_data = st.lists(_body_line, max_size=6).map(
    lambda lines: b"DATA\r\n" + stuff(b"".join(x + b"\r\n" for x in lines))
)


@st.composite
def _bdat(draw: st.DrawFn, ends: bool = False) -> bytes:
    chunks = draw(st.lists(st.binary(max_size=20), min_size=1, max_size=3))
    out = b""
    for i, chunk in enumerate(chunks):
        last = " LAST" if i == len(chunks) - 1 and (ends or draw(st.booleans())) else ""
        out += f"BDAT {len(chunk)}{last}\r\n".encode() + chunk
    return out


_creds = st.sampled_from([("alice", "secret"), ("alice", "wrong"), ("bob", "")])


def _plain(creds: tuple[str, str], authzid: str = "") -> str:
    return _b64(f"{authzid}\0{creds[0]}\0{creds[1]}")


_auth = st.one_of(
    _creds.map(lambda c: f"AUTH PLAIN {_plain(c)}\r\n"),
    _creds.map(lambda c: f"AUTH PLAIN\r\n{_plain(c, c[0])}\r\n"),
    _creds.map(lambda c: f"AUTH LOGIN\r\n{_b64(c[0])}\r\n{_b64(c[1])}\r\n"),
    _creds.map(lambda c: f"AUTH LOGIN {_b64(c[0])}\r\n{_b64(c[1])}\r\n"),
    st.sampled_from(["AUTH PLAIN =\r\n", "AUTH LOGIN\r\n*\r\n", "AUTH CRAM-MD5\r\n"]),
).map(str.encode)
_simple = st.sampled_from(
    [
        "EHLO client.example",
        "ehlo client.example",
        "HELO client.example",
        "RSET",
        "NOOP",
        "NOOP hello",
        "VRFY alice",
        "EXPN staff",
        "HELP",
        "STARTTLS",
        "QUIT",
    ]
).map(lambda line: line.encode() + b"\r\n")
_command = weighted(
    (3, _simple),
    (1, _mail.map(lambda line: line.encode() + b"\r\n")),
    (1, _rcpt.map(lambda line: line.encode() + b"\r\n")),
    (1, _data),
    (1, _bdat()),
    (1, _auth),
    (1, ascii_text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ ").map(lambda w: w.encode() + b"\r\n")),
)
_good_rcpt = st.sampled_from(
    [
        "RCPT TO:<alice@example.test>",
        "RCPT TO:<Bob@EXAMPLE.test> NOTIFY=DELAY",
        "RCPT TO:<postmaster>",
    ]
)


@st.composite
def _transaction(draw: st.DrawFn) -> bytes:
    """MAIL, RCPT and the body, as a client that expects success sends them."""
    mail = draw(st.sampled_from(["MAIL FROM:<carol@remote.test>", "MAIL FROM:<> BODY=8BITMIME"]))
    rcpts = draw(st.lists(_good_rcpt | _rcpt, min_size=1, max_size=3))
    lines = "".join(x + "\r\n" for x in [mail, *rcpts]).encode()
    return lines + draw(_data | _bdat(ends=True))


# Most sessions greet, negotiate TLS and log in first; then anything goes.
_prelude = st.sampled_from(
    [
        b"",
        b"EHLO client.example\r\n",
        b"EHLO c\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n",
        b"EHLO c\r\nSTARTTLS\r\nEHLO c\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n",
        b"EHLO c\r\nSTARTTLS\r\nEHLO c\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n",
    ]
)
VALID = st.builds(
    lambda p, cs: p + b"".join(cs),
    _prelude,
    st.lists(weighted((2, _transaction()), (3, _command)), max_size=8),
)
STARTTLS = b"STARTTLS\r\n"


# -- the driver (as net/smtp_session.py) and what it checks ------------------------

_REPLY_LINE = re.compile(rb"([2-5][0-9][0-9])([ -])[\x20-\x7e]*")


def check_replies(out: bytes) -> None:
    """Whole replies only (RFC 5321 §4.2): one code per reply, ASCII, CRLF."""
    open_code: bytes | None = None
    for line in crlf_lines(out):
        m = _REPLY_LINE.fullmatch(line)
        assert m is not None, f"not a reply line: {line!r}"
        assert open_code in (None, m[1]), f"code changed inside a reply: {line!r}"
        open_code = m[1] if m[2] == b"-" else None
    assert open_code is None, "a multi-line reply without its last line"


class Session:
    """One SMTPServer driven as the asyncio session drives it, with a fake policy."""

    def __init__(self, role: ServerSettings) -> None:
        self.server = SMTPServer(role)
        self.limits = role.limits
        self.policy = FakePolicy()
        self.events: list[Event] = []
        self.over = False  # the session would have closed the connection
        self.flush()  # the greeting

    def flush(self) -> bytes:
        out = self.server.data_to_send()
        check_replies(out)
        return out

    def feed(self, read: bytes) -> None:
        conn = self.server
        conn.receive_data(read)
        self.drain(event_budget(read))
        self.flush()
        limits = self.limits
        if conn.in_data:
            size = limits.message_size
            bound = size + size // 8 + 1024 + 2
        else:
            bound = max(limits.command_line, limits.sasl_line)
        assert conn.buffered <= bound, f"{conn.buffered} octets buffered"
        self.over = self.over or conn.closing

    def drain(self, budget: int) -> None:
        conn = self.server
        for _ in range(budget):
            event = conn.next_event()
            if event is NEED_DATA:
                return
            assert event is not PAUSED, f"paused awaiting {conn.awaiting}"
            self.events.append(event)
            if isinstance(event, MailFrom):
                conn.reply(self.policy.sender(event))
            elif isinstance(event, RcptTo):
                conn.reply(self.policy.recipient(event))
            elif isinstance(event, Message):
                content = event.content
                assert content.count(b"\r") == content.count(b"\n") == content.count(b"\r\n")
                assert len(content) <= self.limits.message_size and event.recipients
                conn.reply(Reply(250, "2.0.0", "Queued"))
            elif isinstance(event, AuthRequest):
                conn.auth_result(self.policy.authenticate(event.credentials))
            elif isinstance(event, StartTLS):
                assert conn.data_to_send().endswith(b"220 2.0.0 Ready to start TLS\r\n")
                conn.tls_started()
            elif isinstance(event, Closing):
                self.over = True
                return
        raise AssertionError(f"more than {budget} events from one read: it spins")

    def end(self) -> None:
        """The client is gone (or silent until the idle timer fires)."""
        conn = self.server
        for _ in range(3):
            assert conn.next_event() is NEED_DATA
        assert conn.data_to_send() == b""
        was_closing = conn.closing
        conn.close(R.TIMEOUT)
        assert conn.data_to_send() == (b"" if was_closing else R.TIMEOUT.encode())
        conn.receive_data(b"NOOP\r\n")
        assert conn.next_event() is NEED_DATA
        assert conn.data_to_send() == b"" and conn.buffered == 0


def run(role: ServerSettings, case: Case) -> Session:
    session = Session(role)
    with watchdog():
        for read in case.reads():
            if session.over:
                # The session stopped reading; the engine ignores more anyway.
                session.server.receive_data(read)
                assert session.server.next_event() is NEED_DATA
                assert session.server.data_to_send() == b""
                continue
            session.feed(read)
        session.end()
    for kind in sorted({type(e).__name__ for e in session.events}):
        event(kind)  # what was reached: see --hypothesis-show-statistics
    return session


@settings(max_examples=300, deadline=DEADLINE_MS)
@given(role=ROLES, case=cases(VALID, STARTTLS))
def test_real_commands_in_any_reads_keep_the_server_well_formed(
    role: ServerSettings, case: Case
) -> None:
    run(role, case)


@settings(max_examples=300, deadline=DEADLINE_MS)
@given(role=ROLES, case=cases(mutated(VALID), STARTTLS))
def test_mutated_commands_in_any_reads_keep_the_server_well_formed(
    role: ServerSettings, case: Case
) -> None:
    run(role, case)


@settings(max_examples=100, deadline=DEADLINE_MS)
@given(role=ROLES, case=cases(st.binary(max_size=400)))
def test_random_octets_keep_the_server_well_formed(role: ServerSettings, case: Case) -> None:
    run(role, case)
