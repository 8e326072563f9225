"""The PROXY header parser, byte for byte (HAProxy's proxy-protocol.txt, v1 §2.1, v2 §2.2).

Each case is what a balancer (or someone pretending to be one) sends first
on a connection, and what the parser makes of it: the client's address and
port, the header's length (what the session takes off the socket), None for
"incomplete, every octet so far is header", or the refusal's text.
"""

from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailstead.limits import ProxyProtocolLimits
from mailstead.proto.proxy import (
    V1_MAX_LINE,
    V2_SIGNATURE,
    Endpoint,
    ProxyHeader,
    ProxyHeaderError,
    header_room,
    parse_proxy_header,
)

LIMIT = ProxyProtocolLimits().max_v2_payload


def parse(data: bytes) -> ProxyHeader | None:
    return parse_proxy_header(data, max_v2_payload=LIMIT)


def v2(command: int, family: int, payload: bytes, *, length: int | None = None) -> bytes:
    """A v2 header: signature, version 2 and ``command``, family/protocol, length, payload."""
    size = len(payload) if length is None else length
    return V2_SIGNATURE + struct.pack("!BBH", 0x20 | command, family, size) + payload


def tcp4(src: str, dst: str, sport: int, dport: int) -> bytes:
    return (
        ipaddress.IPv4Address(src).packed
        + ipaddress.IPv4Address(dst).packed
        + struct.pack("!HH", sport, dport)
    )


def tcp6(src: str, dst: str, sport: int, dport: int) -> bytes:
    return (
        ipaddress.IPv6Address(src).packed
        + ipaddress.IPv6Address(dst).packed
        + struct.pack("!HH", sport, dport)
    )


def tlv(kind: int, value: bytes) -> bytes:
    return struct.pack("!BH", kind, len(value)) + value


# -- version 1 ---------------------------------------------------------------------------

V1_GOOD = [
    # (wire, source, destination, length)
    (
        b"PROXY TCP4 192.0.2.7 10.0.0.1 56324 25\r\nEHLO x\r\n",
        Endpoint("192.0.2.7", 56324),
        Endpoint("10.0.0.1", 25),
        40,
    ),
    (
        b"PROXY TCP6 2001:db8::7 2001:db8::1 65535 993\r\n",
        Endpoint("2001:db8::7", 65535),
        Endpoint("2001:db8::1", 993),
        46,
    ),
    # The longest TCP4 addresses, ports 0 and 65535.
    (
        b"PROXY TCP4 255.255.255.255 255.255.255.255 0 65535\r\n",
        Endpoint("255.255.255.255", 0),
        Endpoint("255.255.255.255", 65535),
        52,
    ),
    # Upper-case hex, written out in full: given back in canonical form.
    (
        b"PROXY TCP6 2001:0DB8:0000:0000:0000:0000:0000:0007 ::1 1 2\r\n",
        Endpoint("2001:db8::7", 1),
        Endpoint("::1", 2),
        60,
    ),
    # An IPv4 client seen by a dual-stack balancer: counted as IPv4.
    (
        b"PROXY TCP6 ::ffff:192.0.2.9 ::ffff:10.0.0.1 4000 25\r\n",
        Endpoint("192.0.2.9", 4000),
        Endpoint("10.0.0.1", 25),
        53,
    ),
]


@pytest.mark.parametrize(("wire", "source", "destination", "length"), V1_GOOD)
def test_v1_names_the_client(
    wire: bytes, source: Endpoint, destination: Endpoint, length: int
) -> None:
    assert parse(wire) == ProxyHeader(1, source, destination, length)
    assert wire[:length].endswith(b"\r\n")


@pytest.mark.parametrize(
    "wire",
    [
        b"PROXY UNKNOWN\r\n",
        b"PROXY UNKNOWN ffff:f:f:f:f:f:f:ffff ffff:f:f:f:f:f:f:ffff 65535 65535\r\n",
        b"PROXY UNKNOWN whatever the sender put here is ignored\r\n",
    ],
)
def test_v1_unknown_means_the_connection_s_own_addresses(wire: bytes) -> None:
    # §2.1: "the receiver must ignore anything presented before the CRLF".
    assert parse(wire + b"220 after") == ProxyHeader(1, None, None, len(wire))


@pytest.mark.parametrize(
    "wire",
    [
        b"",
        b"P",
        b"PROXY",
        b"PROXY TCP4 192.0.2.7 10.0.0.1 56324 25",
        b"PROXY TCP4 192.0.2.7 10.0.0.1 56324 25\r",
        b"PROXY UNKNOWN " + b"x" * (V1_MAX_LINE - 16) + b"\r",  # 106 octets, CR last
    ],
)
def test_v1_incomplete_waits_for_the_crlf(wire: bytes) -> None:
    assert parse(wire) is None


