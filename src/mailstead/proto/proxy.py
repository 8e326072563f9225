"""The PROXY protocol header a load balancer puts before a connection's first byte.

HAProxy (``send-proxy`` / ``send-proxy-v2``), and most TCP balancers after
it, tell the server who the client is by sending one header before
anything else on the connection: a text line in version 1, a binary block
in version 2. The specification is HAProxy's ``doc/proxy-protocol.txt``
("The PROXY protocol, Versions 1 & 2", 2020/03/05); its sections are cited
beside the code that enforces them.

:func:`parse_proxy_header` is sans-IO: it takes the bytes received so far
and says whether they hold a whole header yet (the session reads exactly
that many bytes off the socket, §9, so what follows it is left for TLS or
the mail protocol). It never asks for a byte past the header:
``None`` means every byte given is part of a header still incomplete.
Input is hostile even from a trusted balancer's network: the v1 line is at
most 107 octets (§2.1), the v2 block at most 16 octets plus
``max_v2_payload`` (limits.ProxyProtocolLimits), and anything that does not
match exactly raises :class:`ProxyHeaderError`, after which the connection
must be dropped (§2.1: "Any sequence which does not exactly match the
protocol must be discarded and cause the receiver to abort the connection").

Whether a header is expected at all is configuration, never guessed from
the bytes (§5): the listener asks for one from the listed networks only.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from mailstead.proto.errors import RemoteProtocolError

__all__ = [
    "V1_MAX_LINE",
    "V2_FIXED",
    "V2_SIGNATURE",
    "Endpoint",
    "ProxyHeader",
    "ProxyHeaderError",
    "header_room",
    "parse_proxy_header",
]

# §2.1: "PROXY UNKNOWN ffff:…:ffff ffff:…:ffff 65535 65535\r\n", the worst case.
V1_MAX_LINE = 107
_V1_PREFIX = b"PROXY "
# §2.2: the 12-octet signature, then version/command, family/protocol, length.
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_FIXED = 16

# §2.2, 13th octet: high nibble the version (must be 2), low nibble the command.
_V2_VERSION = 0x20
_LOCAL = 0x0
_PROXY = 0x1
# §2.2, 14th octet: address family (high nibble) and transport (low nibble).
_AF_UNSPEC, _AF_INET, _AF_INET6, _AF_UNIX = 0x0, 0x1, 0x2, 0x3
_UNSPEC, _STREAM, _DGRAM = 0x0, 0x1, 0x2
# §2.2: address block sizes of TCP over IPv4 and IPv6 (addresses, then ports).
_INET_BLOCK = {_AF_INET: 12, _AF_INET6: 36}
# §2.2: a TLV is a type octet and a two-octet big-endian length, then the value.
_TLV_HEAD = 3


class ProxyHeaderError(RemoteProtocolError):
    """The bytes are not a valid PROXY header: the connection is dropped, and ``text`` logged."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One end of the client's original connection: an address and a TCP port."""

    #: Canonical text form (``ipaddress``); an IPv4-mapped IPv6 address is
    #: given as the IPv4 address, so it is counted in its own /24, not in
    #: one /64 with every IPv4 client.
    address: str
    port: int


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """What one PROXY header said about the connection it came on."""

    #: 1 (text line) or 2 (binary block).
    version: int
    #: The client, or None when the header says to use the connection's own
    #: addresses: v2 LOCAL (the balancer's health checks, §2.2), v1
    #: UNKNOWN (§2.1), v2 UNSPEC, UDP or UNIX families (§2.2's fallback).
    source: Endpoint | None
    #: Where the client connected (the balancer's front), None as ``source``.
    destination: Endpoint | None
    #: Octets of the header: the session reads exactly this many.
    length: int


def header_room(max_v2_payload: int) -> int:
    """The most octets any acceptable header can take: what a reader peeks at once."""
    return max(V1_MAX_LINE, V2_FIXED + max_v2_payload)


