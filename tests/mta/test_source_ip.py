"""``[delivery.source_ip_by_domain]``: each sender domain's mail leaves from its own address.

On the wire: the real SMTP client, and a fake MX on 127.0.0.1 that records
the peer address of every connection.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.mta.test_outbound import World, _config, in_loop

BY_DOMAIN = (
    'source_ip = "127.0.0.4"\n'
    "[delivery.source_ip_by_domain]\n"
    '"example.test" = "127.0.0.2"\n'
    '"Other.Example" = "127.0.0.3"\n'
)


@pytest.fixture
def wire(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path, wire=True)
    yield w
    w.close()


@in_loop
async def test_each_sender_domain_sends_from_its_address(wire: World, tmp_path: Path) -> None:
    (tmp_path / "own").mkdir()
    wire.config = _config(tmp_path / "own", wire.port, BY_DOMAIN)
    wire.outbound = wire._outbound()
    mx = await wire.listen("127.0.0.1")
    wire.send("bob@solo.test", sender="alice@example.test")
    wire.send("carol@solo.test", sender="erin@OTHER.example")
    wire.send("dave@solo.test", sender="frank@third.test")  # no entry: source_ip
    wire.send("gina@solo.test", sender="alice@EXAMPLE.test")

    assert await wire.run_once() == 4

    seen = {(s.peer, t.sender) for s in mx.sessions for t in s.transactions}
    assert seen == {
        ("127.0.0.2", "alice@example.test"),
        ("127.0.0.2", "alice@EXAMPLE.test"),
        ("127.0.0.3", "erin@OTHER.example"),
        ("127.0.0.4", "frank@third.test"),
    }
    # One connection per source address: both example.test messages share one.
    assert sorted(s.peer for s in mx.sessions) == ["127.0.0.2", "127.0.0.3", "127.0.0.4"]


@in_loop
async def test_without_a_table_every_sender_uses_source_ip(wire: World, tmp_path: Path) -> None:
    (tmp_path / "own").mkdir()
    wire.config = _config(tmp_path / "own", wire.port, 'source_ip = "127.0.0.5"\n')
    wire.outbound = wire._outbound()
    mx = await wire.listen("127.0.0.1")
    wire.send("bob@solo.test", sender="alice@example.test")
    wire.send("carol@solo.test", sender="")
    await wire.run_once()
    assert [s.peer for s in mx.sessions] == ["127.0.0.5"]
    assert len(mx.sessions[0].transactions) == 2


def test_serve_refuses_a_source_address_on_no_interface(tmp_path: Path) -> None:
    from mailstead.app import SourceAddressError, check_source_addresses

    fine = _config(tmp_path, 25, BY_DOMAIN)
    check_source_addresses(fine)  # 127.0.0.0/8 is all on lo
    (tmp_path / "bad").mkdir()
    bad = _config(tmp_path / "bad", 25, '[delivery.source_ip_by_domain]\n"b.test" = "192.0.2.99"\n')
    with pytest.raises(SourceAddressError) as caught:
        check_source_addresses(bad)
    assert str(caught.value) == (
        "delivery.source_ip_by_domain.b.test: 192.0.2.99 is on no interface of this host "
        "(add it: mailstead net add IFACE 192.0.2.99/PREFIX)"
    )
