"""The server's TLS certificate: a self-signed one for a fresh install, and the
``ssl.SSLContext`` every TLS listener (STARTTLS and implicit TLS) shares.

A self-signed certificate is enough for opportunistic STARTTLS between MTAs
(RFC 7435: encryption without authentication still beats cleartext) and for
tests; operators replace it with a CA-issued one by pointing ``[tls]`` at it.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import NameOID

from mailstead.durable import write_file_atomically

__all__ = ["CertificateError", "ensure_self_signed", "server_context"]

_VALIDITY = datetime.timedelta(days=3650)

_SigningKey = (
    rsa.RSAPrivateKey
    | ec.EllipticCurvePrivateKey
    | ed25519.Ed25519PrivateKey
    | ed448.Ed448PrivateKey
)


class CertificateError(Exception):
    """A certificate or key cannot be created, read or used (one-line message)."""


def ensure_self_signed(cert_path: Path, key_path: Path, hostname: str) -> bool:
    """Create a self-signed certificate for ``hostname`` unless one is there.

    Returns False if both files exist (they are never overwritten), True if a
    certificate was written. The key is ECDSA P-256, mode 0600; the
    certificate is valid for ten years for ``hostname``, ``localhost``,
    ``127.0.0.1`` and ``::1``.

    If only the key exists (e.g. a crash between the two writes, or an
    operator-supplied key), a certificate is made for that key. A certificate
    without its key is an error: guessing would break the operator's setup.
    """
    have_cert, have_key = cert_path.exists(), key_path.exists()
    if have_cert and have_key:
        return False
    if have_cert:
        raise CertificateError(f"{cert_path} exists but its key {key_path} is missing")
    if have_key:
        key = _load_key(key_path)
    else:
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        # Key first: a crash before the certificate is written leaves a state
        # the next call completes (see above).
        _write_atomically(key_path, pem, 0o600)
    cert = _self_signed(key, hostname)
    _write_atomically(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return True


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A TLS server context using ``cert`` and ``key``, TLS 1.2 or newer."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    # RFC 8996 deprecates TLS 1.0/1.1; RFC 8314 §4.1 asks for TLS 1.2 or later.
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    # Python's default cipher list (forward-secret AEAD first, no RC4/3DES/
    # NULL/export) is kept on purpose: narrowing it further makes some MTAs
    # fall back to cleartext, which is worse than any cipher it allows.
    ctx.options |= ssl.OP_NO_COMPRESSION  # CRIME
    ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.options |= ssl.OP_SINGLE_ECDH_USE | ssl.OP_SINGLE_DH_USE
    ctx.options |= ssl.OP_NO_RENEGOTIATION  # client-initiated renegotiation is a DoS vector
    try:
        ctx.load_cert_chain(certfile=cert, keyfile=key)
    except (ssl.SSLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc.strerror or str(exc)
        msg = f"cannot load TLS certificate {cert} with key {key}: {reason}"
        raise CertificateError(msg) from None
    return ctx


def _self_signed(key: _SigningKey, hostname: str) -> x509.Certificate:
    names: list[x509.GeneralName] = [x509.DNSName(hostname)]
    if hostname != "localhost":
        names.append(x509.DNSName("localhost"))
    names += [
        x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")),
        x509.IPAddress(ipaddress.IPv6Address("::1")),
    ]
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname[:64])])
    now = datetime.datetime.now(datetime.UTC)
    algorithm = (
        None
        if isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey)
        else hashes.SHA256()
    )
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        # Back-dated a little so a peer with a slow clock does not refuse it.
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(key, algorithm)
    )


def _load_key(path: Path) -> _SigningKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError, OSError) as exc:
        raise CertificateError(f"cannot read private key {path}: {exc}") from None
    if not isinstance(key, _SigningKey):
        raise CertificateError(f"private key {path}: unsupported key type")
    return key


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` via a temporary file, fsync, rename, fsync dir."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # O_EXCL + explicit mode: the key is never readable by others, not even briefly.
        write_file_atomically(path, data, mode)
    except OSError as exc:
        raise CertificateError(f"cannot write {path}: {exc.strerror or exc}") from None
