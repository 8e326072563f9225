"""The SSRF guard: one line per address or hostile spelling (classification only)."""

from __future__ import annotations

import ipaddress

import pytest

from mailstead.webhooks.ssrf import AddressGuard, MalformedHost, Reason, classify, parse_host

R = Reason

# address -> why it is refused (None: public unicast, allowed).
CASES: list[tuple[str, Reason | None]] = [
    ("8.8.8.8", None),
    ("1.1.1.1", None),
    ("93.184.216.34", None),
    ("100.63.255.255", None),  # just below CGNAT
    ("100.128.0.0", None),  # just above CGNAT
    ("172.15.255.255", None),
    ("172.32.0.0", None),
    ("0.0.0.0", R.UNSPECIFIED),
    ("0.1.2.3", R.UNSPECIFIED),
    ("127.0.0.1", R.LOOPBACK),
    ("127.255.255.254", R.LOOPBACK),
    ("10.0.0.1", R.PRIVATE),
    ("172.16.0.1", R.PRIVATE),
    ("172.31.255.255", R.PRIVATE),
    ("192.168.1.1", R.PRIVATE),
    ("169.254.0.1", R.LINK_LOCAL),
    ("169.254.169.254", R.METADATA),
    ("100.100.100.200", R.METADATA),
    ("100.64.0.1", R.CGNAT),
    ("100.127.255.255", R.CGNAT),
    ("224.0.0.1", R.MULTICAST),
    ("239.255.255.250", R.MULTICAST),
    ("255.255.255.255", R.BROADCAST),
    ("240.0.0.1", R.RESERVED),
    ("192.0.0.8", R.RESERVED),
    ("198.18.0.1", R.RESERVED),
    ("192.88.99.1", R.RESERVED),
    ("192.0.2.1", R.DOCUMENTATION),
    ("198.51.100.7", R.DOCUMENTATION),
    ("203.0.113.9", R.DOCUMENTATION),
    ("2001:4860:4860::8888", None),
    ("2606:4700:4700::1111", None),
    ("::", R.UNSPECIFIED),
    ("::1", R.LOOPBACK),
    ("fc00::1", R.PRIVATE),
    ("fd12:3456::1", R.PRIVATE),
    ("fec0::1", R.PRIVATE),
    ("fe80::1", R.LINK_LOCAL),
    ("fe80::1%eth0", R.LINK_LOCAL),
    ("febf::1", R.LINK_LOCAL),
    ("fd00:ec2::254", R.METADATA),
    ("ff02::1", R.MULTICAST),
    ("ff05::1:3", R.MULTICAST),
    ("2001:db8::1", R.DOCUMENTATION),
    ("3fff::1", R.DOCUMENTATION),
    ("100::1", R.RESERVED),
    ("2001:2::1", R.RESERVED),  # RFC 2928 IETF block
    ("4000::1", R.RESERVED),  # outside 2000::/3
    # IPv4-mapped and -compatible: judged by the IPv4 address they carry.
    ("::ffff:127.0.0.1", R.LOOPBACK),
    ("::ffff:7f00:1", R.LOOPBACK),
    ("::ffff:10.1.2.3", R.PRIVATE),
    ("::ffff:169.254.169.254", R.METADATA),
    ("::ffff:8.8.8.8", None),
    ("::127.0.0.1", R.LOOPBACK),
    ("::10.0.0.1", R.PRIVATE),
    ("::8.8.8.8", R.RESERVED),  # deprecated form, refused even when public
    # NAT64 well-known prefix (RFC 6052): the embedded IPv4 decides.
    ("64:ff9b::127.0.0.1", R.LOOPBACK),
    ("64:ff9b::a9fe:a9fe", R.METADATA),
    ("64:ff9b::192.168.0.1", R.PRIVATE),
    ("64:ff9b::8.8.8.8", None),
    ("64:ff9b:1::1", R.PRIVATE),  # local-use NAT64
    # 6to4 (RFC 3056): 2002:V4ADDR::/48.
    ("2002:7f00:1::1", R.LOOPBACK),
    ("2002:0a00:0001::", R.PRIVATE),
    ("2002:a9fe:a9fe::1", R.METADATA),
    ("2002:808:808::1", None),
    # Teredo (RFC 4380): the obfuscated client address decides.
    ("2001:0:4136:e378:8000:63bf:80ff:fffe", R.LOOPBACK),  # client 127.0.0.1
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", R.DOCUMENTATION),  # client 192.0.2.45
    ("2001:0:4136:e378:8000:63bf:f7f7:f7f7", None),  # client 8.8.8.8
]


@pytest.mark.parametrize(("address", "reason"), CASES)
def test_classify(address: str, reason: Reason | None) -> None:
    refused = classify(ipaddress.ip_address(address))
    assert (refused and refused.reason) == reason


