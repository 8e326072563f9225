"""Configurations, certificates and DNS zones for the ``mailstead check`` tests."""

from __future__ import annotations

import datetime
from pathlib import Path

from click.testing import CliRunner, Result
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mailstead.cli.check import check

NOW = datetime.datetime.now(datetime.UTC)


def run_check(config: Path, *args: str) -> Result:
    """``mailstead --config CONFIG check ARGS``, through the ``check`` group alone."""
    return CliRunner().invoke(check, list(args), obj=config)


def make_certificate(
    directory: Path,
    names: tuple[str, ...] = ("mail.example.test",),
    *,
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
    issuer: str = "",
    key: ec.EllipticCurvePrivateKey | None = None,
) -> ec.EllipticCurvePrivateKey:
    """Write ``tls/cert.pem`` and ``tls/key.pem`` under ``directory``; return the key.

    With ``issuer`` the certificate is signed by a throwaway CA of that name
    (not self-signed); ``key`` writes that key instead of the certificate's.
    """
    own = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0] if names else "x")])
    signer, issuer_name = own, subject
    if issuer:
        signer = ec.generate_private_key(ec.SECP256R1())
        issuer_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(own.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or NOW - datetime.timedelta(days=1))
        .not_valid_after(not_after or NOW + datetime.timedelta(days=90))
    )
    if names:
        san = x509.SubjectAlternativeName([x509.DNSName(n) for n in names])
        builder = builder.add_extension(san, critical=False)
    cert = builder.sign(signer, hashes.SHA256())
    tls = directory / "tls"
    tls.mkdir(parents=True, exist_ok=True)
    (tls / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    written = key or own
    (tls / "key.pem").write_bytes(
        written.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return own
