"""Message content on the wire after DATA: line ends and dot-stuffing (RFC 5321 §4.5.2).

The client calls :func:`stuff` on what it sends after 354; the server calls
:func:`received_line_ends`, then :func:`unstuff`, on what it read before
``<CRLF>.<CRLF>``. BDAT (RFC 3030)
sends :func:`canonical` content as it is, without stuffing.
"""

from __future__ import annotations

import re

# RFC 5321 §4.1.1.4: the only end of the mail data.
DATA_END = b"\r\n.\r\n"

_LINE_END = re.compile(rb"\r\n|\r|\n")


def canonical(content: bytes) -> bytes:
    """``content`` with CRLF line ends throughout and, unless empty, a final CRLF.

    RFC 5321 §2.3.8: CR and LF only travel as a pair. A bare CR or LF is
    made a CRLF here rather than sent: a peer that took it for a line end
    would read a different message than one that did not (SMTP smuggling
    lives in that gap). RFC 5321 §4.1.1.4 wants the content to end with
    CRLF before the terminating dot, so one is added when missing.
    """
    crlf = content.count(b"\r\n")
    if content.count(b"\r") != crlf or content.count(b"\n") != crlf:
        content = _LINE_END.sub(b"\r\n", content)
    if content and not content.endswith(b"\r\n"):
        content += b"\r\n"
    return content


def received_line_ends(data: bytes) -> bytes | None:
    """CRLF line ends throughout, or None if a bare CR makes the text ambiguous.

    RFC 5321 §2.3.8: CR and LF only travel as a pair. Bare LFs are common
    in practice (Python's ``smtplib.sendmail`` of ``as_bytes()`` sends
    them), so, as Postfix's ``smtpd_forbid_bare_newline = normalize`` does,
    a bare LF ends a line of content but never the data: only CRLF.CRLF
    does, which is what defeats SMTP smuggling (one message, never two).
    A bare CR has no honest use and is what smuggling against CR-lenient
    peers relies on, so such a message is refused.
    """
    crlf = data.count(b"\r\n")
    if data.count(b"\r") != crlf:
        return None
    if data.count(b"\n") != crlf:
        data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return data


def stuff(content: bytes) -> bytes:
    """What the client sends after 354: every line that starts with "." gets
    another in front (RFC 5321 §4.5.2), then the terminating ``.CRLF``.

    The bytes sent before this ended with DATA's CRLF, so the first line of
    the content is at the start of a line too.
    """
    body = canonical(content)
    if body.startswith(b"."):
        body = b"." + body
    return body.replace(b"\r\n.", b"\r\n..") + b".\r\n"


def unstuff(data: bytes) -> bytes:
    """Undo :func:`stuff` on the lines read before the terminator (RFC 5321 §4.5.2).

    ``data`` starts at the start of a line and has CRLF line ends; the first
    "." of every line that has one is dropped.
    """
    if data.startswith(b"."):
        data = data[1:]
    return data.replace(b"\r\n.", b"\r\n")
