"""Syntax of SMTP paths and ESMTP parameters (RFC 5321 §4.1.2, RFC 6531 §3.3).

Only syntax lives here: whether an address is ours, exists or may be used
is decided by the session's policy.
"""

from __future__ import annotations

import ipaddress
import re

from mailstead.peertext import has_control
from mailstead.proto.smtp.replies import Reply, SMTPError

# RFC 5321 §4.5.3.1.1-3: size limits of the parts of a path, in octets.
MAX_LOCAL_PART = 64
MAX_DOMAIN = 255
MAX_PATH = 256

_CONTROL_IN_ADDRESS = "Control characters are not allowed in an address"

# RFC 5322 atext; RFC 6531 §3.3 extends it with any non-ASCII UTF-8 character.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_ATEXT_UTF8 = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\U0010ffff]"
_QTEXT = r"[\x20\x21\x23-\x5b\x5d-\x7e]"
_QTEXT_UTF8 = r"[\x20\x21\x23-\x5b\x5d-\x7e\u0080-\U0010ffff]"
_QPAIR = r"\\[\x20-\x7e]"


def _local_part_re(atext: str, qtext: str) -> re.Pattern[str]:
    dot_string = rf"{atext}+(?:\.{atext}+)*"
    quoted = rf'"(?:{qtext}|{_QPAIR})*"'
    return re.compile(rf"(?:{dot_string}|{quoted})")


_LOCAL_ASCII = _local_part_re(_ATEXT, _QTEXT)
_LOCAL_UTF8 = _local_part_re(_ATEXT_UTF8, _QTEXT_UTF8)
# A domain name (letters, digits, hyphens; U-labels with SMTPUTF8) or an
# address literal such as [192.0.2.1] or [IPv6:2001:db8::1] (§4.1.3).
_LABEL_ASCII = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_LABEL_UTF8 = (
    r"[A-Za-z0-9\u0080-\U0010ffff](?:[A-Za-z0-9\-\u0080-\U0010ffff]*[A-Za-z0-9\u0080-\U0010ffff])?"
)
_LITERAL = r"\[(?:[0-9.]+|IPv6:[0-9A-Fa-f:.]+)\]"
_DOMAIN_ASCII = re.compile(rf"(?:{_LABEL_ASCII}(?:\.{_LABEL_ASCII})*|{_LITERAL})")
_DOMAIN_UTF8 = re.compile(rf"(?:{_LABEL_UTF8}(?:\.{_LABEL_UTF8})*|{_LITERAL})")
# Source routes (§4.1.2 A-d-l) are accepted and ignored, as §3.6.1 asks.
_SOURCE_ROUTE = re.compile(r"@[^:,<>]+(?:,@[^:,<>]+)*:")
# RFC 5321 §4.1.2: esmtp-keyword and esmtp-value.
_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")
_VALUE = re.compile(r"[\x21-\x3c\x3e-\x7e\u0080-\U0010ffff]+")


class PathError(SMTPError):
    """A path or parameter that breaks the RFC 5321 grammar.

    ``reply_code``: 501 syntax; 553 mailbox name not allowed; 555 parameter unknown.
    """

    def __init__(self, enhanced: str, text: str, reply_code: int = 501) -> None:
        super().__init__(Reply(reply_code, enhanced, text))


def parse_path(text: str, *, utf8: bool, null_allowed: bool, enhanced: str) -> tuple[str, str]:
    """Parse ``<path> params`` and return (address, rest-of-line).

    ``address`` is ``local@domain`` as written (quoting kept), or ``""`` for the
    null reverse-path ``<>``. ``enhanced`` is the RFC 3463 code for a bad
    address: 5.1.7 for a sender, 5.1.3 for a recipient.
    """
    if not text.startswith("<"):
        raise PathError(enhanced, "Address must be enclosed in <>")
    end = _find_path_end(text)
    if end < 0:
        raise PathError(enhanced, "Unterminated address")
    inner, rest = text[1:end], text[end + 1 :]
    if rest and not rest.startswith(" "):
        raise PathError("5.5.4", "Syntax error after address")
    if len(inner.encode("utf-8")) > MAX_PATH - 2:
        raise PathError(enhanced, "Path too long")
    if has_control(inner):
        raise PathError(enhanced, _CONTROL_IN_ADDRESS)
    if not inner:
        if not null_allowed:
            raise PathError(enhanced, "Null address not allowed here")
        return "", rest.strip(" ")
    route = _SOURCE_ROUTE.match(inner)
    if route:
        inner = inner[route.end() :]
    return validate_mailbox(inner, utf8=utf8, enhanced=enhanced), rest.strip(" ")


def _find_path_end(text: str) -> int:
    """Index of the ``>`` closing the path, skipping quoted strings."""
    quoted = False
    i = 1
    while i < len(text):
        c = text[i]
        if quoted and c == "\\":
            i += 2
            continue
        if c == '"':
            quoted = not quoted
        elif c == ">" and not quoted:
            return i
        i += 1
    return -1