V1_BAD = [
    # (wire, refusal)
    (b"EHLO client.example\r\n", "not a PROXY header"),
    (b"proxy TCP4 192.0.2.7 10.0.0.1 1 2\r\n", "not a PROXY header"),
    (b"PROXY\r\n", "not a PROXY header"),
    (b"PROXY TCP4 192.0.2.7 10.0.0.1 1 2\n", "not ended by CRLF"),
    (b"PROXY TCP4 192.0.2.7\r10.0.0.1 1 2\r\n", "not ended by CRLF"),
    (b"PROXY TCP4 192.0.2.7\r1", "bare CR"),  # refused before any LF
    (b"PROXY TCP4 192.0.2.7 10.0.0.1\x00 1 2\r\n", "control octet"),
    (b"PROXY TCP4 192.0.2.\xc3\xa9 10.0.0.1 1 2\r\n", "non-ASCII"),
    (b"PROXY TCP4 \x00", "control octet"),  # refused before the CRLF
    (b"PROXY UNKNOWN " + b"x" * 100 + b"\r\n", "longer than 107"),
    (b"PROXY TCP4 " + b"1" * 200, "longer than 107"),
    (b"PROXY TCP5 192.0.2.7 10.0.0.1 1 2\r\n", "not TCP4, TCP6 or UNKNOWN"),
    (b"PROXY UDP4 192.0.2.7 10.0.0.1 1 2\r\n", "not TCP4, TCP6 or UNKNOWN"),
    (b"PROXY  TCP4 192.0.2.7 10.0.0.1 1 2\r\n", "not TCP4, TCP6 or UNKNOWN"),
    (b"PROXY TCP4 192.0.2.7  10.0.0.1 1 2\r\n", "expected 'PROXY TCPn"),
    (b"PROXY TCP4 192.0.2.7 10.0.0.1 1 2 \r\n", "expected 'PROXY TCPn"),
    (b"PROXY TCP4 192.0.2.7 10.0.0.1 1\r\n", "expected 'PROXY TCPn"),
    (b"PROXY TCP4 192.0.2.07 10.0.0.1 1 2\r\n", "not an IPv4 address"),  # octal-looking
    (b"PROXY TCP4 192.0.2.256 10.0.0.1 1 2\r\n", "not an IPv4 address"),
    (b"PROXY TCP4 2001:db8::7 10.0.0.1 1 2\r\n", "not an IPv4 address"),
    (b"PROXY TCP6 192.0.2.7 2001:db8::1 1 2\r\n", "not an IPv6 address"),
    (b"PROXY TCP6 fe80::1%eth0 2001:db8::1 1 2\r\n", "not an IPv6 address"),
    (b"PROXY TCP4 192.0.2.7 10.0.0.1 65536 25\r\n", "port over 65535"),
    (b"PROXY TCP4 192.0.2.7 10.0.0.1 025 25\r\n", "bad port"),
    (b"PROXY TCP4 192.0.2.7 10.0.0.1 -1 25\r\n", "bad port"),
    (b"PROXY TCP4 192.0.2.7 10.0.0.1 +1 25\r\n", "bad port"),
    (b"PROXY TCP4 192.0.2.7 10.0.0.1 123456 25\r\n", "bad port"),
    (b"PROXY TCP4 192.0.2.7 10.0.0.1  25\r\n", "bad port"),  # an empty one
]


@pytest.mark.parametrize(("wire", "refusal"), V1_BAD)
def test_v1_hostile_lines_are_refused(wire: bytes, refusal: str) -> None:
    with pytest.raises(ProxyHeaderError, match=refusal):
        parse(wire)


def test_v1_line_of_exactly_107_octets_is_accepted() -> None:
    wire = b"PROXY UNKNOWN " + b"x" * (V1_MAX_LINE - 16) + b"\r\n"
    assert len(wire) == V1_MAX_LINE
    assert parse(wire) == ProxyHeader(1, None, None, V1_MAX_LINE)


# -- version 2 ---------------------------------------------------------------------------

