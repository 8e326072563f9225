"""Fuzz target: SMTP paths and ESMTP parameters, and the canonical form of an address.

Owns :mod:`mailstead.proto.smtp.address` (``parse_path``, ``validate_mailbox``,
``parse_params``, ``decode_xtext``), the parameter meanings in
:mod:`mailstead.proto.smtp.params`, and :mod:`mailstead.addresses`
(``canonical_address``, ``normalize_domain``). ``PathError`` and
``AddressError`` are the documented refusals; anything else raised, or an
accepted path that breaks the RFC 5321 limits, is a defect.
"""

from __future__ import annotations

import unicodedata

from fuzz._harness import fuzz, instrumented, text

with instrumented(__name__):
    from mailstead.addresses import (
        AddressError,
        canonical_address,
        canonical_local_part,
        is_safe_local_part,
        normalize_domain,
        split_address,
    )
    from mailstead.proto.smtp.address import (
        MAX_PATH,
        PathError,
        decode_xtext,
        parse_params,
        parse_path,
        validate_mailbox,
    )
    from mailstead.proto.smtp.params import mail_params, rcpt_params


def _xtext(value: str) -> str:
    """RFC 3461 §4 xtext of printable ASCII: "+", "=" and non-printables as ``+XX``."""
    return "".join(c if "!" <= c <= "~" and c not in "+=" else f"+{ord(c):02X}" for c in value)


def _check_canonical(address: str) -> None:
    """``canonical_address`` refuses only with AddressError, and its domain is a fixpoint."""
    try:
        key = canonical_address(address)
    except AddressError:
        return
    local, domain = split_address(key)
    assert normalize_domain(domain) == domain, f"domain not canonical: {key!r}"
    if '"' not in address and "\\" not in address:
        # Without quoting, the key is NFC + case folding, which must be stable.
        assert canonical_local_part(local) == local, f"local part not canonical: {key!r}"
        assert unicodedata.is_normalized("NFC", local), key
    is_safe_local_part(local)


def _check_path(address: str, rest: str, *, utf8: bool, null_allowed: bool) -> None:
    if not address:
        assert null_allowed, "null path accepted where it is not allowed"
        return
    assert len(address.encode("utf-8")) <= MAX_PATH - 2, f"path too long: {address!r}"
    assert utf8 or address.isascii(), f"non-ASCII path without SMTPUTF8: {address!r}"
    assert rest == rest.strip(" "), f"unstripped rest {rest!r}"
    again = validate_mailbox(address, utf8=utf8, enhanced="5.1.3")
    assert again == address, (address, again)
    _check_canonical(address)


def _check_params(rest: str, sender: str) -> None:
    try:
        params = parse_params(rest)
    except PathError:
        return
    for key in params:
        assert key == key.upper() and key.isascii(), f"keyword {key!r}"
    try:
        mail = mail_params(params, sender)
        if mail.envid is not None:
            assert mail.envid.isprintable() or not mail.envid.isascii(), mail
        assert mail.size is None or mail.size >= 0, mail
    except PathError:
        pass
    try:
        rcpt = rcpt_params(params)
        assert rcpt.orcpt is None or ("\r" not in rcpt.orcpt and "\n" not in rcpt.orcpt), rcpt
    except PathError:
        pass


def test_one_input(data: bytes) -> None:
    """Every syntax function on ``data`` as a line of the SMTP dialogue would carry it."""
    line = text(data)
    for utf8 in (False, True):
        for null_allowed in (False, True):
            try:
                address, rest = parse_path(
                    line, utf8=utf8, null_allowed=null_allowed, enhanced="5.1.7"
                )
            except PathError:
                continue
            _check_path(address, rest, utf8=utf8, null_allowed=null_allowed)
            _check_params(rest, address)
        try:
            validate_mailbox(line, utf8=utf8, enhanced="5.1.3")
        except PathError:
            pass
        else:
            _check_canonical(line)
    _check_params(line, "a@example.test")
    try:
        decoded = decode_xtext(line)
    except PathError:
        pass
    else:
        assert not any(c < " " or c == "\x7f" for c in decoded), f"control in {decoded!r}"
    printable = "".join(c for c in line if " " <= c <= "~")
    assert decode_xtext(_xtext(printable)) == printable, printable
    _check_canonical(line)
    try:
        domain = normalize_domain(line)
    except AddressError:
        pass
    else:
        assert normalize_domain(domain) == domain, (line, domain)


def main() -> None:
    """``python -m fuzz.smtp_address [libFuzzer flags] [corpus dirs]``."""
    fuzz(test_one_input)


if __name__ == "__main__":
    main()
