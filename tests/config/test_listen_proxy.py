"""[listen] proxy_protocol: the load balancers whose connections start with a PROXY header."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from mailstead.config import ConfigError, load_config

D = 'domains = ["example.test"]\n'


def _load(tmp_path: Path, text: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    path = tmp_path / "mailstead.toml"
    path.write_text(D + text)
    return load_config(path).listen.proxy_protocol


def test_off_by_default(tmp_path: Path) -> None:
    assert _load(tmp_path, "") == ()
    assert _load(tmp_path, "[listen]\nproxy_protocol = []\n") == ()


def test_networks_of_both_families_and_single_addresses(tmp_path: Path) -> None:
    networks = _load(
        tmp_path,
        '[listen]\nproxy_protocol = ["10.0.0.0/8", "127.0.0.2/32", "2001:db8::/48", "192.0.2.9"]\n',
    )
    assert networks == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("127.0.0.2/32"),
        ipaddress.ip_network("2001:db8::/48"),
        ipaddress.ip_network("192.0.2.9/32"),
    )


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (
            '["10.0.0.1/8"]',
            'listen.proxy_protocol[0]: expected a network like "10.0.0.0/8", got "10.0.0.1/8" '
            "(10.0.0.1/8 has host bits set)",
        ),
        ('["balancer.example"]', 'listen.proxy_protocol[0]: expected a network like "10.0.0.0/8"'),
        ('["10.0.0.0/33"]', 'listen.proxy_protocol[0]: expected a network like "10.0.0.0/8"'),
        ('["10.0.0.0/8", 10]', "listen.proxy_protocol[1]: expected a string, got 10"),
        ('"10.0.0.0/8"', "listen.proxy_protocol: expected an array"),
        ("true", "listen.proxy_protocol: expected an array"),
    ],
)
def test_a_bad_network_is_one_clear_line(tmp_path: Path, value: str, error: str) -> None:
    with pytest.raises(ConfigError) as raised:
        _load(tmp_path, f"[listen]\nproxy_protocol = {value}\n")
    assert f"mailstead.toml: {error}" in str(raised.value)


def test_a_typo_of_the_key_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="did you mean `proxy_protocol`"):
        _load(tmp_path, '[listen]\nproxy-protocol = ["10.0.0.0/8"]\n')