V2_GOOD = [
    # (wire, source, destination)
    (
        v2(1, 0x11, tcp4("192.0.2.7", "10.0.0.1", 56324, 25)),
        Endpoint("192.0.2.7", 56324),
        Endpoint("10.0.0.1", 25),
    ),
    (
        v2(1, 0x21, tcp6("2001:db8::7", "2001:db8::1", 1, 993)),
        Endpoint("2001:db8::7", 1),
        Endpoint("2001:db8::1", 993),
    ),
    (
        v2(1, 0x21, tcp6("::ffff:192.0.2.9", "::ffff:10.0.0.1", 4000, 25)),
        Endpoint("192.0.2.9", 4000),
        Endpoint("10.0.0.1", 25),
    ),
    # TLVs after the addresses (ALPN, authority, unique ID, NOOP, SSL): skipped.
    (
        v2(
            1,
            0x11,
            tcp4("192.0.2.7", "10.0.0.1", 1, 2)
            + tlv(0x01, b"smtp")
            + tlv(0x02, b"mx.example.test")
            + tlv(0x05, b"\x00" * 128)
            + tlv(0x04, b"")
            + tlv(0x20, b"\x01\x00\x00\x00\x00" + tlv(0x21, b"TLSv1.3")),
        ),
        Endpoint("192.0.2.7", 1),
        Endpoint("10.0.0.1", 2),
    ),
]


@pytest.mark.parametrize(("wire", "source", "destination"), V2_GOOD)
def test_v2_names_the_client(wire: bytes, source: Endpoint, destination: Endpoint) -> None:
    assert parse(wire + b"\x16\x03\x01 ClientHello") == ProxyHeader(
        2, source, destination, len(wire)
    )


@pytest.mark.parametrize(
    "wire",
    [
        # §2.2 LOCAL: the balancer's own connection (health checks): family ignored.
        v2(0, 0x00, b""),
        v2(0, 0x11, tcp4("192.0.2.7", "10.0.0.1", 1, 2)),
        v2(0, 0x11, b""),  # LOCAL need not carry addresses even with a family
        v2(0, 0x00, b"\xff" * 40),  # its length is honoured all the same
        # PROXY with UNSPEC, UDP and UNIX: fall back to the real endpoints.
        v2(1, 0x00, b""),
        v2(1, 0x12, tcp4("192.0.2.7", "10.0.0.1", 1, 2)),
        v2(1, 0x22, tcp6("2001:db8::7", "2001:db8::1", 1, 2)),
        v2(1, 0x31, b"/run/client.sock".ljust(108, b"\x00") * 2),
        v2(1, 0x32, b""),
    ],
)
def test_v2_local_and_unsupported_families_use_the_connection_s_addresses(wire: bytes) -> None:
    assert parse(wire + b"EHLO") == ProxyHeader(2, None, None, len(wire))


GOOD_V2 = v2(1, 0x11, tcp4("192.0.2.7", "10.0.0.1", 56324, 25) + tlv(0x01, b"imap"))


@pytest.mark.parametrize("cut", range(len(GOOD_V2)))
def test_v2_every_prefix_is_incomplete(cut: int) -> None:
    assert parse(GOOD_V2[:cut]) is None


V2_BAD = [
    (b"\r\n\r\nEHLO", "bad v2 signature"),
    (V2_SIGNATURE[:11] + b"X" + b"\x21\x11\x00\x00", "bad v2 signature"),
    (b"\r\nQUIT\r\n", "bad v2 signature"),
    (V2_SIGNATURE + b"\x11\x11\x00\x0c" + tcp4("1.2.3.4", "5.6.7.8", 1, 2), "version 1 is not 2"),
    (V2_SIGNATURE + b"\x31\x11\x00\x00", "version 3 is not 2"),
    (v2(2, 0x11, tcp4("1.2.3.4", "5.6.7.8", 1, 2)), "unknown command 0x2"),
    (v2(0xF, 0x11, b""), "unknown command 0xf"),
    (v2(1, 0x41, b""), "unknown family/protocol 0x41"),
    (v2(1, 0x13, b""), "unknown family/protocol 0x13"),
    (v2(0, 0x13, b""), "unknown family/protocol 0x13"),  # LOCAL checks the octet too
    # Length overflow: announced past the limit (refused before waiting for it).
    (v2(1, 0x11, b"", length=LIMIT + 1), f"{LIMIT + 1} octets of addresses and TLVs"),
    (v2(1, 0x11, b"", length=0xFFFF), "65535 octets of addresses and TLVs"),
    # Addresses cut short by the length field.
    (v2(1, 0x11, tcp4("1.2.3.4", "5.6.7.8", 1, 2)[:11]), "too short for the addresses"),
    (v2(1, 0x21, tcp4("1.2.3.4", "5.6.7.8", 1, 2)), "too short for the addresses"),
    (v2(1, 0x11, b""), "too short for the addresses"),
    # TLV garbage.
    (v2(1, 0x11, tcp4("1.2.3.4", "5.6.7.8", 1, 2) + b"\x01"), "truncated TLV"),
    (v2(1, 0x11, tcp4("1.2.3.4", "5.6.7.8", 1, 2) + b"\x01\x00"), "truncated TLV"),
    (
        v2(1, 0x11, tcp4("1.2.3.4", "5.6.7.8", 1, 2) + b"\x01\x00\x05abcd"),
        "TLV longer than the header",
    ),
    (
        v2(1, 0x11, tcp4("1.2.3.4", "5.6.7.8", 1, 2) + tlv(0x01, b"ok") + b"\x02\xff\xff"),
        "TLV longer than the header",
    ),
]