# Host as it appears in a URL -> the address it means (None: a DNS name).
SPELLINGS: list[tuple[str, str | None]] = [
    ("2130706433", "127.0.0.1"),  # one 32-bit decimal
    ("0x7f000001", "127.0.0.1"),
    ("017700000001", "127.0.0.1"),  # one octal number
    ("0177.0.0.1", "127.0.0.1"),
    ("0x7f.1", "127.0.0.1"),
    ("0X7F.0.0.1", "127.0.0.1"),
    ("127.1", "127.0.0.1"),  # a.b: b fills 24 bits
    ("127.0.1", "127.0.0.1"),  # a.b.c: c fills 16 bits
    ("10.65535", "10.0.255.255"),
    ("0", "0.0.0.0"),
    ("0x", "0.0.0.0"),  # glibc reads a bare 0x as zero
    ("0xa9.0376.43518", "169.254.169.254"),
    ("127.0.0.1.", "127.0.0.1"),  # absolute form
    ("169.254.169.254", "169.254.169.254"),
    ("::1", "::1"),
    ("[::1]", "::1"),
    ("::ffff:127.0.0.1", "::ffff:7f00:1"),
    ("0:0:0:0:0:ffff:7f00:1", "::ffff:7f00:1"),
    ("example.com", None),
    ("localhost", None),
    ("127.0.0.1.nip.io", None),  # a name: resolved, then its addresses checked
    ("0x7f.example", None),
    ("1e100.net", None),
    ("xn--bcher-kva.example", None),
]


@pytest.mark.parametrize(("host", "address"), SPELLINGS)
def test_parse_host(host: str, address: str | None) -> None:
    parsed = parse_host(host)
    assert (None if parsed is None else str(parsed)) == address


@pytest.mark.parametrize(
    "host",
    [
        "1.2.3.256",
        "256.1",
        "1.16777216",  # a.b: b must fit 24 bits
        "4294967296",  # more than 32 bits
        "1.2.3.4.5",
        "08.0.0.1",  # 8 is no octal digit
        "0x7g.1",
        "1..1",
        "example.123",  # ends in a number: an IPv4 literal or nothing
        "１２７.0.0.1",  # non-ASCII digits in front of a numeric last part
        "::1::",
        "fe80::1%",
    ],
)
def test_malformed_literals_are_errors_not_names(host: str) -> None:
    with pytest.raises(MalformedHost):
        parse_host(host)


def test_hostile_spellings_are_refused() -> None:
    guard = AddressGuard()
    for host in ("2130706433", "0177.0.0.1", "0x7f.1", "127.1", "0xa9fea9fe", "[::ffff:127.0.0.1]"):
        address = parse_host(host)
        assert address is not None
        refused = guard.check(address)
        assert refused is not None, host


def test_refusal_names_address_reason_and_embedded_address() -> None:
    guard = AddressGuard()
    assert str(guard.check(ipaddress.ip_address("10.0.0.1"))) == "10.0.0.1 is private"
    assert (
        str(guard.check(ipaddress.ip_address("::ffff:127.0.0.1")))
        == "::ffff:7f00:1 (127.0.0.1) is loopback"
    )


@pytest.mark.parametrize(
    ("allow", "address", "allowed"),
    [
        (["127.0.0.0/8"], "127.0.0.1", True),
        (["127.0.0.0/8"], "::ffff:127.0.0.1", True),  # the same socket destination
        (["127.0.0.0/8"], "::1", False),
        (["127.0.0.0/8"], "10.0.0.1", False),
        (["10.0.0.0/8", "fd00::/8"], "fd00::5", True),
        (["10.1.2.3"], "10.1.2.3", True),
        (["10.1.2.3/8"], "10.200.0.1", True),  # host bits are forgiven
        (["fe80::/10"], "fe80::1%eth0", True),
        # A broad network does not open a metadata service inside it ...
        (["100.64.0.0/10"], "100.100.100.200", False),
        (["169.254.0.0/16"], "169.254.169.254", False),
        (["169.254.0.0/16"], "169.254.1.1", True),
        # ... naming the address itself does.
        (["169.254.169.254/32"], "169.254.169.254", True),
        ([], "8.8.8.8", True),
    ],
)
def test_allow_networks(allow: list[str], address: str, allowed: bool) -> None:
    guard = AddressGuard(allow)
    assert (guard.check(ipaddress.ip_address(address)) is None) == allowed


def test_check_all_refuses_if_any_address_is_refused() -> None:
    guard = AddressGuard()
    public, loopback = ipaddress.ip_address("8.8.8.8"), ipaddress.ip_address("127.0.0.1")
    assert guard.check_all([public]) is None
    refused = guard.check_all([public, loopback])
    assert refused is not None and refused.address == "127.0.0.1"
