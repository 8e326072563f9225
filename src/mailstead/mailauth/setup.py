"""The check hook the ``smtp`` listener runs, built from the configuration."""

from __future__ import annotations

from mailstead.config import Config
from mailstead.events import EventSink
from mailstead.mailauth.abuse import RefusingChecks, smtp_abuse_checks, submission_abuse_checks
from mailstead.mailauth.arc_seal import ARCSealer
from mailstead.mailauth.dkim import DKIMKeys
from mailstead.mailauth.dmarc import organizational_domain
from mailstead.mailauth.hook import Check, Checks
from mailstead.mailauth.lookups import AuthDNS
from mailstead.mailauth.verify import AuthChecks

__all__ = ["prepare", "receiver_checks", "submission_checks"]


def prepare(config: Config) -> None:
    """Load what the checks read from disk, before ``serve`` leaves root and forks.

    The public suffix list and the codecs it uses (IDNA, punycode) are then
    shared by every worker, and nothing has to be read later from a Python
    installation the ``[run]`` account may not be able to read.
    """
    if config.auth_checks.enabled:
        organizational_domain("xn--bcher-kva.example")


def receiver_checks(config: Config, events: EventSink | None = None) -> Checks | None:
    """The checks for mail from other servers; None when ``[auth_checks]`` and
    ``[abuse]`` turn them all off. ``events`` gets the abuse checks' refusals.

    Submission listeners get :func:`submission_checks` instead.
    """
    settings = config.auth_checks
    dns = None
    if settings.enabled or config.abuse.dnsbl:
        dns = AuthDNS(config.delivery.dns_servers, cache_size=settings.cache_size)
    # The abuse checks first: a client refused there costs no SPF or DKIM lookup.
    checks: list[Check] = list(smtp_abuse_checks(config, dns, events))
    if not settings.enabled or dns is None:
        return RefusingChecks(config.hostname, checks) if checks else None
    checks.append(AuthChecks(settings, dns, hostname=config.hostname))
    # Copies forwarded to remote alias targets carry what these checks found,
    # ARC-sealed (RFC 8617) with the alias domain's DKIM key.
    sealer = ARCSealer(DKIMKeys(config.data_dir), config.hostname)
    return Checks(config.hostname, checks, sealer=sealer)


def submission_checks(
    config: Config, listener: str, events: EventSink | None = None
) -> Checks | None:
    """The checks for our own users' mail on ``listener``: the per-user and
    per-domain rates of ``[abuse]`` (no verification, no Authentication-Results)."""
    return submission_abuse_checks(config, listener, events)
