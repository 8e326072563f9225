"""``mailstead tls status`` and ``tls renew``: what an operator sees, failures on one line.

Successful orders from the command line: tests/acme_client/test_pebble.py.
"""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from mailstead.acme_client import AcmeFiles
from mailstead.cli.tls import tls

BASE = 'hostname = "mx.example.test"\ndomains = ["example.test"]\n'
# Nothing listens on port 1: the order fails at once, without a network.
ACME = '[tls.acme]\ndirectory = "https://127.0.0.1:1/dir"\nlisten = ["127.0.0.1:0"]\n'


def config(tmp_path: Path, text: str = ACME) -> Path:
    path = tmp_path / "mailstead.toml"
    path.write_text(BASE + text)
    return path


def test_without_acme_both_commands_say_so(tmp_path: Path) -> None:
    path = config(tmp_path, "")
    for args in (["status"], ["renew"]):
        result = CliRunner().invoke(tls, args, obj=path)
        assert result.exit_code == 1
        assert result.output.startswith("mailstead: [tls.acme] is not configured")
        assert result.output.count("\n") == 1


def test_a_failed_renewal_is_one_line_and_shows_in_status(tmp_path: Path) -> None:
    path = config(tmp_path)
    result = CliRunner().invoke(tls, ["renew"], obj=path)
    assert result.exit_code == 1
    assert result.output == (
        "mailstead: renewal failed: cannot reach https://127.0.0.1:1/dir: Connection refused\n"
    )
    lines = CliRunner().invoke(tls, ["status"], obj=path).output.splitlines()
    assert lines[0] == "directory: https://127.0.0.1:1/dir (http-01)"
    assert lines[1] == "names: mx.example.test"
    assert lines[2] == (
        f"certificate: none yet (serving {tmp_path}/var/tls/cert.pem until one is issued)"
    )
    assert lines[3].startswith("renews: 20")  # after the backoff, not now
    assert lines[4] == (
        "failures in a row: 1, last: cannot reach https://127.0.0.1:1/dir: Connection refused"
    )
    # By hand, the wait after a failure does not apply: it fails again, at once.
    assert "failed" in CliRunner().invoke(tls, ["renew"], obj=path).output
    assert AcmeFiles(tmp_path / "var").backoff().failures == 2


def test_renew_while_a_server_is_ordering(tmp_path: Path) -> None:
    path = config(tmp_path)
    with AcmeFiles(tmp_path / "var").order_lock() as mine:
        assert mine
        result = CliRunner().invoke(tls, ["renew", "--force"], obj=path)
    assert result.exit_code == 1
    assert result.output == (
        "mailstead: another process is renewing the certificate now; try again later\n"
    )
