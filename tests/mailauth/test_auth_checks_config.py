"""``[auth_checks]`` in mailstead.toml: defaults, values, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailstead.config import AuthChecksConfig, ConfigError, load_config


def load(tmp_path: Path, table: str) -> AuthChecksConfig:
    path = tmp_path / "mailstead.toml"
    path.write_text(f'domains = ["example.test"]\n{table}')
    return load_config(path).auth_checks


def test_defaults(tmp_path: Path) -> None:
    assert load(tmp_path, "") == AuthChecksConfig(True, "reject", 10, 4096)


def test_values(tmp_path: Path) -> None:
    table = (
        '[auth_checks]\nenabled = false\ndmarc_reject = "junk"\n'
        'dns_timeout = "5s"\ncache_size = 0\n'
    )
    assert load(tmp_path, table) == AuthChecksConfig(False, "junk", 5, 0)


@pytest.mark.parametrize(
    ("table", "error"),
    [
        (
            'dmarc_reject = "bounce"',
            'auth_checks.dmarc_reject: expected "reject", "junk" or "accept", got "bounce"',
        ),
        ('dns_timeout = "0s"', "auth_checks.dns_timeout: "),
        ("enabled = 1", "auth_checks.enabled: expected true or false, got 1"),
        ("cache_size = -1", "auth_checks.cache_size: expected 0 to 1000000, got -1"),
        ("dmarc = true", "auth_checks.dmarc: unknown key"),
    ],
)
def test_errors(tmp_path: Path, table: str, error: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load(tmp_path, f"[auth_checks]\n{table}\n")
    assert error in str(raised.value)


def test_the_hook_is_built_only_when_enabled(tmp_path: Path) -> None:
    from mailstead.mailauth.setup import receiver_checks

    path = tmp_path / "mailstead.toml"
    path.write_text('hostname = "mx.example.test"\ndomains = ["example.test"]\n')
    checks = receiver_checks(load_config(path))
    assert checks is not None and checks.authserv_id == "mx.example.test"
    path.write_text(
        'domains = ["example.test"]\n[auth_checks]\nenabled = false\n'
        '[abuse]\nip_messages = "0"\nip_recipients = "0"\n'
    )
    assert receiver_checks(load_config(path)) is None
