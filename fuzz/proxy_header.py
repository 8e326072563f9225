"""Fuzz target: the PROXY header a load balancer sends first (HAProxy's proxy-protocol.txt).

Owns :mod:`mailstead.proto.proxy` (``parse_proxy_header``).
``ProxyHeaderError`` is the documented refusal; anything else raised is a
defect, and so is a result that depends on how TCP cut the bytes: the
session (net/proxy_header.py) parses what has arrived so far and consumes
it all while the parser says "incomplete", so for every prefix of the
input the answer must be "incomplete", the final header itself, or an
error the whole input also gets.
"""

from __future__ import annotations

import ipaddress

from fuzz._harness import chunks, fuzz, instrumented

with instrumented(__name__):
    from mailstead.limits import ProxyProtocolLimits
    from mailstead.proto.proxy import (
        Endpoint,
        ProxyHeader,
        ProxyHeaderError,
        header_room,
        parse_proxy_header,
    )

_LIMIT = ProxyProtocolLimits().max_v2_payload


def _parse(data: bytes) -> ProxyHeader | ProxyHeaderError | None:
    try:
        return parse_proxy_header(data, max_v2_payload=_LIMIT)
    except ProxyHeaderError as exc:
        assert exc.text, "a refusal without a reason"
        return exc


def _check_endpoint(endpoint: Endpoint | None) -> None:
    if endpoint is None:
        return
    address = ipaddress.ip_address(endpoint.address)
    assert str(address) == endpoint.address, f"not canonical: {endpoint.address!r}"
    assert not (isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped), endpoint
    assert 0 <= endpoint.port <= 0xFFFF, endpoint


def test_one_input(data: bytes) -> None:
    final = _parse(data)
    if final is None:
        assert len(data) < header_room(_LIMIT), "incomplete past the largest header"
    elif isinstance(final, ProxyHeader):
        assert 0 < final.length <= len(data), final
        assert final.version in (1, 2)
        assert (final.source is None) == (final.destination is None), final
        _check_endpoint(final.source)
        _check_endpoint(final.destination)
        assert _parse(data[: final.length]) == final, "the header depends on what follows"
    # Every prefix, as TCP may deliver it.
    seen = 0
    for piece in chunks(data):
        seen += len(piece)
        partial = _parse(data[:seen])
        if partial is None:
            continue
        if isinstance(partial, ProxyHeader):
            assert partial == final, (partial, final)
        else:
            assert isinstance(final, ProxyHeaderError), f"refused {partial.text!r}, then not"
        break


def main() -> None:
    """``python -m fuzz.proxy_header [libFuzzer flags] [corpus dirs]``."""
    fuzz(test_one_input)


if __name__ == "__main__":
    main()
