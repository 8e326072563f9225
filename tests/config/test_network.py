"""``[[network.addresses]]`` and ``[delivery.source_ip_by_domain]``: one line per mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailstead.config import ConfigError, DeclaredAddress, default_config_text, load_config

D = 'domains = ["example.test"]\n'


def _load(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "mailstead.toml"
    path.write_text(D + text, encoding="utf-8")
    return load_config(path)


def test_declared_addresses(tmp_path: Path) -> None:
    config = _load(
        tmp_path,
        '[[network.addresses]]\niface = "eth0"\ncidr = "192.0.2.25/24"\n'
        'label = "eth0:1"\npersist = "auto"\n'
        '[[network.addresses]]\niface = "eth0"\ncidr = "2001:DB8::0025/64"\n',
    )
    assert config.network.addresses == (
        DeclaredAddress("eth0", "192.0.2.25/24", "eth0:1", "auto"),
        DeclaredAddress("eth0", "2001:db8::25/64", None, "none"),
    )
    assert config.network.addresses[1].address == "2001:db8::25"


def test_source_ip_by_domain(tmp_path: Path) -> None:
    config = _load(
        tmp_path,
        '[delivery]\nsource_ip = "192.0.2.25"\n'
        '[delivery.source_ip_by_domain]\n"Bücher.example" = "2001:db8::0026"\n',
    )
    d = config.delivery
    assert d.source_ip_by_domain == {"xn--bcher-kva.example": "2001:db8::26"}
    assert d.source_for("anna@BÜCHER.example") == "2001:db8::26"
    assert d.source_for("bob@example.test") == "192.0.2.25"
    assert d.source_for("") == "192.0.2.25"  # the null sender of a DSN
    assert d.source_for("bob@sub.xn--bcher-kva.example") == "192.0.2.25"  # exact domains only
    assert d.source_addresses == {"192.0.2.25", "2001:db8::26"}
    assert _load(tmp_path, "").delivery.source_addresses == frozenset()


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[network]\nfoo = 1", "network.foo: unknown key (expected one of: addresses)"),
        (
            "[network]\naddresses = 1",
            "network.addresses: expected an array of [[network.addresses]]",
        ),
        ('[[network.addresses]]\ncidr = "192.0.2.1/24"', "network.addresses[0].iface: missing"),
        ('[[network.addresses]]\niface = "eth0"', "network.addresses[0].cidr: missing"),
        (
            '[[network.addresses]]\niface = "eth0/x"\ncidr = "192.0.2.1/24"',
            "network.addresses[0].iface: expected an interface name (at most 15 bytes), "
            'got "eth0/x"',
        ),
        (
            '[[network.addresses]]\niface = "a-very-long-name0"\ncidr = "192.0.2.1/24"',
            "network.addresses[0].iface: expected an interface name",
        ),
        (
            '[[network.addresses]]\niface = "eth0"\ncidr = "192.0.2.1"',
            'network.addresses[0].cidr: expected an address/prefix, e.g. "192.0.2.25/24", '
            'got "192.0.2.1"',
        ),
        (
            '[[network.addresses]]\niface = "eth0"\ncidr = "224.0.0.1/4"',
            "network.addresses[0].cidr: expected an address/prefix",
        ),
        (
            '[[network.addresses]]\niface = "eth0"\ncidr = "192.0.2.1/24"\n'
            '[[network.addresses]]\niface = "eth1"\ncidr = "192.0.2.1/32"',
            "network.addresses[1].cidr: 192.0.2.1 is already declared at network.addresses[0]",
        ),
        (
            '[[network.addresses]]\niface = "eth0"\ncidr = "2001:db8::1/64"\nlabel = "eth0:1"',
            "network.addresses[0].label: labels exist for IPv4 addresses only",
        ),
        (
            '[[network.addresses]]\niface = "eth0"\ncidr = "192.0.2.1/24"\nlabel = "eth1:1"',
            'network.addresses[0].label: expected "eth0:NAME", at most 15 bytes, got "eth1:1"',
        ),
        (
            '[[network.addresses]]\niface = "eth0"\ncidr = "192.0.2.1/24"\n'
            'label = "eth0:abcdefghijk"',
            "network.addresses[0].label: expected",
        ),
        (
            '[[network.addresses]]\niface = "eth0"\ncidr = "192.0.2.1/24"\npersist = "yes"',
            "network.addresses[0].persist: expected one of auto, ifupdown, ifcfg, nm, netplan, "
            'networkd, none, got "yes"',
        ),
        (
            "[delivery]\nsource_ip_by_domain = 1",
            "delivery.source_ip_by_domain: expected a table, got 1",
        ),
        (
            '[delivery.source_ip_by_domain]\n"a.test" = "mail"',
            'delivery.source_ip_by_domain.a.test: expected an IP address, got "mail"',
        ),
        (
            '[delivery.source_ip_by_domain]\n"a.test" = "0.0.0.0"',
            'delivery.source_ip_by_domain.a.test: expected an address of this host, got "0.0.0.0"',
        ),
        (
            '[delivery.source_ip_by_domain]\n"A.test" = "192.0.2.1"\n"a.test" = "192.0.2.2"',
            "delivery.source_ip_by_domain.a.test: a.test is listed twice",
        ),
        (
            '[delivery.source_ip_by_domain]\n"[127.0.0.1]" = "192.0.2.1"',
            'delivery.source_ip_by_domain.[127.0.0.1]: expected a domain name, got "[127.0.0.1]"',
        ),
    ],
)
def test_mistakes_are_one_line(tmp_path: Path, toml: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, toml)
    text = str(caught.value)
    assert "\n" not in text
    assert text.startswith(f"{tmp_path / 'mailstead.toml'}: {message}")


def test_template_examples_load_once_uncommented(tmp_path: Path) -> None:
    lines = default_config_text("example.test", "mail.example.test").splitlines()

    def example(first: str, count: int) -> str:
        start = lines.index(next(line for line in lines if line.startswith(first)))
        return "\n".join(line.removeprefix("# ") for line in lines[start : start + count]) + "\n"

    config = _load(
        tmp_path,
        example("# [delivery.source_ip_by_domain]", 2) + example("# [[network.addresses]]", 5),
    )
    assert config.delivery.source_ip_by_domain == {"example.test": "192.0.2.26"}
    assert config.network.addresses == (DeclaredAddress("eth0", "192.0.2.25/24", "eth0:1", "auto"),)
