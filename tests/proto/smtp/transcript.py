"""Drive the sans-IO SMTP server from a transcript and check every byte it says.

The player is :mod:`tests.proto.transcript_player`: ``C:`` lines are the
test, ``S:`` lines what the server must say, byte for byte. Hostile inputs
that are not text lines use :meth:`Transcript.feed` with raw bytes.

The application side is a tiny fake policy (:class:`FakePolicy`): local
users of ``example.test``, every other domain is relay, ``alice``/``secret``
authenticates.
"""

from __future__ import annotations

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
from tests.proto.transcript_player import Player

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


class Transcript(Player):
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
        super().__init__(self.server)
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

    def feed_split(self, data: bytes, cuts: list[int]) -> bytes:
        """Send ``data`` in pieces cut at ``cuts`` (taken modulo its length), as TCP may."""
        said, start = b"", 0
        for cut in [*sorted({c % (len(data) + 1) for c in cuts}), len(data)]:
            said += self.feed(data[start:cut])
            start = cut
        return said

    def handshake(self, name: str = "client.example") -> Transcript:
        """Greeting and EHLO, checked only loosely: for tests about what follows."""
        assert self.output() == f"{GREETING}\r\n".encode()
        assert self.feed(f"EHLO {name}\r\n".encode()).startswith(b"250-")
        return self

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
