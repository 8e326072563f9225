"""Fuzz: the SMTP client fed hostile server replies, cut anywhere, closed anywhere.

Properties (for every reply stream, every cut into reads, every ending:
the host closes, the driver's timer fires, or the connection resets):

* every call returns after at most a few events per octet read, and
  nothing is raised: a broken host fails the session, it never throws;
* on ``PAUSED`` the session is idle, so ``send_message()`` / ``quit()``,
  as the documented driver loop calls them, are always allowed;
* what the client writes is CRLF lines (and BDAT chunks of exactly the
  announced size);
* every ``send_message()`` gets exactly one ``MessageResult``, naming its
  recipients in order, however the session ends;
* after the end the client reaches ``Closed`` within a bounded number of
  steps, and from then on ``next_event()`` says ``Closed`` and nothing is
  written, whatever else arrives.

``tests/proto/test_smtp_client_properties.py`` checks the client against
the real server; this file only checks that no host can break it.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from mailstead.limits import SMTPClientLimits
from mailstead.proto.smtp.client import SMTPClient
from mailstead.proto.smtp.client_events import (
    Closed,
    MessageResult,
    Ready,
    SessionFailed,
    StartTLSRequested,
)
from mailstead.proto.smtp.events import (
    NEED_DATA,
    PAUSED,
    Event,
    MailParams,
    RcptParams,
    Recipient,
)
from tests.fuzz.wire import (
    DEADLINE_MS,
    Case,
    cases,
    crlf_lines,
    event_budget,
    mutated,
    watchdog,
)

# -- what a host says (RFC 5321 §4.2, RFC 2034) -------------------------------------

_CODES = st.sampled_from(
    [250] * 8
    + [354] * 3
    + [220, 221, 235, 251, 252, 334, 421, 450, 451, 452, 454]
    + [500, 501, 502, 503, 550, 552, 553, 554, 555, 299, 399]
)
_ENHANCED = st.sampled_from(["", "2.0.0 ", "2.1.5 ", "4.7.0 ", "5.1.1 ", "5.7.1 ", "9.9.9 "])
_TEXT = st.one_of(
    st.sampled_from(["OK", "", "mx.remote.test ESMTP", "Go ahead", "ünïcode", "\t tab"]),
    st.text(st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=20),
)
_KNOWN_EXTENSIONS = (
    "PIPELINING",
    "CHUNKING",
    "STARTTLS",
    "8BITMIME",
    "SMTPUTF8",
    "DSN",
    "ENHANCEDSTATUSCODES",
)
_ODD_EXTENSIONS = st.sampled_from(
    [
        *("SIZE 1000", "SIZE 40", "SIZE 0", "SIZE", "SIZE 99999999999999999999", "SIZE ²"),
        *("size 10", "AUTH PLAIN LOGIN", "X-ÜBER", "", " ", "STARTTLS extra"),
    ]
)
# Each known extension offered or not (so each half the time), and oddities.
_EXTENSIONS = st.builds(
    lambda on, odd: [x for x, yes in zip(_KNOWN_EXTENSIONS, on, strict=True) if yes] + odd,
    st.lists(st.booleans(), min_size=len(_KNOWN_EXTENSIONS), max_size=len(_KNOWN_EXTENSIONS)),
    st.lists(_ODD_EXTENSIONS, max_size=3),
)


def _lines(code: int, enhanced: str, texts: list[str]) -> bytes:
    last = len(texts) - 1
    return b"".join(
        f"{code}{' ' if i == last else '-'}{enhanced}{t}\r\n".encode() for i, t in enumerate(texts)
    )


_REPLY = st.builds(_lines, _CODES, _ENHANCED, st.lists(_TEXT, min_size=1, max_size=3))
_GREETING = st.sampled_from([220] * 8 + [421, 554, 250]).map(
    lambda code: f"{code} mx.remote.test ESMTP\r\n".encode()
)
_EHLO = st.one_of(
    _EXTENSIONS.map(lambda ext: _lines(250, "", ["mx.remote.test greets you", *ext])),
    st.just(b"502 5.5.1 What?\r\n250 mx.remote.test\r\n"),  # EHLO refused, HELO taken
)
# Greeting, EHLO answer, and then replies a host might send in any order.
VALID = st.builds(
    lambda g, e, rs: g + e + b"".join(rs), _GREETING, _EHLO, st.lists(_REPLY, max_size=14)
)


# -- what the application sends ---------------------------------------------------

_address = st.sampled_from(
    ["alice@example.test", "bob@remote.test", "ü@例え.test", "postmaster@x.test", "a+b@c.test"]
)
_recipient = st.builds(
    Recipient,
    _address,
    st.sampled_from(
        [
            RcptParams(),
            RcptParams(notify=("SUCCESS", "FAILURE")),
            RcptParams(orcpt="rfc822;x+y@z.test"),
        ]
    ),
)
_content = st.sampled_from(
    [
        b"Subject: hi\r\n\r\nHello\r\n",
        b"",
        b".\r\n..\r\n.x\r\n",
        b"bare\nlf\rcr",
        b"caf\xc3\xa9\r\n",
        b"x" * 50 + b"\r\n",
    ]
)
_params = st.sampled_from(
    [None, MailParams(smtputf8=True), MailParams(body="8BITMIME", ret="HDRS", envid="id+=é")]
)
_message = st.tuples(
    st.sampled_from(["", "carol@example.test", "ü@例え.test"]),
    st.lists(_recipient, min_size=1, max_size=3),
    _content,
    _params,
)
_LIMITS = st.sampled_from([None, SMTPClientLimits(reply_line=48, reply_lines=3, bdat_chunk=7)])


class Driver:
    """One SMTPClient driven as net/smtp_client.py drives it."""

    def __init__(
        self,
        messages: list[tuple[str, list[Recipient], bytes, MailParams | None]],
        *,
        require_tls: bool,
        handshake_ok: bool,
        limits: SMTPClientLimits | None,
    ) -> None:
        self.client = SMTPClient(
            "client.example", require_tls=require_tls, tls_available=True, limits=limits
        )
        self.pending = list(messages)
        self.sent: list[list[Recipient]] = []
        self.handshake_ok = handshake_ok
        self.events: list[Event] = []
        self.written = bytearray()
        self.closed = False

    def flush(self) -> None:
        out = self.client.data_to_send()
        if self.closed:
            assert out == b"", f"written after Closed: {out!r}"
        self.written += out

    def drain(self, budget: int) -> None:
        client = self.client
        budget += 3 * len(self.pending) + 4  # the application's calls make events too
        for _ in range(budget):
            ev = client.next_event()
            self.flush()
            if ev is NEED_DATA:
                return
            if isinstance(ev, Closed):
                if not self.closed:
                    self.events.append(ev)
                self.closed = True
                return
            if ev is PAUSED:
                # The documented driver loop: the session is idle, give it work.
                if self.pending:
                    sender, rcpts, content, params = self.pending.pop(0)
                    self.sent.append(rcpts)
                    client.send_message(sender, rcpts, content, params)
                else:
                    client.quit()
                continue
            self.events.append(ev)
            if isinstance(ev, StartTLSRequested):
                if self.handshake_ok:
                    client.tls_started()
                else:
                    client.connection_lost("TLS handshake failed")
        raise AssertionError(f"more than {budget} events from one read: it spins")

    def feed(self, read: bytes) -> None:
        self.client.receive_data(read)
        self.drain(event_budget(read))

    def end(self, how: str) -> None:
        """The host closed, the timer fired, or the connection broke."""
        client = self.client
        if how == "eof":
            client.receive_data(b"")
        elif how == "timeout":
            client.timed_out()
        else:
            client.connection_lost()
        self.drain(16)
        assert self.closed, f"no Closed after the end ({how})"
        client.receive_data(b"250 OK\r\n")
        for _ in range(3):
            assert isinstance(client.next_event(), Closed)
        self.flush()
        assert client.timeout is None

    def check(self) -> None:
        results = [e for e in self.events if isinstance(e, MessageResult)]
        assert [[r.address for r in m.recipients] for m in results] == [
            [r.address for r in rcpts] for rcpts in self.sent
        ], "one MessageResult per send_message(), recipients in order"
        assert sum(isinstance(e, SessionFailed) for e in self.events) <= 1
        assert isinstance(self.events[-1], Closed)
        assert sum(isinstance(e, Closed) for e in self.events) == 1
        check_commands(bytes(self.written))


_BDAT = re.compile(rb"BDAT ([0-9]+)( LAST)?")


def check_commands(out: bytes) -> None:
    """CRLF lines; a BDAT line is followed by exactly the octets it announces."""
    pos = 0
    while pos < len(out):
        end = out.find(b"\r\n", pos)
        assert end >= 0, f"unterminated line {out[pos:]!r}"
        crlf_lines(out[pos : end + 2])
        m = _BDAT.fullmatch(out, pos, end)
        pos = end + 2
        if m is not None:
            pos += int(m[1])
            assert pos <= len(out), "BDAT chunk shorter than announced"


# -- a host that answers what the client said -----------------------------------------

# Per command, what a host may answer: mostly yes, sometimes each kind of no.
_ANSWERS = {
    "HELO": [250, 250, 550, 421],
    "STARTTLS": [220, 220, 454, 502],
    "MAIL": [250, 250, 250, 451, 550, 552, 421],
    "RCPT": [250, 250, 251, 450, 452, 550, 553],
    "DATA": [354, 354, 354, 451, 503, 554],
    ".": [250, 250, 451, 552, 554],
    "BDAT": [250, 250, 250, 451, 552],
    "RSET": [250, 250, 500],
    "QUIT": [221, 221, 500],
}


class Host:
    """The remote end: splits what the client wrote into commands, answers each."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.in_data = False

    def commands(self, written: bytes) -> list[str]:
        self.buf += written
        found = []
        while (end := self.buf.find(b"\r\n")) >= 0:
            line = bytes(self.buf[:end])
            m = _BDAT.fullmatch(line)
            if m is not None and len(self.buf) < end + 2 + int(m[1]):
                break  # the chunk is not all here yet
            del self.buf[: end + 2]
            if self.in_data:
                if line == b".":
                    self.in_data = False
                    found.append(".")
                continue
            if m is not None:
                del self.buf[: int(m[1])]
            found.append(line.split(b" ", 1)[0].decode("utf-8", "replace").upper())
        return found

    def answer(self, data: st.DataObject, verb: str) -> bytes:
        if verb == "EHLO":
            if data.draw(st.integers(0, 5)) == 0:
                return b"502 5.5.1 Unknown command\r\n"
            ext = data.draw(_EXTENSIONS)
            return _lines(250, "", ["mx.remote.test", *ext])
        code = data.draw(st.sampled_from(_ANSWERS.get(verb, [500])))
        if verb == "DATA" and code == 354:
            self.in_data = True
        enhanced = data.draw(_ENHANCED)
        return _lines(code, enhanced, data.draw(st.lists(_TEXT, min_size=1, max_size=2)))


