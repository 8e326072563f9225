"""DMARC, RFC 7489: policy discovery, identifier alignment and the result, sans-IO.

:func:`author_domain` finds the RFC5322.From domain (§6.6.1),
:func:`discover` the policy record (§6.6.3: the From domain, then its
organisational domain from the public suffix list), :func:`evaluate` the
result from SPF and DKIM results and their alignment (§3.1). DNS comes in
through a ``txt`` function, so tests answer from a dict.
"""

from __future__ import annotations

import email.utils
import functools
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from publicsuffixlist import PublicSuffixList

from mailstead.limits import AuthCheckLimits
from mailstead.mailauth.spf import Answer

__all__ = [
    "DMARCRecord",
    "DMARCResult",
    "author_domain",
    "discover",
    "evaluate",
    "organizational_domain",
    "parse_record",
]

_POLICIES = ("none", "quarantine", "reject")
#: Longest From header value looked at; longer is a fail (hostile).
_MAX_FROM = 2000
_LIMITS = AuthCheckLimits()


@functools.cache
def _psl() -> PublicSuffixList:
    return PublicSuffixList()


@functools.lru_cache(maxsize=4096)
def organizational_domain(domain: str) -> str:
    """RFC 7489 §3.2: the public suffix plus one label (the domain itself if it is a suffix)."""
    domain = domain.lower().rstrip(".")
    found: str | None = _psl().privatesuffix(domain)
    return found or domain


@dataclass(frozen=True, slots=True)
class DMARCRecord:
    """A parsed DMARC policy record (RFC 7489 §6.3)."""

    policy: str  # p=
    subdomain_policy: str  # sp= (defaults to p)
    pct: int = 100
    adkim: str = "r"  # r = relaxed, s = strict
    aspf: str = "r"


def parse_record(text: str) -> DMARCRecord | None:
    """The record, or None if ``text`` is not a valid DMARC record (§6.6.3: ignore it)."""
    parts = [part.strip() for part in text.split(";")]
    if not parts or parts[0].replace(" ", "") != "v=DMARC1":
        return None
    tags: dict[str, str] = {}
    for part in parts[1:]:
        name, sep, value = part.partition("=")
        if sep:
            tags.setdefault(name.strip().lower(), value.strip())
    policy = tags.get("p", "").lower()
    if policy not in _POLICIES:
        # §6.6.3: an invalid or missing p= with a rua= is read as p=none; without, no record.
        if "rua" not in tags:
            return None
        policy = "none"
    sub = tags.get("sp", "").lower()
    pct_text = tags.get("pct", "100")
    pct = int(pct_text) if pct_text.isdigit() and len(pct_text) <= 3 else 100
    return DMARCRecord(
        policy=policy,
        subdomain_policy=sub if sub in _POLICIES else policy,
        pct=min(pct, 100),
        adkim="s" if tags.get("adkim", "r").lower() == "s" else "r",
        aspf="s" if tags.get("aspf", "r").lower() == "s" else "r",
    )


@functools.lru_cache(maxsize=_LIMITS.dmarc_records)
def _parsed_record(text: str) -> DMARCRecord | None:
    """:func:`parse_record`, kept per record text (a changed record is a new text)."""
    return parse_record(text)


def author_domain(from_values: Sequence[str]) -> str | None:
    """The domain of the one author (§6.6.1), or None: no From, several From
    fields, several addresses, or one without a domain all make DMARC fail."""
    if len(from_values) != 1 or len(from_values[0]) > _MAX_FROM:
        return None
    return _author_of(from_values[0])


@functools.lru_cache(maxsize=_LIMITS.from_values)
def _author_of(from_value: str) -> str | None:
    """The one author domain of one From value (kept per value: the same
    sender writes the same From field message after message)."""
    addresses = email.utils.getaddresses([from_value])
    real = [address for _, address in addresses if address]
    if len(real) != 1 or len(addresses) != 1:
        return None
    local, at, domain = real[0].rpartition("@")
    domain = domain.strip().rstrip(".").lower()
    if not at or not local or "." not in domain or not domain.isascii():
        return None
    return domain


