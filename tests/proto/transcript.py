"""Drive the sans-IO SMTP server from a transcript and check every byte it says.

A transcript is written as the RFCs write them::

    S: 220 mx.example.test ESMTP Mailstead
    C: EHLO client.example
    S: 250-mx.example.test greets client.example

Consecutive ``C:`` lines go to the server in one ``receive_data`` call (so a
run of them is a pipelined batch); the ``S:`` lines that follow must be,
byte for byte with CRLF, everything the server has to send after it has
worked through that batch. A ``C:`` group followed by no ``S:`` line asserts
that the server said nothing. Hostile inputs that are not text lines use
:meth:`Transcript.feed` with raw bytes.

The application side is a tiny fake policy (:class:`FakePolicy`): local
users of ``example.test``, every other domain is relay, ``alice``/``secret``
authenticates.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TypeVar

from mailstead.limits import SMTPLimits
from mailstead.proto.sasl import Credentials
from mailstead.proto.smtp.events import (
    NEED_DATA,
    PAUSED,
    AuthRequest,
    Event,
    MailFrom,
    Message,
    RcptTo,
    StartTLS,
)
from mailstead.proto.smtp.replies import Reply
from mailstead.proto.smtp.server import ServerSettings, SMTPServer

E = TypeVar("E", bound=Event)

HOST = "mx.example.test"
GREETING = f"220 {HOST} ESMTP Mailstead"

# The three roles a listener can have (config.py builds the real ones).
MTA = ServerSettings(hostname=HOST, tls_available=True)
MTA_NO_TLS = ServerSettings(hostname=HOST)
SUBMISSION = ServerSettings(
    hostname=HOST, tls_available=True, auth_mechanisms=("PLAIN", "LOGIN"), auth_required=True
)
SUBMISSIONS = ServerSettings(
    hostname=HOST, secure=True, auth_mechanisms=("PLAIN", "LOGIN"), auth_required=True
)


@dataclass
class FakePolicy:
    """What a receiver decides, reduced to sets: who exists, who may log in."""

    domain: str = "example.test"
    users: frozenset[str] = frozenset({"alice", "bob", "postmaster"})
    passwords: dict[str, str] = field(default_factory=lambda: {"alice": "secret"})
    refused_senders: frozenset[str] = frozenset({"spammer@bad.example"})

    def sender(self, event: MailFrom) -> Reply:
        if event.sender in self.refused_senders:
            return Reply(550, "5.7.1", "Sender refused")
        return Reply(250, "2.1.0", "Sender OK")

    def recipient(self, event: RcptTo) -> Reply:
        if event.recipient == "postmaster":
            return Reply(250, "2.1.5", "Recipient OK")
        local, _, domain = event.recipient.rpartition("@")
        if domain.lower() != self.domain:
            return Reply(554, "5.7.1", "Relay access denied")
        if local.lower() not in self.users:
            return Reply(550, "5.1.1", "No such user here")
        return Reply(250, "2.1.5", "Recipient OK")

    def authenticate(self, creds: Credentials) -> str | None:
        if self.passwords.get(creds.authcid) == creds.password and creds.authzid in (
            "",
            creds.authcid,
        ):
            return creds.authcid
        return None


def play(
    script: str, *, us: str, output: Callable[[], bytes], feed: Callable[[bytes], bytes]
) -> None:
    """Play a C:/S: transcript against the side ``us`` ("S" or "C") byte for byte.

    Consecutive lines of the peer go in one write; the lines of ``us`` that
    follow must be exactly what came out in answer. What is waiting before
    the first peer line (a greeting) must be the first group of ``us``.
    """
    steps: list[tuple[str, list[str]]] = []
    for raw in textwrap.dedent(script).splitlines():
        if not raw.strip():
            continue
        side, sep, text = raw.partition(":")
        if side not in ("C", "S") or not sep:
            raise ValueError(f"transcript line must start with C: or S: - {raw!r}")
        text = text[1:] if text.startswith(" ") else text
        if steps and steps[-1][0] == side:
            steps[-1][1].append(text)
        else:
            steps.append((side, [text]))
    said = output()
    if not steps or steps[0][0] != us:
        _expect(us, [], said)
    for i, (side, lines) in enumerate(steps):
        if side != us:
            said = feed(b"".join(f"{line}\r\n".encode() for line in lines))
            if i + 1 == len(steps):
                _expect(us, [], said)
        else:
            _expect(us, lines, said)


def _expect(us: str, lines: list[str], said: bytes) -> None:
    expected = b"".join(f"{line}\r\n".encode() for line in lines)
    if said != expected:
        who = "server" if us == "S" else "client"
        want = "\n".join(f"{us}: {line}" for line in lines) or "(nothing)"
        got = "\n".join(f"{us}: {line!r}" for line in said.split(b"\r\n")[:-1]) or "(nothing)"
        raise AssertionError(f"{who} said:\n{got}\nexpected:\n{want}\nraw: {said!r}")


class Transcript:
    """One SMTP session's protocol object, the fake policy, and what came out."""

    def __init__(
        self,
        settings: ServerSettings = MTA,
        *,
        limits: SMTPLimits | None = None,
        policy: FakePolicy | None = None,
        auto_tls: bool = True,
    ) -> None:
        if limits is not None:
            settings = replace(settings, limits=limits)
        self.policy = policy or FakePolicy()
        self.server = SMTPServer(settings)
        # With auto_tls the handshake "succeeds" as soon as StartTLS is seen.
        self.auto_tls = auto_tls
        self.events: list[Event] = []
        self.messages: list[Message] = []

    # -- driving -------------------------------------------------------------

    def drive(self) -> None:
        """Take events until the server needs bytes, answering as the policy says."""
        conn = self.server
        while True:
            event = conn.next_event()
            if event is NEED_DATA:
                return
            if event is PAUSED and conn.awaiting == "tls" and not self.auto_tls:
                return  # the test finishes the handshake itself
            assert event is not PAUSED, f"paused awaiting {conn.awaiting}"
            self.events.append(event)
            if isinstance(event, MailFrom):
                conn.reply(self.policy.sender(event))
            elif isinstance(event, RcptTo):
                conn.reply(self.policy.recipient(event))
            elif isinstance(event, Message):
                self.messages.append(event)
                conn.reply(Reply(250, "2.0.0", f"Queued as M{len(self.messages)}"))
            elif isinstance(event, AuthRequest):
                conn.auth_result(self.policy.authenticate(event.credentials))
            elif isinstance(event, StartTLS):
                if not self.auto_tls:
                    return
                conn.tls_started()

    def feed(self, data: bytes) -> bytes:
        """Send raw bytes, let the server work, return everything it said."""
        self.server.receive_data(data)
        self.drive()
        return self.server.data_to_send()

    def feed_split(self, data: bytes, cuts: list[int]) -> bytes:
        """Send ``data`` in pieces cut at ``cuts`` (taken modulo its length), as TCP may."""
        said, start = b"", 0
        for cut in [*sorted({c % (len(data) + 1) for c in cuts}), len(data)]:
            said += self.feed(data[start:cut])
            start = cut
        return said

    def output(self) -> bytes:
        """What the server has to say without new input (the greeting, at first)."""
        self.drive()
        return self.server.data_to_send()

    def handshake(self, name: str = "client.example") -> Transcript:
        """Greeting and EHLO, checked only loosely: for tests about what follows."""
        assert self.output() == f"{GREETING}\r\n".encode()
        assert self.feed(f"EHLO {name}\r\n".encode()).startswith(b"250-")
        return self

    def run(self, script: str) -> None:
        """Play a C:/S: transcript and assert each server batch byte for byte."""
        play(script, us="S", output=self.output, feed=self.feed)

    # -- what happened ---------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self.server.closing

    def of_type(self, kind: type[E]) -> list[E]:
        return [e for e in self.events if isinstance(e, kind)]


EHLO_LINES = (
    f"250-{HOST} greets client.example",
    "250-PIPELINING",
    "250-SIZE 52428800",
    "250-8BITMIME",
    "250-SMTPUTF8",
    "250-ENHANCEDSTATUSCODES",
    "250-CHUNKING",
    "250-DSN",
)
