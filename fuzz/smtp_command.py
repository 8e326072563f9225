"""Fuzz target: the sans-IO SMTP server, from greeting to QUIT, fed arbitrary bytes.

Owns :class:`mailstead.proto.smtp.server.SMTPServer` with its framing
(command lines, DATA with dot-stuffing, BDAT chunks, SASL exchanges), its
transaction state and limits. The application's side answers every event
the way a permissive policy would (as ``tests/proto/smtp/transcript.py`` does),
so the session gets as far as the bytes take it. Oracles: nothing but
``NEED_DATA``/an event comes out, every reply is well formed ASCII ending in
CRLF, a message has CRLF line ends and is within the size limit, and the
events and replies do not depend on how the bytes were chunked.
"""

from __future__ import annotations

import re
from dataclasses import replace

from fuzz._harness import chunks, fuzz, instrumented

with instrumented(__name__):
    from mailstead.limits import SMTPLimits
    from mailstead.proto.smtp.events import (
        NEED_DATA,
        AuthRequest,
        Closing,
        Event,
        Hello,
        MailFrom,
        Message,
        RcptTo,
        Reset,
        StartTLS,
    )
    from mailstead.proto.smtp.replies import Reply
    from mailstead.proto.smtp.server import ServerSettings, SMTPServer

_HOST = "mx.example.test"
# The MTA port with STARTTLS, and a submission port where AUTH works in the
# clear (so the fuzzer can reach it) with every limit small enough to hit.
_MTA = ServerSettings(hostname=_HOST, tls_available=True)
_SUBMISSION = ServerSettings(
    hostname=_HOST,
    auth_mechanisms=("PLAIN", "LOGIN"),
    auth_requires_tls=False,
    auth_required=True,
    limits=SMTPLimits(
        command_line=120,
        message_size=300,
        recipients_per_message=3,
        messages_per_session=3,
        commands_per_session=60,
        errors_per_session=6,
        auth_failures_per_session=2,
        sasl_line=80,
    ),
)
_SETTINGS = (_MTA, replace(_SUBMISSION, secure=True), _SUBMISSION)
_REPLY_LINE = re.compile(rb"[2-5][0-9][0-9][ -][\x20-\x7e]*\r\n")
_BARE_CR_OR_LF = re.compile(rb"\r(?!\n)|(?<!\r)\n")


def _answer(server: SMTPServer, event: Event) -> None:
    """The application's side: a policy that says yes unless the address says no."""
    if isinstance(event, MailFrom):
        refused = event.sender.startswith("bad")
        server.reply(Reply(550, "5.7.1", "Refused") if refused else Reply(250, "2.1.0", "OK"))
    elif isinstance(event, RcptTo):
        refused = event.recipient.startswith("x")
        server.reply(Reply(550, "5.1.1", "No such user") if refused else Reply(250, "2.1.5", "OK"))
    elif isinstance(event, Message):
        server.reply(Reply(250, "2.0.0", "Queued"))
    elif isinstance(event, AuthRequest):
        ok = event.credentials.password == "secret"
        server.auth_result(event.credentials.authcid if ok else None)
    elif isinstance(event, StartTLS):
        server.tls_started()
    else:
        assert isinstance(event, Hello | Reset | Closing), f"unexpected event {event!r}"


def _check_message(event: Message, limits: SMTPLimits) -> None:
    assert event.recipients, "a message without recipients"
    assert len(event.content) <= limits.message_size, "message over the size limit"
    assert not _BARE_CR_OR_LF.search(event.content), "bare CR or LF in message content"


def _drive(settings: ServerSettings, pieces: list[bytes]) -> tuple[list[Event], bytes]:
    """Every event and every byte the server says while it reads ``pieces``."""
    server = SMTPServer(settings)
    events: list[Event] = []
    said: list[bytes] = [server.data_to_send()]
    for piece in pieces:
        server.receive_data(piece)
        while True:
            event = server.next_event()
            if event is NEED_DATA:
                break
            assert isinstance(event, Event), event
            if isinstance(event, Message):
                _check_message(event, settings.limits)
            events.append(event)
            _answer(server, event)
            assert server.awaiting is None, f"still awaiting {server.awaiting} after {event!r}"
        said.append(server.data_to_send())
        if server.closing:
            break
    return events, b"".join(said)


def _check_replies(said: bytes) -> None:
    pos = 0
    while pos < len(said):
        m = _REPLY_LINE.match(said, pos)
        if m is None:
            raise AssertionError(f"malformed reply at {pos}: {said[pos : pos + 80]!r}")
        pos = m.end()


def test_one_input(data: bytes) -> None:
    """One SMTP session per set-up, fed ``data`` whole and in chunks."""
    for settings in _SETTINGS:
        events, said = _drive(settings, [data])
        _check_replies(said)
        chunked_events, chunked_said = _drive(settings, list(chunks(data)))
        _check_replies(chunked_said)
        if any(isinstance(e, StartTLS) for e in events + chunked_events):
            continue  # RFC 3207 §4.2: what was pipelined behind STARTTLS is dropped
        if b"552 " in said + chunked_said:
            continue  # over the size limit, memory is bounded per read: replies may differ
        if (events, said) != (chunked_events, chunked_said):
            raise AssertionError(
                f"session depends on chunking:\n{events!r}\n{said!r}\n"
                f"{chunked_events!r}\n{chunked_said!r}"
            )


def main() -> None:
    """``python -m fuzz.smtp_command [libFuzzer flags] [corpus dirs]``."""
    fuzz(test_one_input)


if __name__ == "__main__":
    main()
