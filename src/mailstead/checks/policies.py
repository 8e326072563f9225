"""The TXT-record checks of ``check dns``: SPF, DKIM, DMARC, TLS-RPT, MTA-STS."""

from __future__ import annotations

import asyncio
import ipaddress
import re
from collections.abc import Sequence

from mailstead.checks.lookups import CheckResolver
from mailstead.checks.outcome import DNSCheck, SendingAddress, of_type
from mailstead.checks.spf import MAX_LOOKUPS, Outcome, evaluate, spf_records
from mailstead.checks.tags import TagError, parse_tags, select
from mailstead.config import Config
from mailstead.dns import DNSError, NoAnswer, NXDomain
from mailstead.mailauth.dnsrecords import Record

__all__ = ["check_dkim", "check_dmarc", "check_mta_sts", "check_spf", "check_tls_rpt"]

# RFC 8461 §3.1: sts-id = 1*32(ALPHA / DIGIT)
_STS_ID = re.compile(r"[A-Za-z0-9]{1,32}")


async def _txt(resolver: CheckResolver, name: str) -> list[bytes] | DNSError:
    """The TXT records of ``name``; none for a missing name; the error if the lookup failed."""
    try:
        return await resolver.txt(name)
    except (NXDomain, NoAnswer):
        return []
    except DNSError as exc:
        return exc


def _named(suggested: Sequence[Record], prefix: str) -> tuple[Record, ...]:
    return tuple(r for r in of_type(suggested, "TXT") if r.name.startswith(prefix))


async def _spf_addresses(
    config: Config, domain: str, sending: Sequence[SendingAddress], resolver: CheckResolver
) -> list[SendingAddress]:
    """The addresses ``domain``'s mail leaves from."""
    source = config.delivery.source_for(f"postmaster@{domain}")
    if source:
        return [s for s in sending if s.address == source]
    # No source address for this domain: the kernel chooses among the host's.
    own = [s for s in sending if not s.origin.startswith("delivery.")]
    if own:
        return own
    try:
        found = await resolver.addresses(config.hostname)
    except DNSError:
        return []
    return [SendingAddress(str(ipaddress.ip_address(a)), "hostname") for a in found]


async def check_spf(
    config: Config,
    domain: str,
    sending: Sequence[SendingAddress],
    suggested: Sequence[Record],
    resolver: CheckResolver,
) -> list[DNSCheck]:
    """One SPF record (RFC 7208 §3.2) authorising every address the domain's mail leaves from."""
    publish = tuple(r for r in _named(suggested, f"{domain}.") if r.value.startswith("v=spf1"))
    found = await _txt(resolver, domain)
    if isinstance(found, DNSError):
        return [DNSCheck("spf", "fail", domain, f"lookup failed: {found}")]
    spf = spf_records(found)
    if not spf:
        message = "no SPF record: receivers cannot tell who may send for the domain"
        return [DNSCheck("spf", "fail", domain, message, publish)]
    if len(spf) > 1:
        message = f"{len(spf)} SPF records: receivers treat that as an error (RFC 7208 §3.2)"
        return [DNSCheck("spf", "fail", domain, message, publish)]
    record = spf[0]
    if any(term.lower() in ("all", "+all") for term in record.split()[1:]):
        message = f'"{record}" ends in +all: it authorises every host on the Internet'
        return [DNSCheck("spf", "fail", domain, message, publish)]
    addresses = await _spf_addresses(config, domain, sending, resolver)
    if not addresses:
        message = f'"{record}": no sending address known to check it against'
        return [DNSCheck("spf", "warn", domain, message)]
    outcomes = await asyncio.gather(*(evaluate(resolver, domain, a.address) for a in addresses))
    return [_spf_verdict(domain, record, addresses, outcomes)]