def parse_proxy_header(data: bytes, *, max_v2_payload: int) -> ProxyHeader | None:
    """The header at the start of ``data``; None while it is incomplete.

    ``data`` is everything received on the connection so far (it may go on
    past the header: the header's ``length`` says where it ends). None means
    more octets are needed and all of ``data`` belongs to the header, so a
    reader may consume it. Raises :class:`ProxyHeaderError` as soon as the
    bytes cannot begin a valid header.
    """
    if data[:1] == V2_SIGNATURE[:1]:
        return _parse_v2(data, max_v2_payload)
    return _parse_v1(data)


# -- version 2: the binary block (§2.2) ------------------------------------------------


def _parse_v2(data: bytes, max_payload: int) -> ProxyHeader | None:
    given = data[: len(V2_SIGNATURE)]
    if not V2_SIGNATURE.startswith(given):
        raise ProxyHeaderError("not a PROXY header (bad v2 signature)")
    if len(data) < V2_FIXED:
        return None
    version_command, family_protocol, length = struct.unpack_from("!BBH", data, 12)
    # §2.2: "the receiver must only accept this value" (version 2).
    if version_command & 0xF0 != _V2_VERSION:
        raise ProxyHeaderError(f"PROXY v2: version {version_command >> 4} is not 2")
    command = version_command & 0x0F
    # §2.2: "Receivers must drop connections presenting unexpected values here."
    if command not in (_LOCAL, _PROXY):
        raise ProxyHeaderError(f"PROXY v2: unknown command {command:#x}")
    family, transport = family_protocol >> 4, family_protocol & 0x0F
    # §2.2: other families and protocols "must be rejected as invalid by receivers".
    if family > _AF_UNIX or transport > _DGRAM:
        raise ProxyHeaderError(f"PROXY v2: unknown family/protocol {family_protocol:#04x}")
    if length > max_payload:
        raise ProxyHeaderError(f"PROXY v2: {length} octets of addresses and TLVs, over the limit")
    total = V2_FIXED + length
    # §2.2: "The receiver must not start to parse an address before the
    # whole address block is received."
    if len(data) < total:
        return None
    payload = data[V2_FIXED:total]
    # §2.2 LOCAL: "must use the real connection endpoints and discard the
    # protocol block including the family which is ignored." The length is
    # still honoured ("must not assume zero is presented for LOCAL").
    block = _INET_BLOCK.get(family) if transport == _STREAM else None
    if command == _LOCAL or block is None:
        # UNSPEC, UDP and UNIX: §2.2 lets a receiver that does not support
        # them fall back to the real endpoints, ignoring the addresses.
        return ProxyHeader(2, None, None, total)
    if length < block:
        raise ProxyHeaderError(f"PROXY v2: {length} octets, too short for the addresses")
    size = 4 if family == _AF_INET else 16
    source = _endpoint(payload[:size], payload[2 * size : 2 * size + 2])
    destination = _endpoint(payload[size : 2 * size], payload[2 * size + 2 : 2 * size + 4])
    _check_tlvs(payload[block:])
    return ProxyHeader(2, source, destination, total)


def _endpoint(packed: bytes, port: bytes) -> Endpoint:
    address = ipaddress.ip_address(packed)
    return Endpoint(_unmapped(address), int.from_bytes(port, "big"))


def _check_tlvs(tlvs: bytes) -> None:
    """Walk the TLVs after the addresses (§2.2) and ignore them: each must fit.

    None is interpreted: ALPN, authority, unique ID and SSL details are not
    used, and PP2_TYPE_CRC32C is not verified (§2.2.3 binds only receivers
    that support it). A TLV running past the block, or a tail too short to
    be one, is garbage, as HAProxy's own receiver judges it.
    """
    at = 0
    while at < len(tlvs):
        if len(tlvs) - at < _TLV_HEAD:
            raise ProxyHeaderError("PROXY v2: truncated TLV")
        (size,) = struct.unpack_from("!H", tlvs, at + 1)
        at += _TLV_HEAD + size
        if at > len(tlvs):
            raise ProxyHeaderError("PROXY v2: TLV longer than the header")


