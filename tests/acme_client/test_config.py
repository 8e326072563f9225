"""``[tls.acme]``: what the keys mean, and one-line errors naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailstead.config import ConfigError, load_config
from mailstead.config.tls import AcmeConfig

BASE = 'hostname = "mx.example.test"\ndomains = ["example.test"]\n'
LE = "https://acme-v02.api.letsencrypt.org/directory"


def load(tmp_path: Path, text: str) -> AcmeConfig | None:
    path = tmp_path / "mailstead.toml"
    path.write_text(BASE + text)
    return load_config(path).tls.acme


def test_off_unless_configured(tmp_path: Path) -> None:
    assert load(tmp_path, "") is None


def test_defaults_are_http01_on_port_80(tmp_path: Path) -> None:
    assert load(tmp_path, f'[tls]\nacme = {{ directory = "{LE}" }}\n') == AcmeConfig(LE)


def test_every_key(tmp_path: Path) -> None:
    acme = load(
        tmp_path,
        "[tls.acme]\n"
        f'directory = "{LE}"\n'
        'email = "postmaster@example.test"\n'
        'challenge = "tls-alpn-01"\n'
        'listen = ["192.0.2.1", "[2001:db8::1]:8443"]\n'
        'names = ["MTA-STS.example.test", "autoconfig.example.test", "mta-sts.example.test"]\n'
        'ca_file = "acme-ca.pem"\n',
    )
    assert acme == AcmeConfig(
        directory=LE,
        email="postmaster@example.test",
        challenge="tls-alpn-01",
        # A listen address without a port takes the challenge's (RFC 8737: 443).
        listen=(("192.0.2.1", 443), ("2001:db8::1", 8443)),
        names=("mta-sts.example.test", "autoconfig.example.test"),
        ca_file=tmp_path / "var" / "acme-ca.pem",
    )


def test_tls_alpn_listens_on_443_by_default(tmp_path: Path) -> None:
    acme = load(tmp_path, f'[tls.acme]\ndirectory = "{LE}"\nchallenge = "tls-alpn-01"\n')
    assert acme is not None
    assert acme.listen == (("0.0.0.0", 443),)


A = "[tls.acme]\n"
DIR = f'directory = "{LE}"\n'


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[tls]\nacme = 1", "tls.acme: expected a table, got 1"),
        (A, "tls.acme.directory: missing (the ACME server's directory URL)"),
        (A + 'directory = "http://ca.test/dir"', "tls.acme.directory: expected an https:// URL"),
        (A + 'directory = "https:///dir"', "tls.acme.directory: expected an https:// URL"),
        (A + DIR + 'email = "nobody"', 'tls.acme.email: expected one mail address, got "nobody"'),
        (A + DIR + 'email = "a@b.test, c@d.test"', "tls.acme.email: expected one mail address"),
        (A + DIR + 'challenge = "dns-01"', 'tls.acme.challenge: expected "http-01" or "tls-alpn'),
        (A + DIR + "listen = []", "tls.acme.listen: at least one address is required"),
        (A + DIR + 'listen = ["::1"]', 'tls.acme.listen[0]: expected "host:port"'),
        (A + DIR + 'names = ["[192.0.2.1]"]', "tls.acme.names[0]: expected a domain name"),
        (A + DIR + 'ca_file = ""', "tls.acme.ca_file: must not be empty"),
        (A + DIR + "terms = true", "tls.acme.terms: unknown key (expected one of: ca_file,"),
    ],
)
def test_bad_acme_table_is_one_line_naming_the_key(tmp_path: Path, toml: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, toml)
    assert message in str(info.value)
    assert "\n" not in str(info.value)