def _spf_verdict(
    domain: str, record: str, addresses: Sequence[SendingAddress], outcomes: Sequence[Outcome]
) -> DNSCheck:
    for sending, outcome in zip(addresses, outcomes, strict=True):
        if outcome.result in ("permerror", "temperror"):
            message = f"{outcome.result} evaluating for {sending.address}: {outcome.detail}"
            return DNSCheck("spf", "fail", domain, message)
    missing = [s.address for s, o in zip(addresses, outcomes, strict=True) if o.result != "pass"]
    unknown = [o.detail for o in outcomes if o.result == "unknown"]
    if missing and len(unknown) == len(missing):
        message = f"cannot tell whether {', '.join(missing)} may send: stopped at {unknown[0]}"
        return DNSCheck("spf", "warn", domain, message)
    if missing:
        results = ", ".join(
            f"{s.address}: {o.result}"
            for s, o in zip(addresses, outcomes, strict=True)
            if o.result != "pass"
        )
        # RFC 7208 §5.6: the ip4/ip6 mechanisms name an address itself.
        terms = [f"ip{ipaddress.ip_address(a).version}:{a}" for a in missing]
        head, _, rest = record.partition(" ")
        fixed = " ".join([head, *terms, rest]).strip()
        publish = Record("TXT", f"{domain}.", fixed, "SPF: the sending addresses added")
        message = f"does not authorise the sending address ({results})"
        return DNSCheck("spf", "fail", domain, message, (publish,))
    lookups = max(o.lookups for o in outcomes)
    shown = ", ".join(s.address for s in addresses)
    message = f'"{record}" authorises {shown} ({lookups} of {MAX_LOOKUPS} DNS lookups)'
    return DNSCheck("spf", "pass", domain, message)


async def check_dkim(suggested: Sequence[Record], resolver: CheckResolver) -> list[DNSCheck]:
    """Each signing key's record published with the same key (RFC 6376 §3.6.1)."""
    keys = [r for r in of_type(suggested, "TXT") if "._domainkey." in r.name]
    return list(await asyncio.gather(*(_dkim(rec, resolver) for rec in keys)))


def _key_data(text: str) -> str:
    return "".join(text.split())  # RFC 6376 §3.6.1: p= may hold folding whitespace


async def _dkim(expected: Record, resolver: CheckResolver) -> DNSCheck:
    name = expected.name.rstrip(".")
    want = parse_tags(expected.value)
    found = await _txt(resolver, name)
    if isinstance(found, DNSError):
        return DNSCheck("dkim", "fail", name, f"lookup failed: {found}")
    if not found:
        message = f"no key published for selector {name.split('.', 1)[0]}"
        return DNSCheck("dkim", "fail", name, message, (expected,))
    revoked = False
    for raw in found:
        try:
            tags = parse_tags(raw.decode("utf-8", "replace"))
        except TagError:
            continue
        key = _key_data(tags.get("p", ""))
        revoked = revoked or (not key and "p" in tags)
        same_kind = tags.get("k", "rsa").lower() == want["k"]
        if same_kind and key == want["p"]:
            return DNSCheck("dkim", "pass", name, f"{want['k']} key matches the signing key")
    if revoked:
        message = "the published key is revoked (empty p=, RFC 6376 §3.6.1)"
    else:
        message = "the published key is not the one mail is signed with"
    return DNSCheck("dkim", "fail", name, message, (expected,))


async def check_dmarc(
    domain: str, suggested: Sequence[Record], resolver: CheckResolver
) -> list[DNSCheck]:
    """One parseable DMARC record at ``_dmarc.<domain>`` (RFC 7489 §6.1, §6.3)."""
    name = f"_dmarc.{domain}"
    publish = _named(suggested, f"{name}.")
    found = await _txt(resolver, name)
    if isinstance(found, DNSError):
        return [DNSCheck("dmarc", "fail", name, f"lookup failed: {found}")]
    dmarc = select(found, "DMARC1")
    if not dmarc:
        message = "no DMARC record: receivers apply no policy to mail forged as the domain"
        return [DNSCheck("dmarc", "fail", name, message, publish)]
    if len(dmarc) > 1:  # RFC 7489 §6.6.3
        message = f"{len(dmarc)} DMARC records: receivers apply none of them"
        return [DNSCheck("dmarc", "fail", name, message, publish)]
    try:
        tags = parse_tags(dmarc[0])
    except TagError as exc:
        return [DNSCheck("dmarc", "fail", name, f"not parseable: {exc}", publish)]
    policy = tags.get("p", "").lower()
    if policy not in ("none", "quarantine", "reject"):
        message = f"p= must be none, quarantine or reject (RFC 7489 §6.3), got {policy!r}"
        return [DNSCheck("dmarc", "fail", name, message, publish)]
    if policy == "none":
        message = "p=none: receivers only report; mail forged as the domain is delivered"
        return [DNSCheck("dmarc", "warn", name, message, publish)]
    reports = f", reports to {tags['rua']}" if tags.get("rua") else ""
    return [DNSCheck("dmarc", "pass", name, f"p={policy}{reports}")]


