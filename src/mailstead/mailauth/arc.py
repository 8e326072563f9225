"""ARC (RFC 8617) on mail from other servers: the chain's result, and whom it vouches for.

:func:`verify_chain` validates every ARC set of a message with dkimpy
(``arc_verify``: each ARC-Message-Signature and ARC-Seal), its key lookups
through :class:`~mailstead.mailauth.lookups.AuthDNS` under the message's
:class:`~mailstead.mailauth.lookups.Budget`. Blocking: called from the
receiver's worker thread, like DKIM.

:func:`result_part` is the ``arc=`` part of our Authentication-Results
(the ``arc`` method RFC 8617 adds to the RFC 8601 registry, with
``header.oldest-pass`` and ``smtp.remote-ip``); sealing reads it back for
the next set's ``cv=`` (:mod:`mailstead.mailauth.arc_seal`).

:func:`trusted_sealer` is the optional DMARC override (RFC 7489 §10.2,
RFC 8617 §7.2): a message that fails DMARC here, whose chain passes and
whose newest sealers are all trusted, is let through when one of them
recorded ``dmarc=pass`` for the same From domain before it forwarded the
message — the forwarder saw it intact; the change that broke DKIM (a
list footer, a subject tag) came after.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import dkim

from mailstead.mailauth.authresults import header_fields, value
from mailstead.mailauth.dkim_verify import KeyLookup
from mailstead.mailauth.lookups import AuthDNS, Budget

__all__ = [
    "MAX_SETS",
    "ARCResult",
    "ARCSet",
    "aar_results",
    "result_part",
    "trusted_sealer",
    "verify_chain",
]

#: RFC 8617 §4.2.1: instances run from 1 to 50; a chain with more fails.
MAX_SETS = 50
_ARC_FIELDS = (b"arc-seal", b"arc-message-signature", b"arc-authentication-results")
_INSTANCE = re.compile(rb"(?:^|[\s;])i\s*=\s*(\d{1,6})", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class ARCSet:
    """One ARC set as the validator saw it."""

    #: i= (1 is the oldest).
    instance: int
    #: d= of its ARC-Seal: the sealer's domain.
    sealer: str
    #: The ARC-Authentication-Results value (relaxed: whitespace collapsed).
    aar: str
    #: Its ARC-Message-Signature still verifies over the message as it is now.
    ams_valid: bool


@dataclass(frozen=True, slots=True)
class ARCResult:
    """The chain validation status of one message (RFC 8617 §5.2): pass, fail or none."""

    result: str
    #: The sets that were validated, oldest first (on a fail, those looked at).
    sets: tuple[ARCSet, ...] = ()
    #: RFC 8617 §5.2 step 5: the oldest instance whose AMS (and every newer
    #: one) still verifies; 0 when all do. Only meaningful for a pass.
    oldest_pass: int = 0
    #: Why, for the comment and the log.
    detail: str = ""

    @property
    def sealer(self) -> str:
        """The newest sealer's domain ("" without sets)."""
        return self.sets[-1].sealer if self.sets else ""


def _precheck(fields: Sequence[bytes]) -> ARCResult | None:
    """none for a message without ARC fields; fail for more than RFC 8617 allows."""
    instances: list[int] = []
    for field in fields:
        name, _, rest = field.partition(b":")
        if name.strip().lower() in _ARC_FIELDS:
            found = _INSTANCE.search(rest)
            instances.append(int(found.group(1)) if found else 0)
    if not instances:
        return ARCResult("none")
    if len(instances) > 3 * MAX_SETS or max(instances) > MAX_SETS:
        # §4.2.1: at most 50 sets; bounding them also bounds our work (two
        # signature checks and a key lookup per set).
        return ARCResult("fail", detail=f"more than {MAX_SETS} ARC sets")
    return None


def verify_chain(
    message: bytes, dns: AuthDNS, budget: Budget, fields: Sequence[bytes] | None = None
) -> ARCResult:
    """The ARC chain of ``message`` (CRLF, as received: before our own fields).

    ``fields``: :func:`~mailstead.mailauth.authresults.header_fields` of
    ``message`` when the caller has them.
    """
    early = _precheck(header_fields(message) if fields is None else fields)
    if early is not None:
        return early
    lookup = KeyLookup(dns, budget)
    try:
        cv, data, reason = dkim.arc_verify(message, dnsfunc=lookup, minkey=1024)
    except Exception as exc:  # dkimpy on hostile input: any error is a broken chain
        return ARCResult("fail", detail=_line(exc))
    sets = tuple(_set(item) for item in reversed(list(data or [])))
    if cv == dkim.CV_None:
        return ARCResult("none", sets)
    if cv == dkim.CV_Pass:
        return ARCResult("pass", sets, _oldest_pass(sets))
    # Anything else fails, including dkimpy's None for a chain that a seal
    # with cv=fail ended. RFC 8617 §5.2.1: all failures are permanent —
    # there is no temperror, so a chain whose keys we could not fetch fails.
    return ARCResult("fail", sets, detail="key lookup failed" if lookup.failed else _line(reason))


