"""Whether a domain's SPF record authorises an address: RFC 7208 ``check_host()``, in part.

Evaluated: ``all``, ``ip4``, ``ip6``, ``a``, ``mx`` (with their CIDR
lengths), ``include`` and the ``redirect`` modifier, the qualifiers, and the
limits of RFC 7208 §4.6.4: ten DNS-querying terms, ten MX names per ``mx``,
two void lookups. Not evaluated: ``ptr`` (RFC 7208 §5.5 says not to use it),
``exists``, and macros (``%{…}``, §7): the evaluation stops there with
:attr:`Outcome.unevaluated` saying which term, because what they match
depends on the message, not only on the address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TypeVar

from mailstead.dns import DNSError, NoAnswer, NXDomain, Resolver, TemporaryDNSError

__all__ = ["MAX_LOOKUPS", "Outcome", "evaluate", "spf_records"]

#: RFC 7208 §4.6.4: terms that query the DNS, per check_host() evaluation.
MAX_LOOKUPS = 10
_MAX_VOID = 2  # RFC 7208 §4.6.4: lookups answering NXDOMAIN or no records
_MAX_MX = 10  # RFC 7208 §4.6.4: MX names looked up for one "mx"
_QUALIFIERS = {"+": "pass", "-": "fail", "~": "softfail", "?": "neutral"}

_T = TypeVar("_T")
_Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class _PermError(Exception):
    """RFC 7208 §2.6.7: the record cannot be interpreted."""


class _TempError(Exception):
    """RFC 7208 §2.6.6: a DNS lookup failed for now."""


class _Unevaluated(Exception):
    """A term this evaluator does not evaluate was reached before any match."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of evaluating SPF for one address."""

    #: ``pass``, ``fail``, ``softfail``, ``neutral``, ``none``, ``permerror``,
    #: ``temperror`` (RFC 7208 §2.6), or ``unknown`` when a term was not evaluated.
    result: str
    #: DNS-querying terms used (RFC 7208 §4.6.4 allows ten).
    lookups: int
    #: Why: the error, or the term that was not evaluated; empty otherwise.
    detail: str = ""


def spf_records(records: list[bytes]) -> list[str]:
    """The SPF records among a name's TXT records (RFC 7208 §4.5: ``v=spf1`` then space or end)."""
    out = []
    for raw in records:
        text = raw.decode("utf-8", "replace")
        if text.lower() == "v=spf1" or text.lower().startswith("v=spf1 "):
            out.append(text)
    return out


async def evaluate(resolver: Resolver, domain: str, address: str) -> Outcome:
    """What ``check_host(address, domain)`` gives, as far as this module evaluates it."""
    run = _Evaluation(resolver, ipaddress.ip_address(address))
    try:
        result = await run.check_host(domain)
    except _PermError as exc:
        return Outcome("permerror", run.lookups, str(exc))
    except _TempError as exc:
        return Outcome("temperror", run.lookups, str(exc))
    except _Unevaluated as exc:
        return Outcome("unknown", run.lookups, str(exc))
    return Outcome(result, run.lookups)


