"""The abuse checks of each listener role, built from ``[abuse]`` (docs/abuse.md).

On ``smtp`` (mail from other servers): the DNS block lists, the rates per
client address and network, then greylisting — in that order, so a listed
client costs no token and leaves no triplet, and a flood is cut before it
fills the greylist. On ``submission``/``submissions``: the rates per user
and sender domain.
"""

from __future__ import annotations

from collections.abc import Sequence

from mailstead.config import Config
from mailstead.events import EventSink
from mailstead.mailauth.abuse_db import AbuseDB, PostgresAbuseDB, SQLiteAbuseDB
from mailstead.mailauth.dnsbl import DNSBL
from mailstead.mailauth.greylist import Greylist
from mailstead.mailauth.hook import BodyOutcome, Check, Checks, Client
from mailstead.mailauth.lookups import AuthDNS
from mailstead.mailauth.ratelimit import ClientRates, SenderRates, TokenBuckets
from mailstead.mailauth.refusals import Refusals

__all__ = ["RefusingChecks", "abuse_db", "smtp_abuse_checks", "submission_abuse_checks"]


def abuse_db(config: Config) -> AbuseDB:
    """The shared state of the rate limits and greylisting (opened on first use): a SQLite
    file under ``data_dir``, or the cluster's database every node counts in."""
    if config.storage.backend == "postgresql":
        return PostgresAbuseDB(config.storage.dsn)
    return SQLiteAbuseDB(config.db_path("abuse"))


def smtp_abuse_checks(
    config: Config, dns: AuthDNS | None, events: EventSink | None = None
) -> list[Check]:
    """DNSBL, client rates and greylisting for the ``smtp`` listener, as configured.

    ``dns`` is needed when ``abuse.dnsbl`` names a list.
    """
    settings = config.abuse
    refusals = Refusals(events, "smtp")
    checks: list[Check] = []
    if settings.dnsbl:
        if dns is None:
            raise ValueError("abuse.dnsbl needs a DNS client")
        budget = float(config.auth_checks.dns_timeout)
        checks.append(
            DNSBL(settings.dnsbl, dns, refusals, budget=budget, exempt=settings.is_exempt)
        )
    db: AbuseDB | None = None
    if settings.ip_messages is not None or settings.ip_recipients is not None:
        db = abuse_db(config)
        checks.append(ClientRates(settings, TokenBuckets(db), refusals))
    if settings.greylist:
        checks.append(Greylist(settings, db or abuse_db(config), refusals))
    return checks


class RefusingChecks(Checks):
    """Checks that may refuse but verify nothing, so they write no Authentication-Results.

    For submission (the message is our user's; the login authenticates it)
    and for ``smtp`` with ``[auth_checks]`` turned off.
    """

    def body(
        self, client: Client, sender: str, recipients: Sequence[str], content: bytes
    ) -> BodyOutcome:
        for check in self.checks:
            verdict = check.body(client, sender, recipients, content)
            if verdict is not None and verdict.refusal is not None:
                return BodyOutcome(content, verdict.refusal, verdict.cause)
        return BodyOutcome(content)


def submission_abuse_checks(
    config: Config, listener: str, events: EventSink | None = None
) -> Checks | None:
    """The per-user and per-domain rates of a submission listener; None when all are off."""
    settings = config.abuse
    if not settings.submission_limited:
        return None
    rates = SenderRates(settings, TokenBuckets(abuse_db(config)), Refusals(events, listener))
    return RefusingChecks(config.hostname, [rates])
