"""MTA-STS (RFC 8461), sans-IO: the TXT record, the policy file, MX matching.

A domain that publishes MTA-STS says, in a TXT record at ``_mta-sts.DOMAIN``,
that a policy exists and which version of it is current (``id``); the
policy itself is a small text file at
``https://mta-sts.DOMAIN/.well-known/mta-sts.txt`` naming the MX hosts mail
may go to and whether senders must refuse the others (``enforce``), only
report them (``testing``) or forget the policy (``none``).

This module reads both (hostile input: bounded, every deviation a
:class:`PolicyError` with a reason, never a guess) and answers whether an MX
host matches a policy. Fetching, caching and applying live in
:mod:`mailstead.mta.mta_sts_fetch` and :mod:`mailstead.mta.mta_sts_lookup`.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "MAX_AGE_LIMIT",
    "MAX_MX_PATTERNS",
    "MAX_POLICY_BYTES",
    "POLICY_PATH",
    "Mode",
    "Policy",
    "PolicyError",
    "mx_matches",
    "parse_policy",
    "parse_record",
    "policy_host",
    "record_name",
]

#: RFC 8461 §3.3: where the policy is served on the policy host.
POLICY_PATH = "/.well-known/mta-sts.txt"
#: RFC 8461 §3.3: "a maximum policy size of 64 kilobytes".
MAX_POLICY_BYTES = 64 * 1024
#: RFC 8461 §3.2: max_age is "up to 31557600" seconds (about one year).
MAX_AGE_LIMIT = 31557600
#: MX patterns kept from one policy; real policies list a handful. Bounds
#: the work of matching every MX host of every delivery against them.
MAX_MX_PATTERNS = 100


class PolicyError(ValueError):
    """The TXT record or the policy file is not valid MTA-STS: treated as no policy."""


class Mode(enum.Enum):
    """What a sender does with an MX host or a certificate the policy does not allow (§5)."""

    ENFORCE = "enforce"  # do not deliver there
    TESTING = "testing"  # deliver, report the failure (TLS-RPT, RFC 8460)
    NONE = "none"  # the domain withdrew its policy


@dataclass(frozen=True, slots=True)
class Policy:
    """One domain's policy as fetched: mode, lifetime in seconds, allowed MX patterns."""

    mode: Mode
    max_age: int
    mx: tuple[str, ...]

    def allows(self, host: str) -> bool:
        """True if MX ``host`` matches one of the policy's ``mx`` patterns (RFC 8461 §4.1)."""
        return any(mx_matches(pattern, host) for pattern in self.mx)

    def text(self) -> str:
        """The policy as a policy file (what the cache stores)."""
        lines = ["version: STSv1", f"mode: {self.mode.value}"]
        lines += [f"mx: {pattern}" for pattern in self.mx]
        lines.append(f"max_age: {self.max_age}")
        return "\r\n".join(lines) + "\r\n"


def record_name(domain: str) -> str:
    """The TXT record's name for ``domain`` (RFC 8461 §3.1)."""
    return f"_mta-sts.{domain}"


def policy_host(domain: str) -> str:
    """The host serving ``domain``'s policy (RFC 8461 §3.3)."""
    return f"mta-sts.{domain}"


# RFC 8461 §3.1:
#   sts-text-record = sts-version 1*(sts-field-delim sts-field) [sts-field-delim]
#   sts-field-delim = *WSP ";" *WSP
#   sts-id          = %s"id=" 1*32(ALPHA / DIGIT)
#   sts-extension   = sts-ext-name "=" sts-ext-value
_EXT_NAME = r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,31}"
_EXT_VALUE = r"[\x21-\x3a\x3c\x3e-\x7e]+"
_FIELD = re.compile(rf"(?P<name>{_EXT_NAME})=(?P<value>{_EXT_VALUE})", re.ASCII)
_ID = re.compile(r"[A-Za-z0-9]{1,32}", re.ASCII)
# Bytes of one TXT record read at all (a DNS answer is bounded anyway).
_MAX_RECORD = 1024


