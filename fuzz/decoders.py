"""Fuzz target: the content decoders behind BINARY, SEARCH, AUTH, mailbox names and DATA.

Owns the decoding Mailstead does itself: base64 and quoted-printable bodies
(``MimePart.decoded``, RFC 3516 BINARY), RFC 2047 encoded words and charsets
and the MIME walk of SEARCH (``search_match.decode_header_value``,
``decode_bytes``, ``decode_message``), SASL base64 responses
(``sasl.decode_response``), modified UTF-7 mailbox names (``utf7``) and
dot-stuffing (``smtp.dotstuff``). Oracles: only the documented errors
(``UnknownCTE``, ``SASLError``, ``ValueError`` from ``decode_mutf7``), and
each decoder undoes its encoder exactly.
"""

from __future__ import annotations

import base64
import binascii
import contextlib

from fuzz._harness import fuzz, instrumented, text

with instrumented(__name__):
    from mailstead.proto.imap import search_match, utf7
    from mailstead.proto.imap.message import ParsedMessage, UnknownCTE
    from mailstead.proto.sasl import SASLError, decode_response, encode_challenge
    from mailstead.proto.smtp import dotstuff


def _body(cte: bytes, body: bytes) -> bytes:
    """BINARY[1] of a one-part message with transfer encoding ``cte``."""
    header = b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: "
    msg = ParsedMessage(header + cte + b"\r\n\r\n" + body)
    decoded = msg.binary((1,))
    assert decoded is not None
    return decoded


def _transfer_encodings(data: bytes) -> None:
    for cte in (b"base64", b"quoted-printable", b"BASE64 (x)", b"7bit"):
        _body(cte, data)  # arbitrary bodies: decoded somehow, never an exception
    wrapped = base64.encodebytes(data).replace(b"\n", b"\r\n")
    assert _body(b"base64", wrapped) == data, "base64 does not round-trip"
    # b2a_qp breaks lines with CRLF when the data has one, else LF: CRLF either way.
    qp = binascii.b2a_qp(data, istext=False).replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    assert _body(b"quoted-printable", qp) == data, "quoted-printable does not round-trip"
    first, _, rest = data.partition(b"\n")
    with contextlib.suppress(UnknownCTE):
        _body(first.strip(b"\r"), rest)


def _search_decoding(data: bytes) -> None:
    value = data.replace(b"\r", b"").replace(b"\n", b"")
    assert isinstance(search_match.decode_header_value(value), str)
    charset, _, octets = data.partition(b"\n")
    assert isinstance(search_match.decode_bytes(octets, text(charset)), str)
    header, body = search_match.decode_message(data)
    assert isinstance(header, str) and isinstance(body, str)
    word = b"=?utf-8?b?" + base64.b64encode(data) + b"?="
    decoded = search_match.decode_header_value(word)
    with contextlib.suppress(UnicodeDecodeError):
        assert decoded == data.decode("utf-8"), "encoded word does not round-trip"


def _sasl(data: bytes) -> None:
    with contextlib.suppress(SASLError):
        decode_response(data)
    assert decode_response(encode_challenge(data)) == data, "SASL base64 does not round-trip"


def _mailbox_names(data: bytes) -> None:
    name = text(data)
    try:
        decoded = utf7.decode_mutf7(name)
    except ValueError:
        pass
    else:
        # RFC 3501 §5.1.3 has one spelling per name, and decoding is strict.
        assert utf7.encode_mutf7(decoded) == name, f"{name!r} is not canonical"
    try:
        encoded = utf7.encode_mutf7(name)
    except ValueError:
        return  # a lone surrogate
    assert utf7.decode_mutf7(encoded) == name, f"{name!r} does not round-trip"


def _dot_stuffing(data: bytes) -> None:
    """What the client sends after 354 is read back by the server as the same content."""
    wire = b"\r\n" + dotstuff.stuff(data)  # the server puts the CRLF of DATA in front
    end = wire.find(dotstuff.DATA_END)
    assert end == len(wire) - len(dotstuff.DATA_END), "the data ends early: smuggling"
    normalized = dotstuff.received_line_ends(wire[: end + 2])
    assert normalized is not None, "stuffed content holds a bare CR"
    assert dotstuff.unstuff(normalized[2:]) == dotstuff.canonical(data)
    normalized = dotstuff.received_line_ends(data)
    if normalized is not None:
        assert normalized.count(b"\r") == normalized.count(b"\n") == normalized.count(b"\r\n")


def test_one_input(data: bytes) -> None:
    """Every decoder on ``data``, and every encoder/decoder pair round-tripping it."""
    _transfer_encodings(data)
    _search_decoding(data)
    _sasl(data)
    _mailbox_names(data)
    _dot_stuffing(data)


def main() -> None:
    """``python -m fuzz.decoders [libFuzzer flags] [corpus dirs]``."""
    fuzz(test_one_input)


if __name__ == "__main__":
    main()