@dataclass(frozen=True, slots=True)
class Discovered:
    """The outcome of policy discovery."""

    record: DMARCRecord | None
    #: The domain whose _dmarc record was used ("" when none was found).
    policy_domain: str = ""
    #: A lookup failed: the result is temperror.
    temporary: bool = False


def _record_at(domain: str, txt: Callable[[str], Answer]) -> tuple[DMARCRecord | None, bool]:
    answer = txt(f"_dmarc.{domain}")
    if answer.temporary:
        return None, True
    texts = [t for t in answer.records if t.replace(" ", "")[:8].lower() == "v=dmarc1"]
    if len(texts) != 1:
        return None, False  # §6.6.3: none, or several, means no policy here
    return _parsed_record(texts[0]), False


def discover(domain: str, txt: Callable[[str], Answer]) -> Discovered:
    """§6.6.3: the From domain's record, else its organisational domain's."""
    record, temporary = _record_at(domain, txt)
    if record is not None:
        return Discovered(record, domain)
    if temporary:
        return Discovered(None, temporary=True)
    org = organizational_domain(domain)
    if org == domain:
        return Discovered(None)
    record, temporary = _record_at(org, txt)
    return Discovered(record, org if record is not None else "", temporary)


@dataclass(frozen=True, slots=True)
class DMARCResult:
    """The DMARC result for one message (RFC 7489 §6.6.2, reported as RFC 8601 ``dmarc=``)."""

    #: pass, fail, none, temperror or permerror.
    result: str
    #: The RFC5322.From domain ("" when there was not exactly one).
    header_from: str
    #: The policy the record asks for (p=, or sp= for a subdomain); "" without one.
    policy: str = ""
    #: What to do after pct= sampling: none, quarantine or reject.
    disposition: str = "none"
    detail: str = ""


def aligned(identifier: str, author: str, mode: str) -> bool:
    """§3.1: strict = the same name; relaxed = the same organisational domain."""
    identifier, author = identifier.lower().rstrip("."), author.lower().rstrip(".")
    if not identifier or not author:
        return False
    if mode == "s":
        return identifier == author
    return organizational_domain(identifier) == organizational_domain(author)


def evaluate(
    from_values: Sequence[str],
    *,
    spf_result: str,
    spf_domain: str,
    dkim_passes: Sequence[str],
    txt: Callable[[str], Answer],
    sample: Callable[[], float] = random.random,
) -> DMARCResult:
    """The DMARC result of a message.

    ``spf_domain`` is the domain SPF checked (MAIL FROM, or HELO for the
    null sender); ``dkim_passes`` the d= of each passing DKIM signature.
    """
    if not from_values:
        # No From field at all (RFC 5322 §3.6 requires one): no author domain,
        # hence no policy to apply. RFC 7489 §6.6.1 says such mail SHOULD be
        # rejected; we record dmarc=none and deliver (docs/quirks.md).
        return DMARCResult("none", "", detail="no From field")
    author = author_domain(from_values)
    if author is None:
        # §6.6.1: without exactly one author domain there is nothing to
        # align with; such a message is not acceptable (RFC 5322 §3.6).
        return DMARCResult("fail", "", "reject", "reject", "not exactly one From address")
    found = discover(author, txt)
    if found.temporary:
        return DMARCResult("temperror", author, detail="policy lookup failed")
    record = found.record
    if record is None:
        return DMARCResult("none", author)
    policy = record.policy if found.policy_domain == author else record.subdomain_policy
    dkim_ok = any(aligned(d, author, record.adkim) for d in dkim_passes)
    spf_ok = spf_result == "pass" and aligned(spf_domain, author, record.aspf)
    if dkim_ok or spf_ok:
        return DMARCResult("pass", author, policy, "none")
    disposition = policy
    if record.pct < 100 and sample() * 100 >= record.pct:
        # §6.6.4: outside the sample, the next less severe policy applies.
        disposition = {"reject": "quarantine", "quarantine": "none"}.get(policy, "none")
    return DMARCResult("fail", author, policy, disposition, "no aligned SPF or DKIM pass")
