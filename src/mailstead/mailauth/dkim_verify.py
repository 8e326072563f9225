"""DKIM verification (RFC 6376) of every signature of a message, with dkimpy.

dkimpy does the cryptography and canonicalisation; its key lookups come
here (``dnsfunc``) and go through :class:`~mailstead.mailauth.lookups.AuthDNS`
under the message's :class:`~mailstead.mailauth.lookups.Budget`. Blocking:
called from the receiver's worker thread.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import dkim

from mailstead.mailauth.lookups import AuthDNS, Budget

__all__ = ["MAX_SIGNATURES", "DKIMResult", "KeyLookup", "verify_all"]

#: Signatures verified per message; more get ``permerror`` unverified (a
#: message with hundreds of signatures is an attack on our CPU).
MAX_SIGNATURES = 8
_TAG = re.compile(rb"\s*([a-zA-Z][a-zA-Z0-9_]*)\s*=\s*([^;]*);?")
_REPORTED = frozenset({b"d", b"s", b"b"})


@dataclass(frozen=True, slots=True)
class DKIMResult:
    """One signature's result (RFC 8601 §2.7.1): pass, fail, neutral, temperror or permerror."""

    result: str
    #: The signing domain (d=) and selector (s=), as the signature says.
    domain: str
    selector: str
    #: The first 8 characters of b= (RFC 6008 header.b), to tell signatures apart.
    b_prefix: str
    #: Why, for the comment and the log.
    detail: str = ""


def _tags(value: bytes) -> dict[str, str]:
    """The d=, s= and b= tags of a signature field (the first of each), for the results."""
    found: dict[bytes, str] = {}
    for match in _TAG.finditer(value):
        name = match.group(1).lower()
        if name not in _REPORTED or name in found:
            continue
        text = match.group(2).decode("ascii", "replace")
        # str.split() splits at exactly the characters \s matches.
        found[name] = "".join(text.split()) if name == b"b" else text.strip()
    return {name.decode("ascii"): text for name, text in found.items()}


class KeyLookup:
    """dkimpy's ``dnsfunc``: key records (TXT) through :class:`AuthDNS` under one budget.

    A failed lookup raises dkimpy's ``DnsTimeoutError``; ``failed`` remembers
    that one did (ARC has no temperror result to report it by).
    """

    def __init__(self, dns: AuthDNS, budget: Budget) -> None:
        self.dns = dns
        self.budget = budget
        self.failed = False

    def __call__(self, name: bytes | str, timeout: float = 5) -> bytes | None:
        text = name.decode("ascii", "replace") if isinstance(name, bytes) else name
        answer = self.dns.txt(text, self.budget)
        if answer.temporary:
            self.failed = True
            raise dkim.DnsTimeoutError(f"{text}: key lookup failed")
        if not answer.records:
            return None
        return answer.records[0].encode("utf-8", "replace")


def verify_all(message: bytes, dns: AuthDNS, budget: Budget) -> list[DKIMResult]:
    """Every DKIM-Signature of ``message`` (CRLF), top first; empty when unsigned."""
    verifier = dkim.DKIM(message, minkey=1024)
    signatures = [value for name, value in verifier.headers if name.lower() == b"dkim-signature"]
    dnsfunc = KeyLookup(dns, budget)
    results = []
    for index, value in enumerate(signatures):
        tags = _tags(value)
        domain, selector = tags.get("d", "").lower(), tags.get("s", "")
        prefix = tags.get("b", "")[:8]
        if index >= MAX_SIGNATURES:
            results.append(DKIMResult("permerror", domain, selector, prefix, "too many signatures"))
            continue
        results.append(_verify_one(verifier, index, dnsfunc, domain, selector, prefix))
    return results


def _verify_one(
    verifier: dkim.DKIM,
    index: int,
    dnsfunc: object,
    domain: str,
    selector: str,
    prefix: str,
) -> DKIMResult:
    try:
        ok = verifier.verify(idx=index, dnsfunc=dnsfunc)
    except dkim.DnsTimeoutError as exc:
        return DKIMResult("temperror", domain, selector, prefix, _line(exc))
    except dkim.ValidationError as exc:
        if "body hash" in str(exc):
            # The body changed after signing: the signature fails (RFC 6376 §6.1.3).
            return DKIMResult("fail", domain, selector, prefix, "body hash did not verify")
        return DKIMResult("permerror", domain, selector, prefix, _line(exc))
    except dkim.DKIMException as exc:
        # RFC 6376 §6.1: a malformed signature or key is a PERMFAIL; RFC 8601
        # §2.7.1 reports it as permerror (the key could not be used at all)
        # or neutral; we say permerror.
        return DKIMResult("permerror", domain, selector, prefix, _line(exc))
    except Exception as exc:
        return DKIMResult("permerror", domain, selector, prefix, _line(exc))
    if ok:
        return DKIMResult("pass", domain, selector, prefix)
    return DKIMResult("fail", domain, selector, prefix, "signature did not verify")


def _line(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]
