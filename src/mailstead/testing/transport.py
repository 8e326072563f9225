"""An in-memory :class:`~mailstead.mta.transport.HostTransport` for tests of the outbound MTA.

Hosts are scripted by address; the transport answers as the script says and
records every session and every message it was handed::

    transport = MemoryTransport(clock)
    mx = transport.host("127.0.0.1", rcpt={"busy@solo.test": "450 4.2.1 Mailbox busy"})
    outbound = Outbound(..., transport=transport)
    ...
    assert mx.delivered_to("bob@solo.test") == 1

Nothing is written anywhere: what goes on the wire (dot-stuffing,
pipelining, RSET, STARTTLS, timeouts) is the real client's business and is
tested over loopback. An address with no scripted host refuses the
connection, as a host where nothing listens does.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from mailstead.clock import Clock
from mailstead.mta.transport import HostResult, OnResult, OutboundMessage, SessionPolicy
from mailstead.proto.smtp.client_events import (
    MessageResult,
    RecipientResult,
    SessionFailed,
    outcome_of,
)
from mailstead.proto.smtp.replies import Reply

_ENHANCED = re.compile(r"[245]\.\d{1,3}\.\d{1,3}")


def reply(text: str) -> Reply:
    """``"450 4.2.1 Mailbox busy"`` as a :class:`Reply` (the enhanced code may be left out)."""
    code, _, rest = text.partition(" ")
    enhanced, _, said = rest.partition(" ")
    if not _ENHANCED.fullmatch(enhanced):
        enhanced, said = "", rest
    return Reply(int(code), enhanced, said)


@dataclass(frozen=True, slots=True)
class Handed:
    """One message a scripted host was offered, and what it answered."""

    message: OutboundMessage
    accepted: tuple[str, ...]  # the recipients whose RCPT got a 2xx
    result: MessageResult


@dataclass(slots=True)
class HostSession:
    """One session with a scripted host: how it was opened and what it carried."""

    host: str
    address: str
    port: int
    policy: SessionPolicy
    opened_at: float  # on the transport's clock
    handed: list[Handed] = field(default_factory=list)


@dataclass(slots=True)
class ScriptedHost:
    """How one address answers; the script may change between runs.

    A ``greeting`` other than 2xx refuses the session (a 5xx for good).
    ``rcpt`` maps a recipient to its RCPT reply (``"250 2.1.5 OK"`` for the
    others); ``data`` is the reply at the end of data, which decides every
    accepted recipient. ``dsn`` says whether the host offers DSN (RFC 3461),
    so that NOTIFY travels on and success is the next hop's to report.
    """

    greeting: str = "220 ready"
    rcpt: dict[str, str] = field(default_factory=dict)
    data: str = "250 2.0.0 Queued"
    dsn: bool = True
    sessions: list[HostSession] = field(default_factory=list)

    @property
    def handed(self) -> list[Handed]:
        """Every message offered, over every session, in order."""
        return [h for s in self.sessions for h in s.handed]

    @property
    def transactions(self) -> list[Handed]:
        """The messages whose content was sent: at least one recipient accepted."""
        return [h for h in self.handed if h.accepted]

    def offered(self, address: str) -> int:
        """How many times ``address`` was offered (in RCPT TO)."""
        return sum(1 for h in self.handed for r in h.message.recipients if r.address == address)

    def delivered_to(self, address: str) -> int:
        """How many copies for ``address`` the host took."""
        return sum(
            1
            for h in self.handed
            for r in h.result.recipients
            if r.address == address and r.reply.is_success
        )

    def answer(self, message: OutboundMessage) -> Handed:
        """The host's answers to ``message``, as the real client would report them."""
        rcpt = [reply(self.rcpt.get(r.address, "250 2.1.5 OK")) for r in message.recipients]
        accepted = tuple(
            r.address for r, said in zip(message.recipients, rcpt, strict=True) if said.is_success
        )
        final = reply(self.data) if accepted else None
        results = []
        for r, said in zip(message.recipients, rcpt, strict=True):
            decided = final if final is not None and said.is_success else said
            results.append(RecipientResult(r.address, outcome_of(decided), decided, True))
        return Handed(message, accepted, MessageResult(tuple(results), final, self.dsn))


class MemoryTransport:
    """Hands mail to :class:`ScriptedHost` objects by address, recording each session."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock = clock
        self.hosts: dict[str, ScriptedHost] = {}
        self.sessions: list[HostSession] = []

    def host(
        self,
        address: str,
        *,
        greeting: str = "220 ready",
        rcpt: dict[str, str] | None = None,
        data: str = "250 2.0.0 Queued",
        dsn: bool = True,
    ) -> ScriptedHost:
        """Script the host at ``address`` (see :class:`ScriptedHost`)."""
        scripted = ScriptedHost(greeting, dict(rcpt or {}), data, dsn)
        self.hosts[address] = scripted
        return scripted

    async def deliver(
        self,
        host: str,
        address: str,
        port: int,
        messages: Sequence[OutboundMessage],
        policy: SessionPolicy,
        on_result: OnResult,
    ) -> HostResult:
        scripted = self.hosts.get(address)
        if scripted is None:
            said = f"connect to {host}[{address}]:{port}: Connection refused"
            refused = Reply(451, "4.4.1", said)
            return HostResult((), SessionFailed(refused, remote=False), connected=False)
        now = self.clock.time() if self.clock is not None else 0.0
        session = HostSession(host, address, port, policy, now)
        scripted.sessions.append(session)
        self.sessions.append(session)
        greeting = reply(scripted.greeting)
        if not greeting.is_success:
            failed = SessionFailed(greeting, remote=True, permanent=greeting.code >= 500)
            return HostResult((), failed, connected=True)
        results = []
        for index, message in enumerate(messages):
            handed = scripted.answer(message)
            session.handed.append(handed)
            results.append(handed.result)
            await on_result(index, handed.result)
        return HostResult(tuple(results), None, connected=True)