@pytest.mark.parametrize(("wire", "refusal"), V2_BAD)
def test_v2_hostile_blocks_are_refused(wire: bytes, refusal: str) -> None:
    with pytest.raises(ProxyHeaderError, match=refusal):
        parse(wire)


def test_v2_payload_up_to_the_limit_is_read_whole() -> None:
    addresses = tcp4("192.0.2.7", "10.0.0.1", 1, 2)
    padding = tlv(0x04, b"\x00" * (LIMIT - len(addresses) - 3))
    wire = v2(1, 0x11, addresses + padding)
    assert len(wire) == 16 + LIMIT == header_room(LIMIT)
    assert parse(wire[:-1]) is None
    header = parse(wire)
    assert header is not None and header.length == len(wire)


def test_a_smaller_limit_refuses_what_the_default_takes() -> None:
    wire = v2(1, 0x11, tcp4("192.0.2.7", "10.0.0.1", 1, 2) + tlv(0x05, b"u" * 64))
    assert parse(wire) is not None
    with pytest.raises(ProxyHeaderError, match="over the limit"):
        parse_proxy_header(wire, max_v2_payload=32)


def test_slowloris_one_octet_at_a_time_is_incomplete_until_the_last() -> None:
    # What the session sees while a balancer (or an attacker in its network)
    # trickles: incomplete every time, all of it header, until the end. The
    # deadline, not the parser, ends a trickle that never finishes.
    wire = b"PROXY TCP4 192.0.2.7 10.0.0.1 56324 25\r\n"
    for end in range(len(wire)):
        assert parse(wire[:end]) is None
    assert parse(wire) is not None


# -- properties ----------------------------------------------------------------------------

_ipv4 = st.ip_addresses(v=4)
_ipv6 = st.ip_addresses(v=6)
_port = st.integers(0, 0xFFFF)
_tlvs = st.lists(
    st.tuples(st.integers(0, 255), st.binary(max_size=40)).map(lambda t: tlv(*t)), max_size=5
)


def _canonical(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


@settings(max_examples=300, deadline=None)
@given(
    v6=st.booleans(),
    data=st.data(),
    ports=st.tuples(_port, _port),
    tlvs=_tlvs,
    text=st.booleans(),
    after=st.binary(max_size=30),
)
def test_any_header_a_balancer_may_send_comes_back_exactly(
    v6: bool,
    data: st.DataObject,
    ports: tuple[int, int],
    tlvs: list[bytes],
    text: bool,
    after: bytes,
) -> None:
    src, dst = (data.draw(_ipv6 if v6 else _ipv4) for _ in range(2))
    if text:
        family = "TCP6" if v6 else "TCP4"
        wire = f"PROXY {family} {src} {dst} {ports[0]} {ports[1]}\r\n".encode()
    else:
        block = (src.packed + dst.packed + struct.pack("!HH", *ports)) + b"".join(tlvs)
        wire = v2(1, 0x21 if v6 else 0x11, block)
    header = parse(wire + after)
    assert header == ProxyHeader(
        1 if text else 2,
        Endpoint(_canonical(src), ports[0]),
        Endpoint(_canonical(dst), ports[1]),
        len(wire),
    )
    # Every prefix: incomplete (so a reader may take it all), never an error.
    for cut in sorted({0, 1, len(wire) // 2, len(wire) - 1}):
        assert parse(wire[:cut]) is None


@settings(max_examples=1000, deadline=None)
@given(
    data=st.one_of(
        st.binary(max_size=200),
        st.binary(max_size=120).map(lambda b: b"PROXY " + b),
        st.binary(max_size=120).map(lambda b: V2_SIGNATURE + b),
        st.binary(max_size=60).map(lambda b: V2_SIGNATURE + b"\x21" + b),
    )
)
def test_any_bytes_give_a_header_within_them_none_or_the_one_error(data: bytes) -> None:
    try:
        header = parse(data)
    except ProxyHeaderError as exc:
        assert exc.text
        return
    if header is None:
        # Incomplete: never more than the largest header could hold.
        assert len(data) < header_room(LIMIT)
        return
    assert 0 < header.length <= len(data)
    # The header is the same without what follows it: it ends where it says.
    assert parse(data[: header.length]) == header
