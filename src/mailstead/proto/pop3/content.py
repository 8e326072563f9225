"""Message content on the wire in a POP3 multi-line response (RFC 1939 §3).

Stored messages usually have bare LF line ends; POP3 sends CRLF, stuffs a
"." in front of every line that starts with one, and ends with ``.CRLF``.
Large messages are converted piece by piece so no second full copy exists.
"""

from __future__ import annotations

from collections.abc import Iterator

# Converted and sent in pieces of about this many octets of stored message.
PIECE = 64 * 1024


def head(message: bytes, body_lines: int) -> bytes:
    """The header, the blank line after it and the first ``body_lines`` body
    lines of ``message`` (RFC 1939 §7, TOP); all of it when it is shorter."""
    lf2, crlf2 = message.find(b"\n\n"), message.find(b"\n\r\n")
    ends = [(i, n) for i, n in ((lf2, 2), (crlf2, 3)) if i >= 0]
    if not ends:
        return message  # no body: the whole message is header
    at, length = min(ends)
    pos = at + length
    for _ in range(body_lines):
        nl = message.find(b"\n", pos)
        if nl < 0:
            return message
        pos = nl + 1
    return message[:pos]


def crlf_size(message: bytes) -> int:
    """The size of ``message`` as POP3 sends it: CRLF line ends, a final CRLF
    added when missing (what LIST and STAT count, RFC 1939 §5)."""
    size = len(message) + message.count(b"\n") - message.count(b"\r\n")
    if message and not message.endswith(b"\n"):
        size += 2
    return size


def _convert(piece: bytes) -> bytes:
    # ``piece`` starts at the start of a line; CR LF pairs are never split.
    if piece.count(b"\n") != piece.count(b"\r\n"):
        piece = piece.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    # RFC 1939 §3: byte-stuff a line that starts with the termination octet.
    if piece.startswith(b"."):
        piece = b"." + piece
    return piece.replace(b"\n.", b"\n..")


def stuffed(message: bytes, piece: int = PIECE) -> Iterator[bytes]:
    """``message`` as the lines of a multi-line response, terminator included."""
    start, n = 0, len(message)
    while start < n:
        stop = min(start + piece, n)
        if stop < n:
            cut = message.rfind(b"\n", start, stop)
            if cut < 0:
                cut = message.find(b"\n", stop)
            stop = n if cut < 0 else cut + 1
        yield _convert(message[start:stop])
        start = stop
    # A last line without a line end gets one before the terminator.
    yield b".\r\n" if not message or message.endswith(b"\n") else b"\r\n.\r\n"
