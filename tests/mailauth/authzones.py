"""DNS data and signed messages for the verification tests (unit and e2e).

One RSA key signs for ``sender.test``; its public half is published at
``sel._domainkey.sender.test``. ``127.0.0.1`` is the only address the SPF
records of the sending domains authorise.
"""

from __future__ import annotations

import base64
import functools

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mailstead.testing.dns import Zones

AUTHORISED_IP = "127.0.0.1"
STRANGER_IP = "192.0.2.9"


def private_key(seed: int = 0) -> bytes:
    """A 2048-bit RSA key in PEM (one per seed, made once per test run)."""
    return _key(seed)


@functools.cache
def _key(seed: int) -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def dkim_txt(pem: bytes) -> str:
    key = serialization.load_pem_private_key(pem, password=None)
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode("ascii")


def zones() -> Zones:
    return {
        "sender.test": {"TXT": ["v=spf1 ip4:127.0.0.1 -all"], "A": ["127.0.0.1"]},
        "_dmarc.sender.test": {"TXT": ["v=DMARC1; p=reject"]},
        "sel._domainkey.sender.test": {"TXT": [dkim_txt(private_key())]},
        # Signs with a key that is not the published one (seed 1 signs, seed 0 is published).
        "quarantine.test": {"TXT": ["v=spf1 ip4:127.0.0.1 -all"]},
        "_dmarc.quarantine.test": {"TXT": ["v=DMARC1; p=quarantine"]},
        "relaxed.test": {"TXT": ["v=spf1 -all"]},
        "_dmarc.relaxed.test": {"TXT": ["v=DMARC1; p=none"]},
        "slow.test": {"TXT": ["v=spf1 -all"]},
    }


def message(
    *,
    from_: str = "Alice <alice@sender.test>",
    body: bytes = b"Hello Bob.\r\n",
    extra: bytes = b"",
) -> bytes:
    return (
        b"From: " + from_.encode() + b"\r\n"
        b"To: bob@example.test\r\n"
        b"Subject: greetings\r\n"
        b"Message-ID: <1@sender.test>\r\n" + extra + b"\r\n" + body
    )


def sign(content: bytes, *, domain: str = "sender.test", seed: int = 0) -> bytes:
    """``content`` with a DKIM-Signature of ``domain`` (selector ``sel``) prepended."""
    signature = dkim.sign(
        content,
        b"sel",
        domain.encode(),
        private_key(seed),
        include_headers=[b"from", b"to", b"subject", b"message-id"],
    )
    return signature.replace(b"\n", b"\r\n").replace(b"\r\r\n", b"\r\n") + content
