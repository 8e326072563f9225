"""`mailstead check config`: every problem with its key and reason, the loader's own words."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from tests.checks.conftest import make_certificate, run_check

# Every listener on a port the kernel picks: nothing here clashes with anything.
LISTEN_ANY_PORT = """
[listen]
smtp = ["127.0.0.1:0"]
submission = ["127.0.0.1:0"]
submissions = ["127.0.0.1:0"]
imap = ["127.0.0.1:0"]
imaps = ["127.0.0.1:0"]
pop3 = ["127.0.0.1:0"]
pop3s = ["127.0.0.1:0"]
"""


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mailstead.toml"
    path.write_text(text)
    return path


@pytest.fixture
def good(tmp_path: Path) -> Path:
    """A configuration with a CA-signed certificate for its hostname: nothing to say."""
    make_certificate(tmp_path / "var", issuer="Test CA")
    return write_config(
        tmp_path, 'hostname = "mail.example.test"\ndomains = ["example.test"]\n' + LISTEN_ANY_PORT
    )


def test_a_good_configuration_passes(good: Path) -> None:
    result = run_check(good, "config")
    assert result.exit_code == 0, result.output
    assert result.output == f"{good}: 0 errors, 0 warnings; OK\n"


def test_every_error_is_reported_with_its_key(tmp_path: Path) -> None:
    make_certificate(tmp_path / "var", issuer="Test CA")
    config = write_config(
        tmp_path,
        'hostname = "bad host"\n'
        'domains = ["example.test", "x..y"]\n'
        "workers = 999\n"
        "[listen]\n"
        'smtp = ["127.0.0.1:0", "nope", "127.0.0.1:99999"]\n'
        "foo = 1\n"
        "[delivery]\n"
        'source_ip = "abc"\n'
        "smtp_port = 0\n"
        "[delivery.source_ip_by_domain]\n"
        '"example.test" = "1.2.3"\n'
        "[[network.addresses]]\n"
        'iface = "eth0"\n'
        'cidr = "x"\n'
        "[[network.addresses]]\n"
        'cidr = "192.0.2.1/24"\n',
    )
    result = run_check(config, "config")
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        'error: hostname: expected a domain name, got "bad host"',
        'error: domains[1]: expected a domain name, got "x..y"',
        "error: listen.foo: unknown key (expected one of: imap, imaps, metrics, pop3, pop3s, "
        "proxy_protocol, smtp, submission, submissions)",
        'error: listen.smtp[1]: expected "host:port", got "nope" (missing port)',
        'error: listen.smtp[2]: expected "host:port", got "127.0.0.1:99999" '
        "(port 99999 is out of range)",
        "error: delivery.smtp_port: expected a port 1-65535, got 0",
        'error: delivery.source_ip: expected an IP address, got "abc"',
        'error: delivery.source_ip_by_domain.example.test: expected an IP address, got "1.2.3"',
        'error: network.addresses[0].cidr: expected an address/prefix, e.g. "192.0.2.25/24", '
        'got "x"',
        "error: network.addresses[1].iface: missing",
        "error: workers: expected 0 (one per CPU) to 256, got 999",
        f"{config}: 11 errors, 0 warnings; serve would refuse to run",
    ]


def test_items_after_a_refused_one_keep_their_numbers(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        'domains = ["example.test"]\n'
        "[[network.addresses]]\n"
        'iface = "eth0"\n'
        'cidr = "x"\n'
        "[[network.addresses]]\n"
        'iface = "eth0"\n'
        'cidr = "192.0.2.1/24"\n'
        "[[network.addresses]]\n"
        'iface = "eth0"\n'
        'cidr = "192.0.2.2/24"\n'
        'persist = "sometimes"\n',
    )
    lines = run_check(config, "config").output.splitlines()
    assert [line.split(":")[1] for line in lines if "network" in line] == [
        " network.addresses[0].cidr",
        " network.addresses[2].persist",
    ]


def test_missing_domains_still_lets_the_rest_be_read(tmp_path: Path) -> None:
    config = write_config(tmp_path, "workers = -1\n")
    lines = run_check(config, "config").output.splitlines()
    assert lines[:2] == [
        "error: domains: missing (list the mail domains this server is the destination for)",
        "error: workers: expected 0 (one per CPU) to 256, got -1",
    ]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("domains = [", "invalid TOML"),
        (b"\xff", "invalid TOML: not UTF-8"),
    ],
)
def test_a_file_that_is_no_toml_is_one_line(tmp_path: Path, text: str | bytes, reason: str) -> None:
    path = tmp_path / "mailstead.toml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    result = run_check(path, "config")
    assert result.exit_code == 1
    first, summary = result.output.splitlines()
    assert first.startswith(f"error: {path}: {reason}")
    assert summary == f"{path}: 1 error, 0 warnings; serve would refuse to run"


def test_no_file(tmp_path: Path) -> None:
    path = tmp_path / "none.toml"
    result = run_check(path, "config")
    assert result.exit_code == 1
    assert result.output.splitlines()[0] == f"error: no config at {path}; run `mailstead init`"


def test_json(tmp_path: Path) -> None:
    config = write_config(tmp_path, 'domains = ["example.test"]\nworkers = "2"\n' + LISTEN_ANY_PORT)
    result = run_check(config, "config", "--json")
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert report["config"] == str(config)
    assert report["ok"] is False
    assert report["problems"][0] == {
        "severity": "error",
        "key": "workers",
        "value": "",
        "reason": 'expected a whole number, got "2"',
    }


def test_localhost_is_a_warning(tmp_path: Path) -> None:
    make_certificate(tmp_path / "var", ("localhost",), issuer="Test CA")
    config = write_config(
        tmp_path, 'hostname = "localhost"\ndomains = ["example.test"]\n' + LISTEN_ANY_PORT
    )
    result = run_check(config, "config")
    assert result.exit_code == 0
    assert result.output.splitlines() == [
        'warning: hostname: is "localhost", a name no other host can reach: set hostname = '
        '"mail.example.com" in the config (the banner, EHLO, MX and PTR records use it)',
        f"{config}: 0 errors, 1 warning; OK",
    ]


# -- listening addresses


def test_an_address_in_use_is_a_warning_naming_the_listener(good: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        text = good.read_text().replace('imaps = ["127.0.0.1:0"]', f'imaps = ["127.0.0.1:{port}"]')
        good.write_text(text)
        result = run_check(good, "config")
    assert result.exit_code == 0
    assert result.output.splitlines() == [
        f"warning: listen.imaps 127.0.0.1:{port}: address already in use",
        f"{good}: 0 errors, 1 warning; OK",
    ]


def test_two_listeners_on_one_address_is_an_error(good: Path) -> None:
    with socket.socket() as probe:  # a port free now
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    text = good.read_text()
    text = text.replace('imap = ["127.0.0.1:0"]', f'imap = ["0.0.0.0:{port}"]')
    text = text.replace('imaps = ["127.0.0.1:0"]', f'imaps = ["127.0.0.1:{port}"]')
    good.write_text(text)
    result = run_check(good, "config")
    assert result.exit_code == 1
    assert result.output.splitlines()[0] == (
        f"error: listen.imaps 127.0.0.1:{port}: clashes with listen.imap: both cannot listen there"
    )


def test_an_address_of_no_interface_is_an_error(good: Path) -> None:
    good.write_text(good.read_text().replace('pop3 = ["127.0.0.1:0"]', 'pop3 = ["192.0.2.77:0"]'))
    result = run_check(good, "config")
    assert result.exit_code == 1
    assert result.output.splitlines()[0] == (
        "error: listen.pop3 192.0.2.77:0: not an address of this host"
    )


def test_a_source_address_of_no_interface_is_an_error(good: Path) -> None:
    good.write_text(good.read_text() + '[delivery]\nsource_ip = "192.0.2.99"\n')
    result = run_check(good, "config")
    assert result.exit_code == 1
    assert result.output.splitlines()[0] == (
        "error: delivery.source_ip: 192.0.2.99 is on no interface of this host "
        "(add it: mailstead net add IFACE 192.0.2.99/PREFIX)"
    )
