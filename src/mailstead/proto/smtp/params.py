"""ESMTP parameters of MAIL FROM and RCPT TO: which we take, and their values.

The grammar of ``keyword=value`` is in :mod:`address`; this module knows
what each keyword means and refuses bad values (501) and keywords we do
not offer (555), with the enhanced code to say so.
"""

from __future__ import annotations

from mailstead.proto.smtp.address import PathError, decode_xtext
from mailstead.proto.smtp.events import MailParams, RcptParams


def is_number(text: str) -> bool:
    """ASCII digits only: str.isdigit() also takes "²", which int() refuses."""
    return text.isascii() and text.isdigit() and len(text) <= 20


def mail_params(raw: dict[str, str | None], sender: str) -> MailParams:
    """The MAIL FROM parameters we understand (RFC 1870, 6152, 6531, 3461, 4954)."""
    size = body = ret = envid = None
    smtputf8 = False
    for key, value in raw.items():
        if key == "SIZE":
            if value is None or not is_number(value):
                raise PathError("5.5.4", "Bad SIZE value")
            size = int(value)
        elif key == "BODY":
            body = (value or "").upper()
            if body not in ("7BIT", "8BITMIME"):
                raise PathError("5.5.4", "BODY must be 7BIT or 8BITMIME")
        elif key == "SMTPUTF8":
            if value is not None:
                raise PathError("5.5.4", "SMTPUTF8 takes no value")
            smtputf8 = True
        elif key == "RET":
            ret = (value or "").upper()
            if ret not in ("FULL", "HDRS"):
                raise PathError("5.5.4", "RET must be FULL or HDRS")
        elif key == "ENVID":
            envid = decode_xtext(value or "")
            if not envid or len(envid) > 100:  # RFC 3461 §4.4
                raise PathError("5.5.4", "Bad ENVID value")
        elif key != "AUTH":  # RFC 4954 §5: AUTH= is optional; no client's claim is trusted
            raise PathError("5.5.4", f"Unsupported parameter {key}", 555)
    if not sender.isascii() and not smtputf8:
        raise PathError("5.6.7", "Must declare SMTPUTF8 to use a non-ASCII address", 553)
    return MailParams(size=size, body=body, smtputf8=smtputf8, ret=ret, envid=envid)


def rcpt_params(raw: dict[str, str | None]) -> RcptParams:
    """The RCPT TO parameters we understand (RFC 3461 §4.1, §4.2)."""
    notify: tuple[str, ...] | None = None
    orcpt = None
    for key, value in raw.items():
        if key == "NOTIFY" and value:
            # RFC 3461 §4.1: NEVER alone, or any of SUCCESS, FAILURE, DELAY.
            items = tuple(v.upper() for v in value.split(","))
            allowed = {"SUCCESS", "FAILURE", "DELAY"}
            if items != ("NEVER",) and not (
                set(items) <= allowed and len(set(items)) == len(items)
            ):
                raise PathError("5.5.4", "Bad NOTIFY value")
            notify = items
        elif key == "ORCPT" and value:
            # RFC 3461 §4.2: addr-type is an atom, the address xtext (US-ASCII).
            addr_type, semi, addr = value.partition(";")
            if not semi or not addr_type or not addr or not addr_type.isascii():
                raise PathError("5.5.4", "Bad ORCPT value")
            orcpt = f"{addr_type};{decode_xtext(addr)}"
        else:
            raise PathError("5.5.4", f"Unsupported parameter {key}", 555)
    return RcptParams(notify=notify, orcpt=orcpt)