def converse(data: st.DataObject, driver: Driver, *, hostile: bool, how: str) -> None:
    """Answer each batch the client writes until it closes or the host gives up."""
    host = Host()
    replies = data.draw(_GREETING)
    seen = 0
    # The host leaves after this many batches, halfway through its answer.
    leave_at = data.draw(st.one_of(st.none(), st.none(), st.integers(0, 12)))
    with watchdog():
        driver.drain(4)
        for batch in range(40):
            if hostile and data.draw(st.integers(0, 3)) == 0:  # one batch in four
                replies = data.draw(mutated(st.just(replies)))
            if batch == leave_at:
                replies = replies[: data.draw(st.integers(0, len(replies)))]
            cuts = data.draw(st.lists(st.integers(0, len(replies)), max_size=4))
            for read in Case(replies, tuple(cuts), None).reads():
                driver.feed(read)
                if driver.closed:
                    break
            if driver.closed or batch == leave_at:
                break
            commands = host.commands(bytes(driver.written[seen:]))
            seen = len(driver.written)
            if not commands:
                break  # the client waits for something the host will never send
            replies = b"".join(host.answer(data, verb) for verb in commands)
        driver.end(how if not driver.closed else "eof")
    driver.check()
    for kind in sorted({type(e).__name__ for e in driver.events}):
        event(kind)