def validate_mailbox(mailbox: str, *, utf8: bool, enhanced: str) -> str:
    """Check ``local@domain`` against RFC 5321 §4.1.2 (and RFC 6531 with ``utf8``)."""
    # RFC 5321 §4.1.2 allows no control character in a path, and RFC 6531's
    # UTF-8 must not bring in C1 controls or U+2028 either: an address ends
    # up in Return-Path, Received and log lines (see mailstead.peertext).
    if has_control(mailbox):
        raise PathError(enhanced, _CONTROL_IN_ADDRESS)
    local, at, domain = mailbox.rpartition("@")
    if not at:
        raise PathError(enhanced, "Address must have a domain")
    if not mailbox.isascii() and not utf8:
        # RFC 6531 §3.4: non-ASCII needs the SMTPUTF8 parameter.
        raise PathError("5.6.7", "Must declare SMTPUTF8 to use a non-ASCII address", 553)
    local_re, domain_re = (_LOCAL_UTF8, _DOMAIN_UTF8) if utf8 else (_LOCAL_ASCII, _DOMAIN_ASCII)
    if not local_re.fullmatch(local):
        raise PathError(enhanced, "Bad local part syntax")
    if len(local.encode("utf-8")) > MAX_LOCAL_PART:
        raise PathError(enhanced, "Local part too long")
    if not domain_re.fullmatch(domain) or len(domain.encode("utf-8")) > MAX_DOMAIN:
        raise PathError(enhanced, "Bad domain syntax")
    return mailbox


# RFC 5321 §4.1.2 Let-dig / Ldh-str, plus the underscore Postfix tolerates.
_HELO_LABEL_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
_IPV6_CHARS = frozenset("0123456789ABCDEFabcdef:.")


def is_helo_name(text: str) -> bool:
    """Whether ``text`` is what EHLO and HELO take: a Domain or an address literal.

    RFC 5321 §4.1.1.1 (``ehlo = "EHLO" SP ( Domain / address-literal )``) and
    §4.1.3; RFC 6531 §3.7.1: ASCII only (A-labels), even from an SMTPUTF8
    client. Leniencies, as Postfix's (docs/quirks.md): one trailing dot, an
    underscore in a label, and an address literal after HELO too.
    """
    if not text.isascii() or len(text) > MAX_DOMAIN:
        return False
    if text.startswith("["):
        return _is_address_literal(text)
    if text.endswith(".") and not text.endswith(".."):
        text = text[:-1]
    return all(_is_helo_label(label) for label in text.split("."))


def _is_helo_label(label: str) -> bool:
    # RFC 1035 §2.3.4: 63 octets a label; RFC 5321 §4.1.2: no hyphen at either end.
    return (
        0 < len(label) <= 63
        and label[0] != "-"
        and label[-1] != "-"
        and set(label) <= _HELO_LABEL_CHARS
    )


def _is_address_literal(text: str) -> bool:
    """``[IPv4]`` or ``[IPv6:...]`` (RFC 5321 §4.1.3); no other tag is registered."""
    if len(text) < 3 or not text.endswith("]"):
        return False
    inner = text[1:-1]
    if inner[:5].upper() == "IPV6:":
        # Checked by hand first: ipaddress also takes a "%scope" of any text.
        address = inner[5:]
        if not address or not set(address) <= _IPV6_CHARS:
            return False
        try:
            ipaddress.IPv6Address(address)
        except ValueError:
            return False
        return True
    # IPv4-address-literal = Snum 3("." Snum), Snum 1*3DIGIT up to 255.
    parts = inner.split(".")
    return len(parts) == 4 and all(p.isdigit() and len(p) <= 3 and int(p) <= 255 for p in parts)


def parse_params(text: str) -> dict[str, str | None]:
    """ESMTP ``keyword[=value]`` parameters, keywords upper-cased (§4.1.2)."""
    params: dict[str, str | None] = {}
    # RFC 5321 §4.1.2: parameters are separated by SP; str.split() would also
    # split at CR, VT, FF, U+0085 … and so let them through unseen.
    for item in filter(None, text.split(" ")):
        key, eq, value = item.partition("=")
        if not _KEYWORD.fullmatch(key) or (eq and not _VALUE.fullmatch(value)):
            raise PathError("5.5.4", "Bad parameter syntax")
        if has_control(value):  # _VALUE takes any non-ASCII, C1 controls too
            raise PathError("5.5.4", "Bad parameter syntax")
        key = key.upper()
        if key in params:
            raise PathError("5.5.4", f"Duplicate parameter {key}")
        params[key] = value if eq else None
    return params


_XTEXT_HEX = re.compile(r"\+([0-9A-F]{2})")


def decode_xtext(value: str) -> str:
    """Undo RFC 3461 §4 xtext (``+XX`` hex escapes); raise unless it is xtext.

    RFC 3461 §4: xchar is "!" to "~" but "+" and "=", and a hexchar stands
    for one of those or a space. §4.2 and §4.4: the decoded ORCPT and ENVID
    are printable US-ASCII, since they end up in DSN header fields; an
    encoded CR LF, NUL or non-ASCII octet is refused, not cleaned.
    """
    if "+" in _XTEXT_HEX.sub("", value):
        raise PathError("5.5.4", "Bad xtext encoding")
    if "=" in value or not all("!" <= c <= "~" for c in value):
        raise PathError("5.5.4", "Bad xtext encoding")
    decoded = _XTEXT_HEX.sub(lambda m: chr(int(m.group(1), 16)), value)
    if not all(" " <= c <= "~" for c in decoded):
        raise PathError("5.5.4", "Bad xtext encoding")
    return decoded