def parse_record(records: Sequence[bytes]) -> str:
    """The policy id from the TXT records at ``_mta-sts.DOMAIN``, or :class:`PolicyError`.

    RFC 8461 §3.1: records not starting with ``v=STSv1;`` are discarded;
    anything but exactly one left, or one that is invalid, means no policy.
    """
    # Errata 6285: whitespace before the first ";" is allowed by the ABNF
    # but not by the discard rule; both spellings are accepted here.
    ours = [r for r in records if re.match(rb"v=STSv1[ \t]*;", r)]
    if len(ours) != 1:
        raise PolicyError(f"{len(ours)} MTA-STS TXT records (exactly one is required)")
    raw = ours[0]
    if len(raw) > _MAX_RECORD:
        raise PolicyError("MTA-STS TXT record too long")
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise PolicyError("MTA-STS TXT record is not ASCII") from None
    parts = [p.strip(" \t") for p in text.split(";")]
    if parts and parts[-1] == "":
        parts.pop()  # the optional trailing delimiter
    policy_id = None
    for part in parts[1:]:
        field = _FIELD.fullmatch(part)
        if field is None:
            raise PolicyError(f"invalid MTA-STS TXT record field {part[:40]!r}")
        if field["name"] == "id":
            if policy_id is not None:
                raise PolicyError("MTA-STS TXT record has two ids")
            if not _ID.fullmatch(field["value"]):
                raise PolicyError("invalid MTA-STS policy id (1-32 letters and digits)")
            policy_id = field["value"]
    if policy_id is None:
        raise PolicyError("MTA-STS TXT record without an id")
    return policy_id


# RFC 8461 §3.2: "key: value" lines separated by LF or CRLF (errata 6253).
# The line is split at its first ":" by hand: a regex whose blank run
# before the value could also be part of the value backtracks
# quadratically on a long run of blanks that does not match.
_POLICY_KEY = re.compile(_EXT_NAME, re.ASCII)
# A host name in the sense of RFC 5321 "Domain" (LDH labels), optionally
# preceded by "*." (§3.2 sts-policy-mx-value).
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?"
_MX_PATTERN = re.compile(rf"(?:\*\.)?{_LABEL}(?:\.{_LABEL})*\.?", re.ASCII)
_MAX_AGE = re.compile(r"[0-9]{1,10}", re.ASCII)
_SINGLE = ("version", "mode", "max_age")


def parse_policy(body: bytes) -> Policy:
    """The policy in a policy file's ``body``, or :class:`PolicyError` (RFC 8461 §3.2).

    Unknown fields are ignored; ``version``, ``mode`` and ``max_age`` must
    each appear once, ``mx`` at least once unless the mode is ``none``.
    """
    if len(body) > MAX_POLICY_BYTES:
        raise PolicyError(f"policy larger than {MAX_POLICY_BYTES} bytes")
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        raise PolicyError("policy is not ASCII text") from None
    single: dict[str, str] = {}
    mx: list[str] = []
    for line in text.split("\n"):
        line = line.removesuffix("\r").rstrip(" \t")
        if not line:
            continue  # a final line break, or blank lines some servers add
        key, colon, value = line.partition(":")
        if not colon or not _POLICY_KEY.fullmatch(key):
            raise PolicyError(f"invalid policy line {line[:40]!r}")
        value = value.lstrip(" \t")
        if key in _SINGLE:
            if key in single:
                raise PolicyError(f"policy field {key} appears twice")
            single[key] = value
        elif key == "mx":
            if len(value) > 255 or not _MX_PATTERN.fullmatch(value):
                raise PolicyError(f"invalid mx pattern {value[:40]!r}")
            if len(mx) >= MAX_MX_PATTERNS:
                raise PolicyError(f"more than {MAX_MX_PATTERNS} mx patterns")
            mx.append(value.lower().rstrip("."))
        # Other fields: sts-policy-extension, ignored.
    if single.get("version") != "STSv1":
        raise PolicyError("policy version is not STSv1")
    try:
        mode = Mode(single.get("mode", ""))
    except ValueError:
        raise PolicyError("policy mode is not enforce, testing or none") from None
    max_age_text = single.get("max_age", "")
    if not _MAX_AGE.fullmatch(max_age_text):
        raise PolicyError("policy max_age is not a number of seconds")
    # §3.2: "up to 31557600"; a larger value is read as the maximum.
    max_age = min(int(max_age_text), MAX_AGE_LIMIT)
    if not mx and mode is not Mode.NONE:
        raise PolicyError("policy names no mx")
    return Policy(mode, max_age, tuple(dict.fromkeys(mx)))


def mx_matches(pattern: str, host: str) -> bool:
    """Whether MX ``host`` matches policy ``pattern`` (RFC 8461 §4.1).

    Case-insensitive; a leading ``*.`` stands for exactly one label:
    ``*.example.com`` matches ``mail.example.com`` but neither
    ``example.com`` nor ``foo.bar.example.com``.
    """
    pattern = pattern.lower().rstrip(".")
    host = host.lower().rstrip(".")
    if pattern.startswith("*."):
        first, dot, rest = host.partition(".")
        return bool(first) and bool(dot) and rest == pattern[2:]
    return host == pattern
