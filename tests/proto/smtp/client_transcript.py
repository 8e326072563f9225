"""Drive the sans-IO SMTP client from a transcript and check every byte it says.

Played by :mod:`tests.proto.transcript_player` the other way round from
:mod:`tests.proto.smtp.transcript`: here ``S:`` lines are what
the test (playing the remote host) sends, and ``C:`` lines are what the
client must have written, byte for byte with CRLF::

    S: 220 mx.remote.test ESMTP
    C: EHLO client.example

Consecutive ``S:`` lines go to the client in one ``receive_data`` call (so a
run of them arrives in one TCP read); the ``C:`` lines that follow must be
everything the client has to send after working through them. An ``S:``
group followed by no ``C:`` line asserts that the client said nothing. The
test calls ``send_message()`` / ``quit()`` between ``run()`` calls; every
event the client yields is kept in :attr:`ClientTranscript.events`.
"""

from __future__ import annotations

from typing import TypeVar

from mailstead.limits import SMTPClientLimits
from mailstead.proto.smtp.client import SMTPClient
from mailstead.proto.smtp.client_events import (
    Closed,
    MessageResult,
    SessionFailed,
    StartTLSRequested,
)
from mailstead.proto.smtp.events import NEED_DATA, PAUSED, Event, MailParams, RcptParams, Recipient
from tests.proto.transcript_player import Player

E = TypeVar("E", bound=Event)

HELO = "client.example"


def rcpts(*addresses: str) -> list[Recipient]:
    return [Recipient(a, RcptParams()) for a in addresses]


class ClientTranscript(Player):
    """One client session, the events it yielded, and what it wrote."""

    us = "C"

    def __init__(
        self,
        *,
        require_tls: bool = False,
        tls_available: bool = True,
        limits: SMTPClientLimits | None = None,
        auto_tls: bool = True,
    ) -> None:
        self.client = SMTPClient(
            HELO, require_tls=require_tls, tls_available=tls_available, limits=limits
        )
        super().__init__(self.client)
        self.auto_tls = auto_tls
        self.events: list[Event] = []

    # -- driving -------------------------------------------------------------

    def drive(self) -> None:
        """Take events until the client needs bytes, the application, or is closed."""
        while True:
            event = self.client.next_event()
            if event is NEED_DATA or event is PAUSED:
                return
            if isinstance(event, Closed) and self.events and isinstance(self.events[-1], Closed):
                return
            self.events.append(event)
            if isinstance(event, StartTLSRequested):
                if not self.auto_tls:
                    return
                self.client.tls_started()

    def send(
        self,
        recipients: list[Recipient] | list[str],
        content: bytes = b"Subject: hi\r\n\r\nHello\r\n",
        *,
        sender: str = "alice@example.test",
        params: MailParams | None = None,
    ) -> None:
        rl = [r if isinstance(r, Recipient) else Recipient(r, RcptParams()) for r in recipients]
        self.client.send_message(sender, rl, content, params)

    # -- what happened ---------------------------------------------------------

    def of_type(self, kind: type[E]) -> list[E]:
        return [e for e in self.events if isinstance(e, kind)]

    def outcomes(self, index: int = -1) -> list[tuple[str, str, int, str, bool]]:
        """(address, outcome, code, enhanced, remote) of one MessageResult."""
        result = self.of_type(MessageResult)[index]
        return [
            (r.address, r.outcome.value, r.reply.code, r.reply.enhanced, r.remote)
            for r in result.recipients
        ]

    @property
    def failure(self) -> SessionFailed:
        (failed,) = self.of_type(SessionFailed)
        return failed


GREETING = "S: 220 mx.remote.test ESMTP"
EHLO = f"C: EHLO {HELO}"
