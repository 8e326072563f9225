"""``[auth_checks]``: SPF, DKIM, DMARC and ARC verification of mail from other servers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from mailstead.config.reader import Reader, domain_name, duration, show

__all__ = ["DMARC_ACTIONS", "AuthChecksConfig", "load_auth_checks"]

#: What ``dmarc_reject`` may say to do with mail whose DMARC policy says reject.
DMARC_ACTIONS = ("reject", "junk", "accept")


@dataclass(frozen=True, slots=True)
class AuthChecksConfig:
    """Verification on the ``smtp`` listener (submission is authenticated and skipped)."""

    #: Verify SPF, DKIM and DMARC and write Authentication-Results.
    enabled: bool = True
    #: Mail failing DMARC with p=reject: "reject" (550 5.7.1 at the end of
    #: DATA), "junk" (into the recipient's Junk folder) or "accept" (deliver,
    #: record only; p=quarantine then goes to the INBOX as well).
    dmarc_reject: str = "reject"
    #: Seconds all DNS lookups for one message may take together; after
    #: that, what is left unanswered is a temperror.
    dns_timeout: int = 10
    #: Answers kept in memory (for their TTL, at most five minutes).
    cache_size: int = 4096
    #: Domains whose ARC seal we trust (RFC 8617 §7.2, RFC 7489 §10.2
    #: "local policy"): mail failing DMARC is delivered when the ARC chain
    #: passes and a trusted sealer recorded ``dmarc=pass`` for its From
    #: domain. Empty: ARC is verified and reported, never overrides DMARC.
    arc_trusted_sealers: tuple[str, ...] = ()


def load_auth_checks(r: Reader, data: Mapping[str, object]) -> AuthChecksConfig:
    """The ``[auth_checks]`` table of ``data``."""
    keys = ("enabled", "dmarc_reject", "dns_timeout", "cache_size", "arc_trusted_sealers")
    t = r.table(data, "auth_checks", "", keys)
    default = AuthChecksConfig()
    enabled = r.typed(
        t.get("enabled", default.enabled), "auth_checks.enabled", bool, "true or false"
    )
    action = r.string(t.get("dmarc_reject", default.dmarc_reject), "auth_checks.dmarc_reject")
    if action not in DMARC_ACTIONS:
        r.fail(
            "auth_checks.dmarc_reject", f'expected "reject", "junk" or "accept", got {show(action)}'
        )
    timeout = duration(r, t, "auth_checks.dns_timeout", default.dns_timeout)
    if timeout < 1:
        r.fail("auth_checks.dns_timeout", "must be at least 1s")
    cache = r.typed(
        t.get("cache_size", default.cache_size), "auth_checks.cache_size", int, "an integer"
    )
    if not 0 <= cache <= 1_000_000:
        r.fail("auth_checks.cache_size", f"expected 0 to 1000000, got {cache}")
    names = r.string_list(t.get("arc_trusted_sealers", []), "auth_checks.arc_trusted_sealers")
    sealers = tuple(
        dict.fromkeys(
            domain_name(r, name, f"auth_checks.arc_trusted_sealers[{i}]")
            for i, name in enumerate(names)
        )
    )
    return AuthChecksConfig(enabled, action, timeout, cache, sealers)
