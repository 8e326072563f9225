"""The TLS certificate and key of ``[tls]``, checked before ``serve`` needs them.

Each failure ``serve`` would meet later (a missing or unreadable file, not
PEM, a key that is not the certificate's, an expired certificate) is an
error naming ``tls.cert`` or ``tls.key``; what only weakens the service (no
certificate where STARTTLS is optional, a certificate about to expire, one
that does not name the hostname, a self-signed one) is a warning.
"""

from __future__ import annotations

import datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import NameOID

from mailstead.checks.problem import Problem
from mailstead.config import Config
from mailstead.tlscert import CertificateError, server_context

__all__ = ["EXPIRY_WARNING", "IMPLICIT_TLS", "certificate_problems", "names_hostname"]

#: A certificate expiring sooner than this is a warning.
EXPIRY_WARNING = datetime.timedelta(days=14)
#: Listeners that speak TLS from the first byte (RFC 8314 §3.3) and so
#: cannot run without a certificate; the others offer STARTTLS when they can.
IMPLICIT_TLS = ("submissions", "imaps", "pop3s")


def certificate_problems(config: Config, now: datetime.datetime | None = None) -> list[Problem]:
    """Problems with ``config.tls`` for the listeners ``config`` runs."""
    now = now or datetime.datetime.now(datetime.UTC)
    cert_path, key_path = config.tls.cert, config.tls.key
    implicit = [name for name in IMPLICIT_TLS if getattr(config.listen, name)]
    starttls = [
        name for name in ("smtp", "submission", "imap", "pop3") if getattr(config.listen, name)
    ]
    if not implicit and not starttls:
        return []
    if not cert_path.exists() or not key_path.exists():
        missing = cert_path if not cert_path.exists() else key_path
        key = "tls.cert" if missing == cert_path else "tls.key"
        if implicit:
            names = ", ".join(f"listen.{n}" for n in implicit)
            reason = f"{missing} does not exist, and {names} cannot run without it"
            return [Problem("error", key, reason + " (mailstead init makes a self-signed one)")]
        # RFC 8314 §3.3 / RFC 3207 §4: no password goes over clear text, so
        # without TLS submission, IMAP and POP3 cannot log anyone in.
        reason = (
            f"{missing} does not exist: STARTTLS is not offered, so no client can "
            "log in (AUTH needs TLS); mailstead init makes a self-signed one"
        )
        return [Problem("warning", key, reason)]

    problems: list[Problem] = []
    chain = _certificates(cert_path, problems)
    private = _private_key(key_path, problems)
    if chain is None or private is None:
        return problems
    leaf = chain[0]
    if _spki(leaf.public_key()) != _spki(private.public_key()):
        reason = f"{key_path} is not the key of the certificate in {cert_path}"
        return [*problems, Problem("error", "tls.key", reason)]
    problems += _validity(leaf, now)
    if not names_hostname(leaf, config.hostname):
        reason = (
            f"the certificate does not name {config.hostname}: clients that check it "
            "(mail clients, MTA-STS senders) refuse the connection"
        )
        problems.append(Problem("warning", "tls.cert", reason))
    if leaf.issuer == leaf.subject:
        reason = "self-signed: MTAs accept it for STARTTLS, mail clients warn their users"
        problems.append(Problem("warning", "tls.cert", reason))
    if not any(p.severity == "error" for p in problems):
        try:  # whatever else OpenSSL refuses, as serve would meet it
            server_context(cert_path, key_path)
        except CertificateError as exc:
            problems.append(Problem("error", "tls.cert", str(exc)))
    return problems


def _read(path: Path, key: str, problems: list[Problem]) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError as exc:
        problems.append(Problem("error", key, f"cannot read {path}: {exc.strerror or exc}"))
        return None


def _certificates(path: Path, problems: list[Problem]) -> list[x509.Certificate] | None:
    data = _read(path, "tls.cert", problems)
    if data is None:
        return None
    try:
        chain = x509.load_pem_x509_certificates(data)
    except ValueError:
        problems.append(Problem("error", "tls.cert", f"{path} holds no PEM certificate"))
        return None
    return chain


def _private_key(path: Path, problems: list[Problem]) -> PrivateKeyTypes | None:
    data = _read(path, "tls.key", problems)
    if data is None:
        return None
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:
        reason = f"{path} is encrypted; serve cannot ask for its passphrase"
    except (ValueError, UnsupportedAlgorithm):
        reason = f"{path} holds no PEM private key"
    problems.append(Problem("error", "tls.key", reason))
    return None


def _spki(public: object) -> bytes:
    if not hasattr(public, "public_bytes"):
        return b""
    data: bytes = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return data


def _validity(cert: x509.Certificate, now: datetime.datetime) -> list[Problem]:
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    if now < start:
        return [Problem("error", "tls.cert", f"not valid before {start:%Y-%m-%d %H:%M} UTC")]
    if now >= end:
        return [Problem("error", "tls.cert", f"expired on {end:%Y-%m-%d %H:%M} UTC")]
    if end - now < EXPIRY_WARNING:
        days = (end - now).days
        reason = f"expires on {end:%Y-%m-%d %H:%M} UTC, in {days} days: renew it"
        return [Problem("warning", "tls.cert", reason)]
    return []


def names_hostname(cert: x509.Certificate, hostname: str) -> bool:
    """Whether ``cert`` is valid for ``hostname`` (RFC 6125 §6.4).

    DNS names of the subjectAltName, a wildcard standing for exactly one
    leftmost label (§6.4.3); the common name only without any (§6.4.4).
    """
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        dns_names = names.value.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        dns_names = [
            str(attr.value) for attr in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        ]
    host = hostname.lower().rstrip(".")
    for name in (n.lower().rstrip(".") for n in dns_names):
        if name == host:
            return True
        if name.startswith("*.") and "." in host and host.split(".", 1)[1] == name[2:]:
            return True
    return False
