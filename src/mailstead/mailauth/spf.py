"""SPF, RFC 7208: ``check_host()`` as a sans-IO evaluation.

The evaluation is a generator: it yields a :class:`Query` whenever it needs
the DNS and is sent back an :class:`Answer`; it returns an
:class:`SPFResult`. Drivers feed it from anywhere — a dict in the tests,
:func:`run` with a blocking lookup function in the mail receiver's worker
thread, :func:`run_async` with an async one::

    evaluation = check_host("192.0.2.1", "example.com", "alice@example.com", "mx.example.com")
    result = run(evaluation, lookup)   # lookup(Query) -> Answer

Everything in RFC 7208 §4–§7 is evaluated: all mechanisms (``all``,
``include``, ``a``, ``mx``, ``ptr``, ``ip4``, ``ip6``, ``exists``), the
``redirect`` and ``exp`` modifiers, macros, and the processing limits of
§4.6.4 — ten DNS-querying terms, ten MX names per ``mx``, ten PTR names per
``ptr``, two void lookups.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass, field

from mailstead.limits import AuthCheckLimits
from mailstead.mailauth.spf_macro import (
    MAX_EXPLANATION,
    MacroContext,
    MacroError,
    MacroString,
    check_domain_end,
    expand,
    expand_domain,
    parse_macro_string,
)

__all__ = [
    "MAX_LOOKUPS",
    "MAX_RECORD",
    "Answer",
    "Evaluation",
    "Query",
    "Record",
    "SPFResult",
    "check_host",
    "parse_record",
    "run",
    "run_async",
    "spf_records",
]

#: RFC 7208 §4.6.4: terms that query the DNS, per check_host() evaluation.
MAX_LOOKUPS = 10
_MAX_VOID = 2  # §4.6.4: lookups answering NXDOMAIN or no records
_MAX_NAMES = 10  # §4.6.4: MX names per "mx", PTR names per "ptr"
#: Longest SPF record evaluated (several TXT strings joined); longer is a permerror.
MAX_RECORD = 4096
_QUALIFIERS = {"+": "pass", "-": "fail", "~": "softfail", "?": "neutral"}
_MECHANISMS = frozenset({"all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists"})
_MODIFIER_NAME = re.compile(r"[a-z][a-z0-9\-_.]*", re.IGNORECASE)
_CIDR = re.compile(r"(?:/(0|[1-9][0-9]{0,2}))?(?://(0|[1-9][0-9]{0,2}))?$")
_Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class Query:
    """A DNS question the evaluation needs answered: ``rdtype`` is TXT, A, AAAA, MX or PTR."""

    name: str
    rdtype: str


@dataclass(frozen=True, slots=True)
class Answer:
    """A DNS answer: the records as text (TXT strings joined; MX and PTR the target
    names; A/AAAA the addresses), or ``nxdomain``, or ``temporary`` (timeout, SERVFAIL)."""

    records: tuple[str, ...] = ()
    nxdomain: bool = False
    temporary: bool = False

    @property
    def void(self) -> bool:
        """RFC 7208 §4.6.4: NXDOMAIN or no records."""
        return not self.temporary and not self.records


@dataclass(frozen=True, slots=True)
class SPFResult:
    """The outcome of check_host() (RFC 7208 §2.6)."""

    #: none, neutral, pass, fail, softfail, temperror or permerror.
    result: str
    #: The domain whose record gave the result (the first one asked).
    domain: str
    #: DNS-querying terms used.
    lookups: int = 0
    #: The explanation of a fail (the "exp" text), else empty.
    explanation: str = ""
    #: Why, for the log and the Authentication-Results comment.
    detail: str = ""


class _PermError(Exception):
    """RFC 7208 §2.6.7: the record cannot be interpreted."""


class _TempError(Exception):
    """RFC 7208 §2.6.6: a DNS lookup failed for now."""


@dataclass(frozen=True, slots=True)
class _Mechanism:
    qualifier: str
    name: str
    target: MacroString | None = None  # domain-spec (a, mx, ptr, include, exists)
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None  # ip4, ip6
    cidr4: int = 32
    cidr6: int = 128


@dataclass(frozen=True, slots=True)
class Record:
    """A parsed SPF record (RFC 7208 §4.6, §12): mechanisms in order, then the modifiers."""

    mechanisms: tuple[_Mechanism, ...]
    redirect: MacroString | None = None
    exp: MacroString | None = None


def spf_records(texts: tuple[str, ...] | list[str]) -> list[str]:
    """The SPF records among TXT texts (RFC 7208 §4.5: ``v=spf1`` then a space or the end)."""
    return [t for t in texts if t.lower() == "v=spf1" or t[:7].lower() == "v=spf1 "]


def parse_record(text: str) -> Record:
    """Parse a whole record first, as §4.6 requires: any syntax error is a permerror
    (raised as ``ValueError``), even in terms after the one that would match."""
    if len(text) > MAX_RECORD:
        raise ValueError("record too long")
    if not text.isascii():
        raise ValueError("non-ASCII character in the record")
    mechanisms: list[_Mechanism] = []
    modifiers: dict[str, MacroString] = {}
    try:
        for term in text.split(" ")[1:]:
            if not term:
                continue
            name, sep, value = term.partition("=")
            if sep and _MODIFIER_NAME.fullmatch(name):
                lowered = name.lower()
                if lowered in modifiers and lowered in ("redirect", "exp"):
                    raise ValueError(f"{lowered}= given twice")  # §6
                if lowered == "redirect" or lowered == "exp":
                    parsed = parse_macro_string(value)
                    check_domain_end(parsed)
                    modifiers[lowered] = parsed
                else:
                    parse_macro_string(value)  # §6: unknown modifiers are ignored, if well-formed
                    modifiers.setdefault(lowered, ())
                continue
            mechanisms.append(_parse_mechanism(term))
    except MacroError as exc:
        raise ValueError(str(exc)) from None
    return Record(tuple(mechanisms), modifiers.get("redirect"), modifiers.get("exp"))


_LIMITS = AuthCheckLimits()


def _record(text: str) -> Record:
    """:func:`parse_record`, kept per record text (a changed record is a new text)
    unless it is longer than the limit; a record that does not parse raises every time."""
    if len(text) > _LIMITS.spf_record_chars:
        return parse_record(text)
    return _parsed_record(text)


@functools.lru_cache(maxsize=_LIMITS.spf_records)
def _parsed_record(text: str) -> Record:
    return parse_record(text)


def _parse_mechanism(term: str) -> _Mechanism:
    qualifier = "+"
    if term[0] in _QUALIFIERS:
        qualifier, term = term[0], term[1:]
    name_end = len(term)
    for i, ch in enumerate(term):
        if ch in ":/":
            name_end = i
            break
    name = term[:name_end].lower()
    rest = term[name_end:]
    if name not in _MECHANISMS:
        raise ValueError(f"unknown mechanism {term!r}")
    if name == "all":
        if rest:
            raise ValueError("'all' takes no argument")
        return _Mechanism(qualifier, name)
    if name in ("ip4", "ip6"):
        return _parse_ip(qualifier, name, rest)
    target: MacroString | None = None
    cidr4, cidr6 = 32, 128
    spec = rest
    if name in ("a", "mx"):
        spec, cidr4, cidr6 = _split_cidr(rest)
    if spec.startswith(":"):
        target = parse_macro_string(spec[1:])
        check_domain_end(target)
    elif spec:
        raise ValueError(f"bad mechanism {term!r}")
    if target is None and name in ("include", "exists"):
        raise ValueError(f"{name} needs a domain")
    return _Mechanism(qualifier, name, target, cidr4=cidr4, cidr6=cidr6)


def _split_cidr(rest: str) -> tuple[str, int, int]:
    """``:domain/24//64`` → ``(":domain", 24, 64)`` (RFC 7208 §5.6 dual-cidr-length)."""
    match = _CIDR.search(rest)
    if match is None or not match.group(0):
        return rest, 32, 128
    v4 = int(match.group(1)) if match.group(1) is not None else 32
    v6 = int(match.group(2)) if match.group(2) is not None else 128
    if v4 > 32 or v6 > 128:
        raise ValueError(f"CIDR length out of range in {rest!r}")
    return rest[: match.start()], v4, v6


