"""The metrics endpoint's HTTP, sans-IO: a request head in, a status and a response out.

It answers one thing, ``GET /metrics`` (RFC 9110, RFC 9112), to a
scraper; everything else a client can send is refused with the shortest
honest status, and the connection is closed after every response, so no
request body, pipelining or keep-alive is ever read. Input is hostile: the
head is bounded in bytes and lines, and only the request line is parsed
(header fields are checked for shape, never used).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "MAX_HEAD",
    "MAX_HEADER_LINES",
    "MAX_REQUEST_LINE",
    "Refusal",
    "Request",
    "read_head",
    "response",
    "route",
]

#: The request line and every header field together, in bytes.
MAX_HEAD = 8192
#: The request line alone (RFC 9112 §3: a server decides; 8000 is suggested as a floor
#: for general servers, a scraper sends about 30).
MAX_REQUEST_LINE = 1024
#: Header field lines (Prometheus sends five or six).
MAX_HEADER_LINES = 64

# RFC 9112 §3: method SP request-target SP HTTP-version; RFC 9110 §5.6.2 token.
_REQUEST_LINE = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+) ([\x21-\x7e]+) HTTP/(\d)\.\d")
# RFC 9110 §5.1: field-name is a token, then ":" with no whitespace before it (§5.2).
_FIELD = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+:[\t\x20-\x7e\x80-\xff]*")

_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    414: "URI Too Long",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}


@dataclass(frozen=True, slots=True)
class Request:
    """A request line that parsed: the method and the path (query string dropped)."""

    method: str
    path: str


class Refusal(Exception):
    """The client broke HTTP or a bound; ``status`` is what it is told before the close."""

    def __init__(self, status: int, why: str) -> None:
        super().__init__(why)
        self.status = status


def read_head(data: bytes) -> Request | None:
    """The request in ``data`` once its head is complete; None while more is needed.

    Raises :class:`Refusal` as soon as ``data`` can no longer become an
    acceptable head: too long, too many lines, a malformed line.
    """
    end = data.find(b"\r\n\r\n")
    head = data if end < 0 else data[:end]
    lines = head.split(b"\r\n")
    if len(lines[0]) > MAX_REQUEST_LINE:
        raise Refusal(414, "request line too long")
    if end < 0:
        if len(data) > MAX_HEAD:
            raise Refusal(431, "request head too long")
        if len(lines) - 1 > MAX_HEADER_LINES:
            raise Refusal(431, "too many header fields")
        return None
    if end > MAX_HEAD:
        raise Refusal(431, "request head too long")
    if len(lines) - 1 > MAX_HEADER_LINES:
        raise Refusal(431, "too many header fields")
    matched = _REQUEST_LINE.fullmatch(lines[0])
    if matched is None:
        raise Refusal(400, "malformed request line")
    method, target, major = matched.groups()
    if major != b"1":
        raise Refusal(505, "only HTTP/1.x")
    # RFC 9112 §3.2.1: origin-form; a proxy's absolute-form is not for us.
    if not target.startswith(b"/"):
        raise Refusal(400, "request-target not in origin-form")
    for line in lines[1:]:
        # RFC 9112 §5.2: obsolete line folding (a leading space) is refused.
        if _FIELD.fullmatch(line) is None:
            raise Refusal(400, "malformed header field")
    path = target.split(b"?", 1)[0].decode("ascii")
    return Request(method.decode("ascii"), path)


def route(request: Request) -> int:
    """200 for ``GET /metrics``; 404 for another path, 405 for another method."""
    if request.path != "/metrics":
        return 404
    if request.method != "GET":
        return 405
    return 200


def response(
    status: int, body: bytes = b"", content_type: str = "text/plain; charset=utf-8"
) -> bytes:
    """The whole response, closing the connection (RFC 9112 §9.6)."""
    if not body and status != 200:
        body = f"{status} {_REASONS.get(status, 'Error')}\n".encode()
    lines = [
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        "Connection: close",
    ]
    if status == 405:
        lines.append("Allow: GET")  # RFC 9110 §15.5.6
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + body
