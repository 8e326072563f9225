"""``[abuse]`` in mailstead.toml: defaults, values, one-line errors, and the checks it builds."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailstead.config import AbuseConfig, ConfigError, Rate, load_config
from mailstead.mailauth.abuse import RefusingChecks
from mailstead.mailauth.dnsbl import DNSBL
from mailstead.mailauth.greylist import Greylist
from mailstead.mailauth.ratelimit import ClientRates, SenderRates
from mailstead.mailauth.setup import receiver_checks, submission_checks
from mailstead.mailauth.verify import AuthChecks


def write(tmp_path: Path, table: str) -> Path:
    path = tmp_path / "mailstead.toml"
    path.write_text(f'hostname = "mx.example.test"\ndomains = ["example.test"]\n{table}')
    return path


def load(tmp_path: Path, table: str) -> AbuseConfig:
    return load_config(write(tmp_path, table)).abuse


def test_defaults(tmp_path: Path) -> None:
    config = load(tmp_path, "")
    assert config == AbuseConfig()
    assert (config.ip_messages, config.ip_recipients) == (Rate(60, 60), Rate(300, 60))
    assert config.network_share == 4
    assert (config.dnsbl, config.greylist) == ((), False)
    assert (config.greylist_delay, config.greylist_window) == (300, 86400)
    assert (config.greylist_whitelist_after, config.greylist_remember) == (5, 35 * 86400)


def test_values(tmp_path: Path) -> None:
    table = (
        "[abuse]\n"
        'ip_messages = "10/1m"\nip_recipients = "0"\nnetwork_share = 2\n'
        'user_messages = "50/1h"\nuser_recipients = "0"\n'
        'domain_messages = "0"\ndomain_recipients = "0"\n'
        'dnsbl = ["Zen.Example", "zen.example", "b.example"]\n'
        'greylist = true\ngreylist_delay = "2s"\ngreylist_window = "1h"\n'
        'greylist_whitelist_after = 0\ngreylist_remember = "7d"\n'
    )
    assert load(tmp_path, table) == AbuseConfig(
        ip_messages=Rate(10, 60),
        ip_recipients=None,
        network_share=2,
        user_messages=Rate(50, 3600),
        user_recipients=None,
        domain_messages=None,
        domain_recipients=None,
        dnsbl=("zen.example", "b.example"),
        greylist=True,
        greylist_delay=2,
        greylist_window=3600,
        greylist_whitelist_after=0,
        greylist_remember=7 * 86400,
    )


@pytest.mark.parametrize(
    ("table", "error"),
    [
        ('ip_messages = "60"', 'abuse.ip_messages: expected a rate like "60/1m"'),
        ("ip_messages = 60", "abuse.ip_messages: expected a string, got 60"),
        ("network_share = 0", "abuse.network_share: expected 1 to 1000, got 0"),
        ('dnsbl = "zen.example"', "abuse.dnsbl: expected an array of strings"),
        ('dnsbl = ["not a name"]', "abuse.dnsbl[0]: "),
        ("greylist = 1", "abuse.greylist: expected true or false, got 1"),
        ('greylist_delay = "soon"', "abuse.greylist_delay: "),
        (
            'greylist_delay = "2h"\ngreylist_window = "1h"',
            "abuse.greylist_window: must be longer than abuse.greylist_delay",
        ),
        ("greylist_whitelist_after = -1", "abuse.greylist_whitelist_after: expected 0 to"),
        ("rate = 1", "abuse.rate: unknown key"),
    ],
)
def test_errors(tmp_path: Path, table: str, error: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load(tmp_path, f"[abuse]\n{table}\n")
    assert error in str(raised.value)


def test_the_smtp_listener_checks_in_order(tmp_path: Path) -> None:
    path = write(tmp_path, '[abuse]\ndnsbl = ["zen.example"]\ngreylist = true\n')
    checks = receiver_checks(load_config(path))
    assert checks is not None
    kinds = [type(c) for c in checks.checks]
    assert kinds == [DNSBL, ClientRates, Greylist, AuthChecks]


def test_without_verification_the_abuse_checks_write_no_header(tmp_path: Path) -> None:
    path = write(tmp_path, "[auth_checks]\nenabled = false\n")
    checks = receiver_checks(load_config(path))
    assert isinstance(checks, RefusingChecks)
    assert [type(c) for c in checks.checks] == [ClientRates]
    path = write(
        tmp_path,
        '[auth_checks]\nenabled = false\n[abuse]\nip_messages = "0"\nip_recipients = "0"\n',
    )
    assert receiver_checks(load_config(path)) is None


def test_submission_listeners_get_the_sender_rates(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ""))
    checks = submission_checks(config, "submission")
    assert isinstance(checks, RefusingChecks)
    assert [type(c) for c in checks.checks] == [SenderRates]
    off = '[abuse]\nuser_messages = "0"\nuser_recipients = "0"\n'
    off += 'domain_messages = "0"\ndomain_recipients = "0"\n'
    assert submission_checks(load_config(write(tmp_path, off)), "submission") is None


def test_exempt_networks(tmp_path: Path) -> None:
    default = load(tmp_path, "")
    assert default.is_exempt("127.0.0.1") and default.is_exempt("::1")
    assert default.is_exempt("::ffff:127.0.0.9")
    assert not default.is_exempt("192.0.2.1") and not default.is_exempt("unknown")
    config = load(tmp_path, '[abuse]\nexempt = ["192.0.2.0/24", "2001:db8::/32"]\n')
    assert config.is_exempt("192.0.2.200") and config.is_exempt("2001:db8:5::1")
    assert not config.is_exempt("127.0.0.1")
    assert not load(tmp_path, "[abuse]\nexempt = []\n").is_exempt("127.0.0.1")
    with pytest.raises(ConfigError) as raised:
        load(tmp_path, '[abuse]\nexempt = ["192.0.2.0/33"]\n')
    assert 'abuse.exempt[0]: expected a network like "192.0.2.0/24"' in str(raised.value)
