"""Canonical forms of mail addresses, for matching and for file names.

The SMTP parser (``proto/smtp/address.py``) decides what is syntactically an
address; this module decides when two addresses name the same mailbox:

* the domain is case-insensitive (RFC 5321 §2.4) and an IDN is compared in
  its ASCII form (RFC 5890 A-labels), so ``Bücher.Example`` and
  ``xn--bcher-kva.example`` are one domain;
* the local part is compared after removing RFC 5321 quoting that changes
  nothing (``"alice"`` is ``alice``), in Unicode NFC (RFC 6531 §3.2) and
  case-folded: RFC 5321 §2.4 lets the receiving host decide, and like Postfix
  and Dovecot we treat ``Alice`` and ``alice`` as one user.
"""

from __future__ import annotations

import ipaddress
import unicodedata


class AddressError(ValueError):
    """An address or domain that cannot be put in canonical form."""


def normalize_domain(domain: str) -> str:
    """Lower-case ASCII form of ``domain``; IDN labels become ``xn--`` A-labels."""
    name = domain.strip().rstrip(".")
    if not name or len(name) > 253:
        raise AddressError(f"invalid domain {domain!r}")
    if name.startswith("[") and name.endswith("]"):
        # Address literal, RFC 5321 §4.1.3: checked as an IP address, so a
        # literal can never carry a path such as "[../x]".
        literal = name[1:-1]
        is_v6 = literal[:5].lower() == "ipv6:"
        try:
            ip = ipaddress.IPv6Address(literal[5:]) if is_v6 else ipaddress.IPv4Address(literal)
        except ValueError as exc:
            raise AddressError(f"invalid address literal {domain!r}") from exc
        return f"[IPv6:{ip}]" if is_v6 else f"[{ip}]"
    labels = []
    for label in name.split("."):
        if label.isascii():
            ascii_label = label.lower()
        else:
            try:
                ascii_label = unicodedata.normalize("NFC", label).encode("idna").decode("ascii")
            except UnicodeError as exc:
                raise AddressError(f"invalid domain {domain!r}") from exc
            ascii_label = ascii_label.lower()
        if not ascii_label or len(ascii_label) > 63:
            raise AddressError(f"invalid domain {domain!r}")
        # RFC 1123 §2.1: letters, digits and inner hyphens.
        if not all(c.isalnum() or c == "-" for c in ascii_label) or "-" in (
            ascii_label[0],
            ascii_label[-1],
        ):
            raise AddressError(f"invalid domain {domain!r}")
        labels.append(ascii_label)
    return ".".join(labels)


def unquote_local_part(local: str) -> str:
    """The content of an RFC 5321 quoted-string local part, escapes undone."""
    if len(local) >= 2 and local[0] == '"' and local[-1] == '"':
        out = []
        chars = iter(local[1:-1])
        for c in chars:
            out.append(next(chars, "") if c == "\\" else c)
        return "".join(out)
    return local


def canonical_local_part(local: str) -> str:
    """The matching key of a local part: unquoted, NFC, case-folded."""
    # Case folding can undo NFC (e.g. for some Greek letters), so normalise again.
    folded = unicodedata.normalize("NFC", unquote_local_part(local)).casefold()
    return unicodedata.normalize("NFC", folded)


def split_address(address: str) -> tuple[str, str]:
    """Split at the last ``@``: a quoted local part may itself contain ``@``."""
    local, at, domain = address.rpartition("@")
    if not at or not domain:
        raise AddressError(f"not an address: {address!r}")
    return local, domain


def canonical_address(address: str) -> str:
    """``local@domain`` in the form used as a key in the directory and on disk."""
    local, domain = split_address(address)
    if not local:
        raise AddressError(f"not an address: {address!r}")
    return f"{canonical_local_part(local)}@{normalize_domain(domain)}"


def is_safe_local_part(local: str) -> bool:
    """True if ``local`` (canonical) can name one directory below the domain.

    Refuses what could leave the mail root or confuse a shell or Maildir++:
    separators, ``.``/``..``, a leading dot, control characters, NUL.
    """
    if not local or len(local.encode("utf-8")) > 64:
        return False
    if local.startswith(".") or "/" in local or "\\" in local:
        return False
    return all(unicodedata.category(c)[0] != "C" for c in local)


# RFC 5322 §3.2.3 atext, less the characters a shell gives meaning to
# (! # $ & ' * / ? ^ ` { | } ~ and, outside atext, everything else) and "%",
# which old relays still treat as a routing operator (user%host@relay).
_SAFE_ASCII = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-=_.")
# RFC 5322 §3.2.3 atext and RFC 6531 §3.3 UTF8-non-ascii: what a remote
# (unquoted) local part may contain.
_ATEXT = frozenset("!#$%&'*+-/=?^_`{|}~.") | frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
)


def is_valid_mailbox_local_part(local: str) -> bool:
    """True if the canonical ``local`` may name a user or alias here.

    Stricter than RFC 5322: ASCII letters, digits and ``+ - = _ .``,
    plus non-ASCII letters, digits and combining marks (RFC 6531); no
    leading, trailing or doubled dot (RFC 5322 §3.2.3 dot-atom). Everything
    else — ``/``, NUL, whitespace, shell metacharacters — is refused, because
    the local part becomes a directory name (the mail paths of docs/config.md) and may
    reach scripts and logs.
    """
    if not is_safe_local_part(local):
        return False
    if local.endswith(".") or ".." in local:
        return False
    for c in local:
        if c in _SAFE_ASCII:
            continue
        if c.isascii() or unicodedata.category(c)[0] not in "LNM":
            return False
    return unicodedata.category(local[0])[0] != "M"


def is_valid_remote_local_part(local: str) -> bool:
    # RFC 5321 §4.1.2 Local-part = Dot-string / Quoted-string, with RFC 6531
    # UTF-8; §4.5.3.1.1: at most 64 octets.
    if not local or len(local.encode("utf-8")) > 64 or not local.isprintable():
        return False
    if len(local) >= 2 and local[0] == '"' and local[-1] == '"':
        # RFC 5321 §4.1.2 Quoted-string: a bare '"' or a trailing '\' ends it early.
        escaped = False
        for c in local[1:-1]:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                return False
        return not escaped
    if local.startswith(".") or local.endswith(".") or ".." in local:
        return False
    return all(c in _ATEXT or not c.isascii() for c in local)
