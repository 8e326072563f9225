"""`mailstead dns-records` says so when the hostname fell back to localhost."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from mailstead.cli.dns_records import dns_records


def test_localhost_is_said_on_stderr(tmp_path: Path) -> None:
    config = tmp_path / "mailstead.toml"
    config.write_text('hostname = "localhost"\ndomains = ["example.test"]\n')
    result = CliRunner().invoke(dns_records, ["example.test"], obj=config)
    assert result.exit_code == 0
    assert result.stderr == (
        'mailstead: warning: hostname is "localhost", a name no other host can reach: set '
        'hostname = "mail.example.com" in the config (the banner, EHLO, MX and PTR records '
        "use it)\n"
    )
    assert "example.test. 3600 IN MX 10 localhost." in result.stdout


def test_a_real_hostname_is_not_warned_about(tmp_path: Path) -> None:
    config = tmp_path / "mailstead.toml"
    config.write_text('hostname = "mail.example.test"\ndomains = ["example.test"]\n')
    result = CliRunner().invoke(dns_records, ["example.test"], obj=config)
    assert result.exit_code == 0
    assert result.stderr == ""
