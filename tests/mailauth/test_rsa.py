"""dkimpy's RSA by OpenSSL gives dkimpy's own answers, byte for byte."""

from __future__ import annotations

import hashlib

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa as crypto_rsa
from dkim import crypto as pure

from mailstead.mailauth import rsa
from tests.mailauth import authzones


@pytest.fixture(scope="module")
def keys() -> tuple[dict[str, int], dict[str, int]]:
    key = crypto_rsa.generate_private_key(public_exponent=65537, key_size=2048)
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    private = pure.parse_private_key(der)
    public = {"modulus": private["modulus"], "publicExponent": private["publicExponent"]}
    return private, public


@pytest.mark.parametrize("name", ["sha256", "sha1"])
def test_the_same_signature_as_dkimpys_own(
    keys: tuple[dict[str, int], dict[str, int]], name: str
) -> None:
    private, public = keys
    digest = hashlib.new(name, b"the canonical headers")
    ours = rsa.sign(digest.copy(), private)
    assert ours == pure.RSASSA_PKCS1_v1_5_sign(digest.copy(), private)
    assert rsa.verify(digest.copy(), ours, public)
    assert pure.RSASSA_PKCS1_v1_5_verify(digest.copy(), ours, public)


def test_a_wrong_digest_signature_or_key_does_not_verify(
    keys: tuple[dict[str, int], dict[str, int]],
) -> None:
    private, public = keys
    digest = hashlib.sha256(b"signed")
    signature = rsa.sign(digest.copy(), private)
    assert not rsa.verify(hashlib.sha256(b"other"), signature, public)
    assert not rsa.verify(digest.copy(), signature[:-1] + bytes([signature[-1] ^ 1]), public)
    assert not rsa.verify(digest.copy(), signature[1:], public)  # too short
    assert not rsa.verify(digest.copy(), signature, {"modulus": 3, "publicExponent": 3})
    assert not rsa.verify(digest.copy(), signature, {})


def test_dkimpy_signs_and_verifies_through_it() -> None:
    assert dkim.RSASSA_PKCS1_v1_5_verify is rsa.verify
    assert dkim.RSASSA_PKCS1_v1_5_sign is rsa.sign
    signed = authzones.sign(authzones.message())
    assert signed.startswith(b"DKIM-Signature:")
