"""`mailstead check config` on the certificate and key: each broken one made here."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.checks.conftest import NOW, make_certificate, run_check
from tests.checks.test_config import LISTEN_ANY_PORT

DAY = datetime.timedelta(days=1)
STARTTLS_ONLY = """
[listen]
smtp = ["127.0.0.1:0"]
submission = ["127.0.0.1:0"]
submissions = []
imap = ["127.0.0.1:0"]
imaps = []
pop3 = []
pop3s = []
"""


def config_with(tmp_path: Path, listen: str = LISTEN_ANY_PORT) -> Path:
    path = tmp_path / "mailstead.toml"
    path.write_text('hostname = "mail.example.test"\ndomains = ["example.test"]\n' + listen)
    return path


def problems(config: Path) -> list[str]:
    """The problem lines, without the summary."""
    return run_check(config, "config").output.splitlines()[:-1]


def test_no_certificate_with_implicit_tls_listeners_is_an_error(tmp_path: Path) -> None:
    config = config_with(tmp_path)
    result = run_check(config, "config")
    assert result.exit_code == 1
    cert = tmp_path / "var" / "tls" / "cert.pem"
    assert result.output.splitlines()[0] == (
        f"error: tls.cert: {cert} does not exist, and listen.submissions, listen.imaps, "
        "listen.pop3s cannot run without it (mailstead init makes a self-signed one)"
    )


def test_no_certificate_without_them_warns_that_no_one_can_log_in(tmp_path: Path) -> None:
    config = config_with(tmp_path, STARTTLS_ONLY)
    result = run_check(config, "config")
    assert result.exit_code == 0
    cert = tmp_path / "var" / "tls" / "cert.pem"
    assert result.output.splitlines() == [
        f"warning: tls.cert: {cert} does not exist: STARTTLS is not offered, so no client "
        "can log in (AUTH needs TLS); mailstead init makes a self-signed one",
        f"{config}: 0 errors, 1 warning; OK",
    ]


def test_a_missing_key(tmp_path: Path) -> None:
    make_certificate(tmp_path / "var", issuer="CA")
    key = tmp_path / "var" / "tls" / "key.pem"
    key.unlink()
    assert problems(config_with(tmp_path))[0].startswith(f"error: tls.key: {key} does not exist")


def test_an_unreadable_certificate(tmp_path: Path) -> None:
    make_certificate(tmp_path / "var", issuer="CA")
    cert = tmp_path / "var" / "tls" / "cert.pem"
    cert.unlink()
    cert.mkdir()  # unreadable even for root
    assert problems(config_with(tmp_path)) == [
        f"error: tls.cert: cannot read {cert}: Is a directory"
    ]


def test_garbage_instead_of_pem(tmp_path: Path) -> None:
    make_certificate(tmp_path / "var", issuer="CA")
    (tmp_path / "var" / "tls" / "cert.pem").write_text("hello\n")
    (tmp_path / "var" / "tls" / "key.pem").write_bytes(b"\x00\x01")
    tls = tmp_path / "var" / "tls"
    assert problems(config_with(tmp_path)) == [
        f"error: tls.cert: {tls / 'cert.pem'} holds no PEM certificate",
        f"error: tls.key: {tls / 'key.pem'} holds no PEM private key",
    ]


def test_an_encrypted_key(tmp_path: Path) -> None:
    key = make_certificate(tmp_path / "var", issuer="CA")
    path = tmp_path / "var" / "tls" / "key.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    assert problems(config_with(tmp_path)) == [
        f"error: tls.key: {path} is encrypted; serve cannot ask for its passphrase"
    ]


def test_a_key_of_another_certificate(tmp_path: Path) -> None:
    make_certificate(tmp_path / "var", issuer="CA", key=ec.generate_private_key(ec.SECP256R1()))
    tls = tmp_path / "var" / "tls"
    assert problems(config_with(tmp_path)) == [
        f"error: tls.key: {tls / 'key.pem'} is not the key of the certificate in {tls / 'cert.pem'}"
    ]


def test_an_expired_certificate(tmp_path: Path) -> None:
    end = NOW - DAY
    make_certificate(tmp_path / "var", issuer="CA", not_before=NOW - 90 * DAY, not_after=end)
    assert problems(config_with(tmp_path)) == [
        f"error: tls.cert: expired on {end:%Y-%m-%d %H:%M} UTC"
    ]


def test_a_certificate_not_valid_yet(tmp_path: Path) -> None:
    start = NOW + DAY
    make_certificate(tmp_path / "var", issuer="CA", not_before=start)
    assert problems(config_with(tmp_path)) == [
        f"error: tls.cert: not valid before {start:%Y-%m-%d %H:%M} UTC"
    ]


def test_a_certificate_expiring_soon_is_a_warning(tmp_path: Path) -> None:
    end = NOW + 5 * DAY + datetime.timedelta(hours=1)
    make_certificate(tmp_path / "var", issuer="CA", not_after=end)
    config = config_with(tmp_path)
    result = run_check(config, "config")
    assert result.exit_code == 0
    assert result.output.splitlines()[0] == (
        f"warning: tls.cert: expires on {end:%Y-%m-%d %H:%M} UTC, in 5 days: renew it"
    )


@pytest.mark.parametrize(
    ("names", "named"),
    [
        (("mail.example.test",), True),
        (("*.example.test",), True),
        (("MAIL.Example.Test.",), True),
        (("*.test",), False),  # a wildcard stands for one label only
        (("other.example.test", "example.test"), False),
    ],
)
def test_the_hostname_in_the_certificate(
    tmp_path: Path, names: tuple[str, ...], named: bool
) -> None:
    make_certificate(tmp_path / "var", names, issuer="CA")
    expected = (
        []
        if named
        else [
            "warning: tls.cert: the certificate does not name mail.example.test: clients that "
            "check it (mail clients, MTA-STS senders) refuse the connection"
        ]
    )
    assert problems(config_with(tmp_path)) == expected


def test_a_self_signed_certificate_is_a_warning(tmp_path: Path) -> None:
    make_certificate(tmp_path / "var")
    assert problems(config_with(tmp_path)) == [
        "warning: tls.cert: self-signed: MTAs accept it for STARTTLS, mail clients warn their users"
    ]


def test_no_listener_needs_no_certificate(tmp_path: Path) -> None:
    none = "[listen]\n" + "".join(
        f"{n} = []\n"
        for n in ("smtp", "submission", "submissions", "imap", "imaps", "pop3", "pop3s")
    )
    assert problems(config_with(tmp_path, none)) == []
