"""The check hook the ``smtp`` listener runs, built from the configuration."""

from __future__ import annotations

from mailstead.config import Config
from mailstead.mailauth.dmarc import organizational_domain
from mailstead.mailauth.hook import Check, Checks
from mailstead.mailauth.lookups import AuthDNS
from mailstead.mailauth.verify import AuthChecks

__all__ = ["prepare", "receiver_checks"]


def prepare(config: Config) -> None:
    """Load what the checks read from disk, before ``serve`` leaves root and forks.

    The public suffix list and the codecs it uses (IDNA, punycode) are then
    shared by every worker, and nothing has to be read later from a Python
    installation the ``[run]`` account may not be able to read.
    """
    if config.auth_checks.enabled:
        organizational_domain("xn--bcher-kva.example")


def receiver_checks(config: Config) -> Checks | None:
    """The checks for mail from other servers; None when ``[auth_checks]`` turns them off.

    Submission listeners get none: their clients are our own authenticated users.
    """
    checks: list[Check] = []
    settings = config.auth_checks
    if settings.enabled:
        dns = AuthDNS(config.delivery.dns_servers, cache_size=settings.cache_size)
        checks.append(AuthChecks(settings, dns, hostname=config.hostname))
    return Checks(config.hostname, checks) if checks else None