async def check_tls_rpt(
    domain: str, suggested: Sequence[Record], resolver: CheckResolver
) -> list[DNSCheck]:
    """``_smtp._tls.<domain>``: optional, but checked when published (RFC 8460 §3)."""
    name = f"_smtp._tls.{domain}"
    publish = _named(suggested, f"{name}.")
    found = await _txt(resolver, name)
    if isinstance(found, DNSError):
        return [DNSCheck("tls-rpt", "fail", name, f"lookup failed: {found}")]
    rpt = select(found, "TLSRPTv1")
    if not rpt:
        message = "not published (optional): senders cannot report TLS failures"
        return [DNSCheck("tls-rpt", "info", name, message, publish)]
    if len(rpt) > 1:
        message = f"{len(rpt)} TLS-RPT records: senders use none of them (RFC 8460 §3)"
        return [DNSCheck("tls-rpt", "fail", name, message, publish)]
    try:
        tags = parse_tags(rpt[0])
    except TagError as exc:
        return [DNSCheck("tls-rpt", "fail", name, f"not parseable: {exc}", publish)]
    if not tags.get("rua"):
        message = "no rua=: senders have nowhere to report (RFC 8460 §3)"
        return [DNSCheck("tls-rpt", "fail", name, message, publish)]
    return [DNSCheck("tls-rpt", "pass", name, f"reports to {tags['rua']}")]


async def check_mta_sts(domain: str, resolver: CheckResolver) -> list[DNSCheck]:
    """``_mta-sts.<domain>`` and its policy host (RFC 8461 §3.1, §3.2), when published.

    The policy itself (HTTPS) is not fetched: Mailstead does not serve it.
    """
    name = f"_mta-sts.{domain}"
    found = await _txt(resolver, name)
    if isinstance(found, DNSError):
        return [DNSCheck("mta-sts", "fail", name, f"lookup failed: {found}")]
    sts = select(found, "STSv1")
    if not sts:
        message = (
            f"not published (optional): needs a policy served at https://mta-sts.{domain}/"
            ".well-known/mta-sts.txt"
        )
        return [DNSCheck("mta-sts", "info", name, message)]
    if len(sts) > 1:  # RFC 8461 §3.1
        message = f"{len(sts)} MTA-STS records: senders act as if there were none"
        return [DNSCheck("mta-sts", "fail", name, message)]
    try:
        tags = parse_tags(sts[0])
    except TagError as exc:
        return [DNSCheck("mta-sts", "fail", name, f"not parseable: {exc}")]
    if not _STS_ID.fullmatch(tags.get("id", "")):
        message = "id= must be 1 to 32 letters and digits (RFC 8461 §3.1)"
        return [DNSCheck("mta-sts", "fail", name, message)]
    host = f"mta-sts.{domain}"
    try:
        await resolver.addresses(host)
    except DNSError as exc:
        message = f"id={tags['id']}, but senders cannot fetch the policy: {exc}"
        return [DNSCheck("mta-sts", "fail", name, message)]
    message = f"id={tags['id']}; policy host {host} resolves (the policy itself is not fetched)"
    return [DNSCheck("mta-sts", "pass", name, message)]
