"""dkimpy's RSA done by OpenSSL: its pure-Python RSASSA-PKCS1-v1_5 replaced.

dkimpy computes RSA signatures and checks them in Python integers: turning
a 2048-bit number into bytes octet by octet and back, then ``pow``. That
was about half of what checking a DKIM-signed message cost on the
``smtp`` listener (~0.6 ms of ~1.3 ms), and several milliseconds for each
message signed with the private key's CRT in Python. :func:`install` puts
``cryptography``'s implementations in their place, in the ``dkim`` module
that calls them (DKIM and ARC, signing and verifying), taking the same
arguments: a ``hashlib`` object already fed the data, and dkimpy's parsed
key. The checks dkimpy makes around them (key sizes, tags, canonical
forms) are unchanged.
"""

from __future__ import annotations

import functools
import hashlib

import dkim
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

__all__ = ["install", "sign", "verify"]

_HASHES: dict[str, hashes.HashAlgorithm] = {"sha256": hashes.SHA256(), "sha1": hashes.SHA1()}
# dkimpy's parsed keys are dicts of ints, so keys are cached by their numbers.
_KEYS = 64


@functools.lru_cache(maxsize=_KEYS)
def _public_key(modulus: int, exponent: int) -> rsa.RSAPublicKey:
    return rsa.RSAPublicNumbers(exponent, modulus).public_key()


@functools.lru_cache(maxsize=_KEYS)
def _private_key(numbers: tuple[int, ...]) -> rsa.RSAPrivateKey:
    n, e, d, p, q, dmp1, dmq1, iqmp = numbers
    public = rsa.RSAPublicNumbers(e, n)
    return rsa.RSAPrivateNumbers(p, q, d, dmp1, dmq1, iqmp, public).private_key()


def _algorithm(digest: hashlib._Hash) -> Prehashed:
    return Prehashed(_HASHES[digest.name])


def verify(digest: hashlib._Hash, signature: bytes, public_key: dict[str, int]) -> bool:
    """RFC 8017 §8.2.2 RSASSA-PKCS1-v1_5-VERIFY of ``digest`` (dkimpy's signature)."""
    try:
        key = _public_key(public_key["modulus"], public_key["publicExponent"])
        key.verify(signature, digest.digest(), padding.PKCS1v15(), _algorithm(digest))
    except (InvalidSignature, ValueError, KeyError, UnsupportedAlgorithm):
        return False
    return True


def sign(digest: hashlib._Hash, private_key: dict[str, int]) -> bytes:
    """RFC 8017 §8.2.1 RSASSA-PKCS1-v1_5-SIGN of ``digest`` (dkimpy's signature)."""
    numbers = tuple(
        private_key[name]
        for name in (
            "modulus",
            "publicExponent",
            "privateExponent",
            "prime1",
            "prime2",
            "exponent1",
            "exponent2",
            "coefficient",
        )
    )
    return _private_key(numbers).sign(digest.digest(), padding.PKCS1v15(), _algorithm(digest))


def install() -> None:
    """Make dkimpy sign and verify RSA with :func:`sign` and :func:`verify` (idempotent)."""
    dkim.RSASSA_PKCS1_v1_5_verify = verify
    dkim.RSASSA_PKCS1_v1_5_sign = sign