def _parse_ip(qualifier: str, name: str, rest: str) -> _Mechanism:
    if not rest.startswith(":"):
        raise ValueError(f"{name} needs an address")
    text = rest[1:]
    address, slash, length = text.partition("/")
    limit = 32 if name == "ip4" else 128
    if slash and not re.fullmatch(r"0|[1-9][0-9]{0,2}", length):
        raise ValueError(f"bad CIDR length {length!r}")
    bits = int(length) if slash else limit
    if bits > limit:
        raise ValueError(f"CIDR length {bits} out of range")
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        raise ValueError(f"bad address {address!r}") from None
    if parsed.version != (4 if name == "ip4" else 6):
        raise ValueError(f"{name} with address {address!r}")
    network = ipaddress.ip_network(f"{address}/{bits}", strict=False)
    return _Mechanism(qualifier, name, network=network)


#: The evaluation generator: yields queries, is sent answers, returns the result.
Evaluation = Generator[Query, Answer, SPFResult]


@dataclass(slots=True)
class _State:
    ip: _Address
    sender: str
    helo: str
    receiver: str
    timestamp: int
    lookups: int = 0
    void: int = 0
    validated: dict[str, str] = field(default_factory=dict)

    def count_lookup(self) -> None:
        self.lookups += 1
        if self.lookups > MAX_LOOKUPS:
            raise _PermError("more than 10 DNS lookups")  # §4.6.4

    def count_void(self, answer: Answer) -> None:
        if answer.void:
            self.void += 1
            if self.void > _MAX_VOID:
                raise _PermError("more than 2 void lookups")  # §4.6.4


