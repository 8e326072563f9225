"""SPF macro strings (RFC 7208 §7): syntax check and expansion, sans-IO.

A macro string is parsed once into literal text and :class:`Macro` items;
expansion is a single pass over them. Both are linear in the input and the
output is bounded: a domain-spec is cut to 253 octets from the left
(§7.3), an explanation to :data:`MAX_EXPLANATION` characters.
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "MAX_EXPLANATION",
    "Macro",
    "MacroContext",
    "MacroError",
    "check_domain_end",
    "expand",
    "expand_domain",
    "parse_macro_string",
]

#: Longest explanation string kept (RFC 7208 §6.2 sets no limit; we do).
MAX_EXPLANATION = 1024
_MAX_DOMAIN = 253  # RFC 7208 §7.3: longer results lose labels on the left
_LETTERS = frozenset("slodiphv")
_EXP_ONLY = frozenset("crt")  # RFC 7208 §7.2: only in "exp" text
_DELIMITERS = frozenset(".-+,/_=")
_MACRO_BODY = re.compile(r"([a-zA-Z])([0-9]*)([rR]?)([.\-+,/_=]*)")
_TOPLABEL = re.compile(r"(?:[0-9a-z]*[a-z][0-9a-z]*|[0-9a-z]+-[0-9a-z-]*[0-9a-z])", re.IGNORECASE)


class MacroError(ValueError):
    """The macro string breaks RFC 7208 §7.1 syntax (a permerror)."""


@dataclass(frozen=True, slots=True)
class Macro:
    """One ``%{…}`` term: its letter, how many parts to keep, reversal, delimiters."""

    letter: str  # as written: upper case means URL-escaped (§7.3)
    keep: int  # 0 = all parts
    reverse: bool
    delimiters: str


#: A parsed macro string: literal text and macros, in order.
MacroString = tuple[str | Macro, ...]


def parse_macro_string(text: str, *, explanation: bool = False) -> MacroString:
    """``text`` as literals and macros, or :class:`MacroError` (RFC 7208 §7.1)."""
    out: list[str | Macro] = []
    literal: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch != "%":
            # macro-literal = %x21-24 / %x26-7E; "exp" text may hold spaces too.
            if not ("\x21" <= ch <= "\x7e" or (explanation and ch == " ")):
                raise MacroError(f"character {ch!r} not allowed in a macro string")
            literal.append(ch)
            i += 1
            continue
        nxt = text[i + 1 : i + 2]
        if nxt in ("%", "_", "-"):
            literal.append({"%": "%", "_": " ", "-": "%20"}[nxt])
            i += 2
            continue
        if nxt != "{":
            raise MacroError("'%' must be followed by '{', '%', '_' or '-'")
        close = text.find("}", i + 2)
        if close < 0:
            raise MacroError("unterminated macro")
        match = _MACRO_BODY.fullmatch(text, i + 2, close)
        if match is None:
            raise MacroError(f"bad macro %{{{text[i + 2 : close]}}}")
        letter, digits, reverse, delims = match.groups()
        lowered = letter.lower()
        if lowered not in _LETTERS and not (explanation and lowered in _EXP_ONLY):
            raise MacroError(f"unknown macro letter {letter!r}")
        keep = int(digits[:4]) if digits else 0
        if digits and keep == 0:
            raise MacroError("a macro may not keep zero parts")  # RFC 7208 §7.1
        if literal:
            out.append("".join(literal))
            literal = []
        out.append(Macro(letter, keep, bool(reverse), delims))
        i = close + 1
    if literal:
        out.append("".join(literal))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class MacroContext:
    """The values macros expand to (RFC 7208 §7.2)."""

    sender: str  # <sender>, local-part defaulted to "postmaster"
    domain: str  # the <domain> of the current check_host()
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address
    helo: str
    receiver: str = "unknown"
    timestamp: int = 0
    #: Gives the validated domain name of ``ip`` ("p"); asked only when used.
    validated_name: Callable[[], str] | None = None

    def value(self, letter: str) -> str:
        local, _, sender_domain = self.sender.rpartition("@")
        if letter == "s":
            return self.sender
        if letter == "l":
            return local or "postmaster"
        if letter == "o":
            return sender_domain
        if letter == "d":
            return self.domain
        if letter in ("i", "c"):
            if letter == "i" and self.ip.version == 6:
                # RFC 7208 §7.3: IPv6 "i" is dot-separated nibbles.
                return ".".join(self.ip.exploded.replace(":", ""))
            return str(self.ip)
        if letter == "p":
            return self.validated_name() if self.validated_name is not None else "unknown"
        if letter == "v":
            return "in-addr" if self.ip.version == 4 else "ip6"
        if letter == "h":
            return self.helo
        if letter == "r":
            return self.receiver
        if letter == "t":
            return str(self.timestamp)
        raise MacroError(f"unknown macro letter {letter!r}")  # pragma: no cover - parse refused it


def _transform(value: str, macro: Macro) -> str:
    # RFC 7208 §7.3: split on the delimiters, reverse, keep the rightmost N, join with ".".
    delimiters = macro.delimiters or "."
    parts = re.split("[" + re.escape(delimiters) + "]", value)
    if macro.reverse:
        parts.reverse()
    if macro.keep:
        parts = parts[-macro.keep :]
    out = ".".join(parts)
    if macro.letter.isupper():
        out = urllib.parse.quote(out, safe="-._~")
    return out


def expand(parsed: MacroString, context: MacroContext, *, limit: int = MAX_EXPLANATION) -> str:
    """Expand ``parsed``; the result is cut to ``limit`` characters."""
    pieces: list[str] = []
    size = 0
    for item in parsed:
        text = (
            item if isinstance(item, str) else _transform(context.value(item.letter.lower()), item)
        )
        pieces.append(text)
        size += len(text)
        if size > limit * 2:
            break  # enough to cut from; keeps the work bounded
    return "".join(pieces)[:limit]


def expand_domain(parsed: MacroString, context: MacroContext) -> str:
    """A domain-spec's target name (RFC 7208 §7.3), or :class:`MacroError`."""
    pieces = [
        item if isinstance(item, str) else _transform(context.value(item.letter.lower()), item)
        for item in parsed
    ]
    name = "".join(pieces).rstrip(".")
    # §7.3: when the expansion is too long, labels go from the left.
    while len(name) > _MAX_DOMAIN and "." in name:
        name = name.split(".", 1)[1]
    if len(name) > _MAX_DOMAIN:
        raise MacroError("domain too long")
    return name


def check_domain_end(parsed: MacroString) -> None:
    """RFC 7208 §7.1: ``domain-end = ( "." toplabel [ "." ] ) / macro-expand``."""
    if not parsed:
        raise MacroError("empty domain-spec")
    last = parsed[-1]
    if isinstance(last, Macro):
        return
    text = last[:-1] if last.endswith(".") else last
    head, dot, label = text.rpartition(".")
    if not dot or not _TOPLABEL.fullmatch(label):
        raise MacroError(f"domain-spec {last!r} does not end in a top-level label")
    if len(parsed) == 1 and (not head or "" in head.split(".")):
        raise MacroError(f"empty label in {last!r}")