class _Evaluation:
    """One check_host() run: the address, and the lookup counts its limits bound."""

    def __init__(self, resolver: Resolver, address: _Address) -> None:
        self.resolver = resolver
        self.address = address
        self.lookups = 0
        self.void = 0

    def _count(self) -> None:
        self.lookups += 1
        if self.lookups > MAX_LOOKUPS:
            raise _PermError(f"more than {MAX_LOOKUPS} DNS lookups (RFC 7208 §4.6.4)")

    async def _ask(self, lookup: str, name: str, default: _T, query: Awaitable[_T]) -> _T:
        """Await ``query``; a missing name or record counts as void and gives ``default``."""
        try:
            return await query
        except (NXDomain, NoAnswer):
            self.void += 1
            if self.void > _MAX_VOID:
                raise _PermError(
                    f"more than {_MAX_VOID} lookups found nothing (RFC 7208 §4.6.4)"
                ) from None
            return default
        except TemporaryDNSError as exc:
            raise _TempError(f"{lookup} {name}: {exc}") from None

    async def check_host(self, domain: str) -> str:
        try:
            records = spf_records(await self.resolver.txt(domain))
        except (NXDomain, NoAnswer):
            return "none"
        except DNSError as exc:
            raise _TempError(str(exc)) from None
        if not records:
            return "none"
        if len(records) > 1:  # RFC 7208 §4.5
            raise _PermError(f"{domain} has {len(records)} SPF records")
        redirect = None
        for term in records[0].split()[1:]:
            if "%" in term:
                raise _Unevaluated(f"{term} (macros are not evaluated)")
            name, eq, value = term.partition("=")
            if eq and ":" not in name and "/" not in name:  # a modifier, RFC 7208 §6
                if name.lower() == "redirect":
                    redirect = value
                continue
            qualifier = _QUALIFIERS.get(term[0])
            body = term[1:] if qualifier else term
            if await self._matches(body, domain):
                return qualifier or "pass"
        if redirect is not None:
            self._count()
            result = await self.check_host(redirect)
            if result == "none":  # RFC 7208 §6.1
                raise _PermError(f"redirect={redirect} has no SPF record")
            return result
        return "neutral"  # RFC 7208 §4.7

    async def _matches(self, body: str, domain: str) -> bool:
        name, _, rest = body.partition(":")
        mechanism = name.split("/", 1)[0].lower()
        if mechanism == "all":
            return True
        if mechanism in ("ip4", "ip6"):
            try:
                network = ipaddress.ip_network(rest, strict=False)
            except ValueError:
                raise _PermError(f"{body}: not an address") from None
            return self.address.version == network.version and self.address in network
        if mechanism == "include":
            self._count()
            result = await self.check_host(rest)
            if result in ("none", "permerror"):  # RFC 7208 §5.2
                raise _PermError(f"include:{rest} has no usable SPF record")
            return result == "pass"
        if mechanism in ("a", "mx"):
            self._count()
            target, v4, v6 = _cidr(body[len(mechanism) :], domain)
            length = v4 if self.address.version == 4 else v6
            hosts = [target]
            if mechanism == "mx":
                mx = await self._ask("MX", target, [], self.resolver.mx(target))
                if len(mx) > _MAX_MX:
                    raise _PermError(f"mx: {target} has more than {_MAX_MX} MX records")
                hosts = [record.exchange for record in mx if not record.is_null]
            for host in hosts:
                found = await self._ask("A/AAAA", host, [], self.resolver.addresses(host))
                for text in found:
                    if ipaddress.ip_address(text).version != self.address.version:
                        continue
                    if self.address in ipaddress.ip_network(f"{text}/{length}", strict=False):
                        return True
            return False
        if mechanism in ("ptr", "exists"):
            raise _Unevaluated(f"{body} (not evaluated)")
        raise _PermError(f"unknown mechanism {body!r} (RFC 7208 §5)")


def _cidr(text: str, domain: str) -> tuple[str, int, int]:
    """``:domain/24//64`` after ``a`` or ``mx``: (target, IPv4 length, IPv6 length)."""
    target = domain
    if text.startswith(":"):
        target, _, text = text[1:].partition("/")
        text = "/" + text if text else ""
    v4, v6 = 32, 128
    try:
        if text.startswith("//"):
            v6 = int(text[2:])
        elif text.startswith("/"):
            first, _, second = text[1:].partition("//")
            v4 = int(first)
            if second:
                v6 = int(second)
        elif text:
            raise ValueError(text)
    except ValueError:
        raise _PermError(f"bad CIDR length in {text!r}") from None
    if not (0 <= v4 <= 32 and 0 <= v6 <= 128) or not target:
        raise _PermError(f"bad CIDR length in {text!r}")
    return target, v4, v6