def _set(item: Mapping[str, object]) -> ARCSet:
    def text(key: str) -> str:
        raw = item.get(key, b"")
        return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)

    instance = item.get("instance", 0)
    return ARCSet(
        instance=instance if isinstance(instance, int) else 0,
        sealer=text("as-domain").strip().lower().rstrip(".")[:255],  # hostile: bounded
        aar=text("aar-value").strip(),
        ams_valid=item.get("ams-valid") is True,
    )


def _oldest_pass(sets: Sequence[ARCSet]) -> int:
    """RFC 8617 §5.2 step 5: walking back from the newest set while AMSs verify."""
    oldest = len(sets)
    for arc_set in reversed(sets[:-1]):
        if not arc_set.ams_valid:
            break
        oldest = arc_set.instance
    return 0 if oldest <= 1 else oldest


def result_part(chain: ARCResult, remote_ip: str) -> str:
    """The ``arc=`` resinfo of our Authentication-Results (RFC 8617 §7.2)."""
    if chain.result == "none":
        return "arc=none"
    ip = f" smtp.remote-ip={value(remote_ip)}"
    if chain.result == "pass":
        comment = f"(i={len(chain.sets)} d={_comment(chain.sealer)})"
        return f"arc=pass {comment} header.oldest-pass={chain.oldest_pass}{ip}"
    reason = f" ({_comment(chain.detail)})" if chain.detail else ""
    return f"arc=fail{reason}{ip}"


def trusted_sealer(chain: ARCResult, author: str, trusted: Collection[str]) -> str | None:
    """The trusted sealer whose ARC-Authentication-Results vouch for ``author``, or None.

    Walks from the newest set back while the sealers are trusted: an
    untrusted one could have written anything in the sets below its own.
    """
    if chain.result != "pass" or not author or not trusted:
        return None
    author = author.lower().rstrip(".")
    for arc_set in reversed(chain.sets):
        if arc_set.sealer not in trusted:
            return None
        for method, result, props in aar_results(arc_set.aar):
            vouched = props.get("header.from", "").lower().rstrip(".")
            if method == "dmarc" and result == "pass" and vouched == author:
                return arc_set.sealer
    return None


def aar_results(aar: str) -> list[tuple[str, str, dict[str, str]]]:
    """The results of an ARC-Authentication-Results value: ``(method, result, props)``.

    ``i=N; authserv-id; method=result ptype.property=value …; …`` (RFC 8617
    §4.1.1, RFC 8601 §2.2); comments are dropped, methods and results are
    lower case. Unparsable pieces are skipped.
    """
    statements = _split_statements(aar)
    out: list[tuple[str, str, dict[str, str]]] = []
    for statement in statements[2:]:  # after i= and the authserv-id
        words = statement.split()
        if not words or "=" not in words[0]:
            continue
        method, _, result = words[0].partition("=")
        props: dict[str, str] = {}
        for word in words[1:]:
            name, sep, prop = word.partition("=")
            if sep and "." in name:
                props.setdefault(name.lower(), prop.strip('"'))
        out.append((method.split("/")[0].lower(), result.lower(), props))
    return out


def _split_statements(text: str) -> list[str]:
    """``text`` split at semicolons outside quoted-strings, comments removed."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    quoted = False
    escaped = False
    for ch in text[:8192]:
        if escaped:
            escaped = False
            if depth == 0:
                current.append(ch)
        elif ch == "\\":
            escaped = True
        elif quoted:
            quoted = ch != '"'
            current.append(ch)
        elif ch == "(":
            depth += 1
        elif ch == ")" and depth:
            depth -= 1
        elif depth:
            continue
        elif ch == '"':
            quoted = True
            current.append(ch)
        elif ch == ";":
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    parts.append("".join(current).strip())
    return parts


def _comment(text: str) -> str:
    """Text safe inside an RFC 5322 comment."""
    return "".join(ch for ch in text if " " <= ch < "\x7f" and ch not in "()\\")[:120]


def _line(text: object) -> str:
    line = str(text).strip()
    return line.splitlines()[0][:200] if line else "chain did not verify"
