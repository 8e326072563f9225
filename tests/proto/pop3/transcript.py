"""Drive the sans-IO POP3 server from a C:/S: transcript, byte for byte.

Played by :mod:`tests.proto.transcript_player`, as the SMTP and IMAP ones;
the application side is a fake: ``alice``/``secret`` logs in to a maildrop of
three messages, ``carol``/``secret`` finds hers locked by another session.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from mailstead.limits import POP3Limits
from mailstead.proto.pop3.content import crlf_size
from mailstead.proto.pop3.events import (
    NEED_DATA,
    PAUSED,
    AuthRequest,
    Event,
    Retrieve,
    StartTLS,
    Update,
)
from mailstead.proto.pop3.server import POP3Server, POP3Settings
from tests.proto.transcript_player import Player

HOST = "pop.example.test"
GREETING = f"+OK {HOST} Mailstead POP3 ready"

PLAIN = POP3Settings(hostname=HOST, tls_available=True)
SECURE = POP3Settings(hostname=HOST, secure=True)

MESSAGES = (
    # Bare LF line ends, as Maildir files usually have; a line starting with ".".
    b"From: bob@example.test\nSubject: one\n\nHello\n.hidden dot\n..two dots\nbye\n",
    # CRLF line ends and no line end at the very end.
    b"Subject: two\r\n\r\nline 1\r\nline 2\r\nline 3",
    b"Subject: three\n\nx\n",
)
SIZES = tuple(crlf_size(m) for m in MESSAGES)


@dataclass
class FakeMaildrops:
    """Who may log in and what their maildrop holds."""

    passwords: dict[str, str] = field(
        default_factory=lambda: {"alice": "secret", "carol": "secret"}
    )
    locked: frozenset[str] = frozenset({"carol"})
    messages: tuple[bytes, ...] = MESSAGES

    def listing(self) -> list[tuple[str, int]]:
        return [(f"uid-{i + 1}", crlf_size(m)) for i, m in enumerate(self.messages)]


class Transcript(Player):
    """One POP3 session's protocol object, the fake storage, and what happened."""

    def __init__(
        self,
        settings: POP3Settings = SECURE,
        *,
        limits: POP3Limits | None = None,
        drops: FakeMaildrops | None = None,
    ) -> None:
        if limits is not None:
            settings = replace(settings, limits=limits)
        self.drops = drops or FakeMaildrops()
        self.server = POP3Server(settings)
        super().__init__(self.server)
        self.events: list[Event] = []
        self.updates: list[Update] = []

    def drive(self) -> None:
        conn = self.server
        while True:
            event = conn.next_event()
            if event is NEED_DATA:
                return
            assert event is not PAUSED, f"paused awaiting {conn.awaiting}"
            self.events.append(event)
            if isinstance(event, AuthRequest):
                creds = event.credentials
                if self.drops.passwords.get(creds.authcid) != creds.password:
                    conn.auth_result(None)
                    continue
                conn.auth_result(creds.authcid)
                if creds.authcid in self.drops.locked:
                    conn.maildrop_in_use()
                else:
                    conn.maildrop_opened(self.drops.listing())
            elif isinstance(event, Retrieve):
                conn.retrieved(self.drops.messages[event.index])
            elif isinstance(event, Update):
                self.updates.append(event)
                conn.update_done(True)
            elif isinstance(event, StartTLS):
                conn.tls_started()

    def login(self) -> Transcript:
        """Greeting and USER/PASS as alice, checked loosely."""
        assert self.output() == f"{GREETING}\r\n".encode()
        said = self.feed(b"USER alice\r\nPASS secret\r\n")
        assert said.startswith(b"+OK Send PASS\r\n+OK Logged in"), said
        return self

    @property
    def closed(self) -> bool:
        return self.server.closing
