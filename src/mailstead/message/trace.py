"""Trace header fields (RFC 5321 §4.4): Received, Return-Path, Delivered-To.

Every value here but our own host name came from a peer — the EHLO name,
the envelope addresses — so each one passes :func:`header_text` on its way
in: the protocol already refused control characters, and this makes sure no
later path (a queue file written by an older version, a new caller) can put
a CR, LF or NUL into a stored header. Lines end in LF, as the mail store
keeps them; the queue turns them into CRLF.
"""

from __future__ import annotations

from datetime import datetime
from email.utils import format_datetime

from mailstead.peertext import header_text

__all__ = ["delivered_to", "final_delivery", "received", "return_path"]

# RFC 5321 §4.5.3.1.2: a domain is at most 255 octets.
_MAX_HELO = 255


def return_path(sender: str) -> bytes:
    """``Return-Path: <sender>`` (RFC 5321 §4.4), added by the final delivery."""
    return f"Return-Path: <{header_text(sender)}>\n".encode()


def delivered_to(mailbox: str) -> bytes:
    """``Delivered-To: mailbox`` (Postfix/qmail practice): loops become visible."""
    return f"Delivered-To: {header_text(mailbox)}\n".encode()


def final_delivery(sender: str, mailbox: str) -> bytes:
    """What the delivery into ``mailbox`` adds: Return-Path, then Delivered-To.

    RFC 5321 §4.4: the final delivery adds Return-Path; Delivered-To
    (Postfix/qmail practice) names the mailbox and lets loops be seen. The
    receiver and the outbound MTA's local delivery both use this.
    """
    return return_path(sender) + delivered_to(mailbox)


def received(
    *,
    helo: str,
    ip: str,
    by: str,
    protocol: str,
    queue_id: str,
    recipient: str | None,
    stamp: datetime,
) -> bytes:
    """The Received field a server adds on accepting a message (RFC 5321 §4.4).

    ``helo`` is the name the client gave in EHLO/HELO; parentheses are
    dropped from it, so it cannot open or close the TCP-info comment that
    follows (RFC 5322 §3.2.2).
    """
    name = header_text(helo).replace("(", "").replace(")", "")[:_MAX_HELO]
    for_clause = f"\n\tfor <{header_text(recipient)}>" if recipient else ""
    return (
        f"Received: from {name} ([{header_text(ip)}])\n"
        f"\tby {header_text(by)} (Mailstead) with {protocol} id {header_text(queue_id)}"
        f"{for_clause};\n\t{format_datetime(stamp)}\n"
    ).encode()