def check_host(
    ip: str,
    domain: str,
    sender: str,
    helo: str = "",
    *,
    receiver: str = "unknown",
    timestamp: int = 0,
) -> Evaluation:
    """RFC 7208 §4: is ``ip`` allowed to send for ``domain``? A generator (see module doc).

    ``sender`` is the MAIL FROM address, or ``postmaster@<helo>`` when it was
    empty (§2.4); its local-part defaults to ``postmaster`` (§4.3).
    """
    address = ipaddress.ip_address(ip)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # §5: an IPv4-mapped client is an IPv4 client
    if "@" not in sender:
        sender = f"postmaster@{sender}"
    elif sender.startswith("@"):
        sender = "postmaster" + sender
    state = _State(address, sender, helo, receiver, timestamp)
    domain = domain.rstrip(".") if domain.endswith(".") and not domain.endswith("..") else domain
    try:
        result, explanation = yield from _check(state, domain, top=True)
    except _PermError as exc:
        return SPFResult("permerror", domain, state.lookups, detail=str(exc))
    except _TempError as exc:
        return SPFResult("temperror", domain, state.lookups, detail=str(exc))
    return SPFResult(result, domain, state.lookups, explanation)


def _valid_domain(domain: str) -> bool:
    # §4.3: malformed, or not a multi-label name, means "none".
    labels = domain.split(".")
    return (
        len(labels) > 1
        and len(domain) <= 253
        and all(0 < len(label) <= 63 for label in labels)
        and domain.isascii()
    )


def _check(state: _State, domain: str, *, top: bool) -> Generator[Query, Answer, tuple[str, str]]:
    if not _valid_domain(domain):
        return "none", ""
    answer = yield Query(domain, "TXT")
    if answer.temporary:
        raise _TempError(f"{domain}: TXT lookup failed")  # §4.4
    if answer.nxdomain:
        return "none", ""
    records = spf_records(answer.records)
    if not records:
        return "none", ""  # §4.5
    if len(records) > 1:
        raise _PermError(f"{domain}: more than one SPF record")
    try:
        record = _record(records[0])
    except ValueError as exc:
        raise _PermError(f"{domain}: {exc}") from None
    context = _context(state, domain)
    for mechanism in record.mechanisms:
        if (yield from _matches(state, mechanism, domain, context)):
            result = _QUALIFIERS[mechanism.qualifier]
            explanation = ""
            if result == "fail" and top and record.exp is not None:
                explanation = yield from _explain(record.exp, context)
            return result, explanation
    if record.redirect is not None:
        # §6.1: the redirect target's result is this record's; "none" becomes permerror.
        state.count_lookup()
        target = _expand(record.redirect, context)
        if not _valid_domain(target):
            raise _PermError(f"redirect to invalid domain {target!r}")
        result, explanation = yield from _check(state, target, top=top)
        if result == "none":
            raise _PermError(f"redirect target {target} has no SPF record")
        return result, explanation
    return "neutral", ""  # §4.7


def _context(state: _State, domain: str) -> MacroContext:
    return MacroContext(
        sender=state.sender,
        domain=domain,
        ip=state.ip,
        helo=state.helo,
        receiver=state.receiver,
        timestamp=state.timestamp,
        validated_name=lambda: state.validated.get("p", "unknown"),
    )


def _expand(parsed: MacroString, context: MacroContext) -> str:
    try:
        return expand_domain(parsed, context)
    except MacroError as exc:
        raise _PermError(str(exc)) from None