def run(case: Case, driver: Driver, how: str) -> None:
    with watchdog():
        driver.drain(4)
        for read in case.reads():
            driver.feed(read)
            if driver.closed:
                break
        # Once Closed the driver closes the transport; more input is ignored.
        driver.end(how if not driver.closed else "eof")
    driver.check()


_MESSAGES = st.lists(_message, max_size=3)
_HOW = st.sampled_from(["eof", "timeout", "reset"])
Messages = list[tuple[str, list[Recipient], bytes, MailParams | None]]


@pytest.mark.parametrize("hostile", [False, True], ids=["answering", "mangling"])
@settings(max_examples=250, deadline=DEADLINE_MS)
@given(
    data=st.data(),
    messages=_MESSAGES,
    require_tls=st.sampled_from([False, False, True]),
    handshake_ok=st.sampled_from([True, True, False]),
    limits=_LIMITS,
    how=_HOW,
)
def test_a_host_answering_or_mangling_each_reply_never_breaks_the_client(
    hostile: bool,
    data: st.DataObject,
    messages: Messages,
    require_tls: bool,
    handshake_ok: bool,
    limits: SMTPClientLimits | None,
    how: str,
) -> None:
    driver = Driver(messages, require_tls=require_tls, handshake_ok=handshake_ok, limits=limits)
    converse(data, driver, hostile=hostile, how=how)


@settings(max_examples=200, deadline=DEADLINE_MS)
@given(case=cases(mutated(VALID)), messages=_MESSAGES, limits=_LIMITS, how=_HOW)
def test_replies_out_of_order_and_mutated_never_break_the_client(
    case: Case, messages: Messages, limits: SMTPClientLimits | None, how: str
) -> None:
    driver = Driver(messages, require_tls=False, handshake_ok=True, limits=limits)
    run(case, driver, how)


def test_a_ready_session_that_the_host_closes_defers_what_is_in_flight() -> None:
    """The shape every fuzz case ends in, spelt out once."""
    driver = Driver(
        [("a@b.test", [Recipient("c@d.test", RcptParams())], b"x\r\n", None)],
        require_tls=False,
        handshake_ok=True,
        limits=None,
    )
    driver.feed(b"220 mx\r\n250 mx\r\n")
    assert any(isinstance(e, Ready) for e in driver.events)
    assert bytes(driver.written) == b"EHLO client.example\r\nMAIL FROM:<a@b.test>\r\n"
    driver.end("eof")
    driver.check()
    (result,) = [e for e in driver.events if isinstance(e, MessageResult)]
    assert [r.outcome.value for r in result.recipients] == ["deferred"]