# -- version 1: the text line (§2.1) ---------------------------------------------------


def _parse_v1(data: bytes) -> ProxyHeader | None:
    given = data[: len(_V1_PREFIX)]
    if not _V1_PREFIX.startswith(given):
        raise ProxyHeaderError("not a PROXY header")
    window = data[:V1_MAX_LINE]
    end = window.find(b"\n")
    if end < 0:
        # §2.1: "If the CRLF sequence is not found in the first 107
        # characters, the receiver should declare the line invalid."
        if len(window) >= V1_MAX_LINE:
            raise ProxyHeaderError("PROXY v1 line longer than 107 octets")
        if b"\r" in window[:-1]:
            raise ProxyHeaderError("PROXY v1 line with a bare CR")
        if not _printable(window.removesuffix(b"\r")):
            raise ProxyHeaderError("PROXY v1 line with a non-ASCII or control octet")
        return None
    # §2.1: "The receiver must not tolerate a single CR or LF character to
    # end the line when a complete CRLF sequence is expected."
    if end == 0 or window[end - 1] != 0x0D or b"\r" in window[: end - 1]:
        raise ProxyHeaderError("PROXY v1 line not ended by CRLF")
    line = window[: end - 1]
    if not _printable(line):
        raise ProxyHeaderError("PROXY v1 line with a non-ASCII or control octet")
    fields = line.decode("ascii").split(" ")
    length = end + 1
    # §2.1: for UNKNOWN "the receiver must ignore anything presented before
    # the CRLF" and use the real connection's parameters.
    if fields[1] == "UNKNOWN":
        return ProxyHeader(1, None, None, length)
    if fields[1] not in ("TCP4", "TCP6"):
        raise ProxyHeaderError("PROXY v1: protocol is not TCP4, TCP6 or UNKNOWN")
    # §2.1: exactly one space between exactly these fields.
    if len(fields) != 6:
        raise ProxyHeaderError("PROXY v1: expected 'PROXY TCPn SRC DST SPORT DPORT'")
    version = 4 if fields[1] == "TCP4" else 6
    source = Endpoint(_v1_address(fields[2], version), _v1_port(fields[4]))
    destination = Endpoint(_v1_address(fields[3], version), _v1_port(fields[5]))
    return ProxyHeader(1, source, destination, length)


def _printable(text: bytes) -> bool:
    """Only US-ASCII from space to tilde (§2.1: "one line of US-ASCII text")."""
    return all(0x20 <= octet < 0x7F for octet in text)


def _v1_address(text: str, version: int) -> str:
    """§2.1: the family's canonical text form; IPv4 without heading zeroes."""
    try:
        # ipaddress refuses IPv4 octets with heading zeroes (their octal
        # reading is why §2.1 forbids them); a scope ("%eth0") is no address.
        if version == 4:
            return str(ipaddress.IPv4Address(text))
        if "%" in text:
            raise ValueError("scoped")
        return _unmapped(ipaddress.IPv6Address(text))
    except ValueError:
        raise ProxyHeaderError(f"PROXY v1: not an IPv{version} address") from None


def _v1_port(text: str) -> int:
    """§2.1: decimal in [0..65535], "Heading zeroes are not permitted"."""
    if not (text.isdigit() and len(text) <= 5) or (text[0] == "0" and text != "0"):
        raise ProxyHeaderError("PROXY v1: bad port")
    port = int(text)
    if port > 0xFFFF:
        raise ProxyHeaderError("PROXY v1: port over 65535")
    return port


def _unmapped(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """The text of ``address``; an IPv4-mapped IPv6 one (::ffff:a.b.c.d) as IPv4."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)