def _matches(
    state: _State, mechanism: _Mechanism, domain: str, context: MacroContext
) -> Generator[Query, Answer, bool]:
    name = mechanism.name
    if name == "all":
        return True
    if mechanism.network is not None:  # ip4, ip6 (§5.6): no DNS
        return state.ip.version == mechanism.network.version and state.ip in mechanism.network
    state.count_lookup()
    target = domain
    if mechanism.target is not None:
        if _uses_p(mechanism.target) and "p" not in state.validated:
            yield from _validated_names(state)
        target = _expand(mechanism.target, context)
    if name == "include":
        # §5.2: pass matches; fail/softfail/neutral do not; none is a permerror.
        try:
            result, _ = yield from _check(state, target, top=False)
        except _TempError:
            raise
        if result == "none":
            raise _PermError(f"include:{target} has no SPF record")
        return result == "pass"
    if name == "a":
        answer = yield from _addresses(state, target, state.ip.version)
        return _in_any(state.ip, answer, mechanism)
    if name == "mx":
        return (yield from _mx_matches(state, target, mechanism))
    if name == "ptr":
        names = yield from _validated_names(state)
        wanted = target.lower()
        return any(n == wanted or n.endswith("." + wanted) for n in names)
    # exists (§5.7): an A query, whatever the client's address family.
    answer = yield Query(target, "A")
    if answer.temporary:
        raise _TempError(f"{target}: A lookup failed")
    state.count_void(answer)
    return bool(answer.records)


def _uses_p(parsed: MacroString) -> bool:
    return any(not isinstance(item, str) and item.letter.lower() == "p" for item in parsed)


def _addresses(state: _State, name: str, version: int) -> Generator[Query, Answer, Answer]:
    answer = yield Query(name, "A" if version == 4 else "AAAA")
    if answer.temporary:
        raise _TempError(f"{name}: address lookup failed")
    state.count_void(answer)
    return answer


def _in_any(ip: _Address, answer: Answer, mechanism: _Mechanism) -> bool:
    bits = mechanism.cidr4 if ip.version == 4 else mechanism.cidr6
    for text in answer.records:
        try:
            network = ipaddress.ip_network(f"{text}/{bits}", strict=False)
        except ValueError:
            continue
        if network.version == ip.version and ip in network:
            return True
    return False


def _mx_matches(
    state: _State, target: str, mechanism: _Mechanism
) -> Generator[Query, Answer, bool]:
    answer = yield Query(target, "MX")
    if answer.temporary:
        raise _TempError(f"{target}: MX lookup failed")
    state.count_void(answer)
    if len(answer.records) > _MAX_NAMES:
        raise _PermError(f"{target}: more than 10 MX records")  # §4.6.4
    for exchange in answer.records:
        if exchange in (".", "", "@"):
            continue
        found = yield from _addresses(state, exchange, state.ip.version)
        if _in_any(state.ip, found, mechanism):
            return True
    return False


def _reverse_name(ip: _Address) -> str:
    return ip.reverse_pointer


def _validated_names(state: _State) -> Generator[Query, Answer, list[str]]:
    """§5.5: the PTR names of the client whose addresses include it (at most 10 tried)."""
    answer = yield Query(_reverse_name(state.ip), "PTR")
    if answer.temporary or not answer.records:
        state.count_void(answer)
        return []  # §5.5: a DNS error here is "no match", not temperror
    names: list[str] = []
    for ptr in answer.records[:_MAX_NAMES]:
        host = ptr.rstrip(".").lower()
        found = yield Query(host, "A" if state.ip.version == 4 else "AAAA")
        if found.temporary:
            continue
        for text in found.records:
            try:
                if ipaddress.ip_address(text) == state.ip:
                    names.append(host)
                    break
            except ValueError:
                continue
    # §7.3 "p": a validated name, the target domain's own if it is one of them.
    state.validated.setdefault("p", names[0] if names else "unknown")
    return names


def _explain(parsed: MacroString, context: MacroContext) -> Generator[Query, Answer, str]:
    """§6.2: the "exp" text, or empty on any problem (which never changes the result)."""
    try:
        name = expand_domain(parsed, context)
    except MacroError:
        return ""
    answer = yield Query(name, "TXT")
    if answer.temporary or len(answer.records) != 1:
        return ""
    try:
        text = parse_macro_string(answer.records[0], explanation=True)
    except MacroError:
        return ""
    return expand(text, context, limit=MAX_EXPLANATION)


def run(evaluation: Evaluation, lookup: Callable[[Query], Answer]) -> SPFResult:
    """Drive ``evaluation`` to its result with a blocking ``lookup``."""
    try:
        query = next(evaluation)
        while True:
            query = evaluation.send(lookup(query))
    except StopIteration as done:
        result: SPFResult = done.value
        return result


async def run_async(
    evaluation: Evaluation, lookup: Callable[[Query], Awaitable[Answer]]
) -> SPFResult:
    """Drive ``evaluation`` to its result with an async ``lookup``."""
    try:
        query = next(evaluation)
        while True:
            query = evaluation.send(await lookup(query))
    except StopIteration as done:
        result: SPFResult = done.value
        return result
