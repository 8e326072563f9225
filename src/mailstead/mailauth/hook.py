"""The check hook: one interface for every check on incoming mail, one method per SMTP stage.

After maddy's check modules: a :class:`Check` is asked at the connection,
at MAIL FROM (sender), at each RCPT TO (recipient) and once the message is
in (body, before the reply to DATA/BDAT). Each answer is a :class:`Verdict`
or None: a refusal reply for the client, the check's Authentication-Results
parts (RFC 8601), whether the message goes to Junk, and what it found for
the event and the log. :class:`Checks` runs a list of them and turns the
body stage's results into one Authentication-Results field of ours.

SPF, DKIM and DMARC (:mod:`mailstead.mailauth.verify`) are one check;
DNSBL, greylisting and rate limits are meant to be others. The first three
stages run on the event loop and must not block; the body stage runs in
the receiver's worker thread and may.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from mailstead.mailauth import authresults
from mailstead.proto.smtp.replies import Reply

__all__ = ["BodyOutcome", "Check", "Checks", "Client", "Sealer", "Verdict"]


@dataclass(frozen=True, slots=True)
class Client:
    """What the checks know of the SMTP client."""

    ip: str
    helo: str
    user: str | None = None
    tls: bool = False


@dataclass(frozen=True, slots=True)
class Verdict:
    """One check's answer at one stage."""

    #: The reply that refuses the command (or the message); None lets it through.
    refusal: Reply | None = None
    #: Authentication-Results resinfo parts, e.g. ``spf=pass smtp.mailfrom=a@b.example``.
    results: tuple[str, ...] = ()
    #: Deliver into the recipient's Junk folder instead of the INBOX.
    junk: bool = False
    #: What was found, for the ``message.received`` event (JSON-ready values).
    event: Mapping[str, object] = field(default_factory=dict)
    #: What was found, for the "received" log line (logfmt keys and values).
    log: Mapping[str, str] = field(default_factory=dict)
    #: Why a refusal, for the operator's log (never sent to the client).
    cause: str | None = None


class Check(Protocol):
    """A check on incoming mail; every method may return None ("nothing to say")."""

    def connection(self, client: Client) -> Verdict | None:
        """Before the first transaction of a connection (event loop: must not block)."""
        ...

    def sender(self, client: Client, sender: str) -> Verdict | None:
        """MAIL FROM (event loop: must not block); ``sender`` is "" for the null sender."""
        ...

    def recipient(self, client: Client, sender: str, recipient: str) -> Verdict | None:
        """Each RCPT TO (event loop: must not block)."""
        ...

    def body(
        self, client: Client, sender: str, recipients: Sequence[str], content: bytes
    ) -> Verdict | None:
        """The whole message (CRLF), in a worker thread, before the reply to DATA/BDAT."""
        ...


@dataclass(frozen=True, slots=True)
class BodyOutcome:
    """What the body stage decided, for the receiver."""

    #: The message to store: our Authentication-Results first, forged ones gone.
    content: bytes
    refusal: Reply | None = None
    cause: str | None = None
    junk: bool = False
    event: Mapping[str, object] = field(default_factory=dict)
    log: Mapping[str, str] = field(default_factory=dict)


class Sealer(Protocol):
    """Adds an ARC set to mail we forward (:class:`~mailstead.mailauth.arc_seal.ARCSealer`)."""

    def seal(self, message: bytes, domain: str) -> bytes:
        """The fields to prepend to ``message`` (our Authentication-Results on top), or b""."""
        ...


class Checks:
    """Runs :class:`Check` objects in order; the first refusal wins.

    ``authserv_id`` names us in Authentication-Results (the hostname).
    ``sealer``, when given, ARC-seals the copies the receiver forwards
    (:meth:`seal_forwarded`): the next hop learns what these checks found.
    """

    def __init__(
        self, authserv_id: str, checks: Sequence[Check], *, sealer: Sealer | None = None
    ) -> None:
        self.authserv_id = authserv_id
        self.checks = tuple(checks)
        self.sealer = sealer

    def seal_forwarded(self, content: bytes, domain: str) -> bytes:
        """ARC fields for ``content`` (as :meth:`body` left it) forwarded by ``domain``.

        Blocking (RSA signing): called from the worker thread. Empty without a sealer.
        """
        return self.sealer.seal(content, domain) if self.sealer is not None else b""

    def connection(self, client: Client) -> Verdict | None:
        return _first_refusal(check.connection(client) for check in self.checks)

    def sender(self, client: Client, sender: str) -> Verdict | None:
        return _first_refusal(check.sender(client, sender) for check in self.checks)

    def recipient(self, client: Client, sender: str, recipient: str) -> Verdict | None:
        return _first_refusal(check.recipient(client, sender, recipient) for check in self.checks)

    def body(
        self, client: Client, sender: str, recipients: Sequence[str], content: bytes
    ) -> BodyOutcome:
        """Ask every check; strip forged results; prepend ours (RFC 8601 §5)."""
        results: list[str] = []
        event: dict[str, object] = {}
        log: dict[str, str] = {}
        junk = False
        for check in self.checks:
            verdict = check.body(client, sender, recipients, content)
            if verdict is None:
                continue
            results.extend(verdict.results)
            event.update(verdict.event)
            log.update(verdict.log)
            junk = junk or verdict.junk
            if verdict.refusal is not None:
                return BodyOutcome(content, verdict.refusal, verdict.cause, event=event, log=log)
        stripped, _ = authresults.remove_ours(content, self.authserv_id)
        ours = authresults.header(self.authserv_id, results)
        return BodyOutcome(ours + stripped, junk=junk, event=event, log=log)


def _first_refusal(verdicts: Iterable[Verdict | None]) -> Verdict | None:
    for verdict in verdicts:
        if verdict is not None and verdict.refusal is not None:
            return verdict
    return None
