"""Password hashes: scrypt (RFC 7914) in a self-describing string, checked in constant time.

The directory stores only these hashes. :data:`DUMMY_HASH` is what a login
for a user that does not exist is checked against, so "no such user" costs
the same work as "wrong password".
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

__all__ = ["DUMMY_HASH", "hash_password", "verify_password"]

# scrypt cost (RFC 7914): N = 2**14, r = 8, p = 1 takes 16 MiB and ~50 ms,
# the interactive-login parameters recommended by the scrypt paper and OWASP.
_SCRYPT_LN = 14
_SCRYPT_R = 8
_SCRYPT_P = 1
_SCRYPT_DKLEN = 32
_SCRYPT_MAXMEM = 256 * 1024 * 1024  # ceiling for hashes made with higher costs
_HASH_RE = re.compile(
    r"\$scrypt\$ln=(\d{1,2}),r=(\d{1,2}),p=(\d{1,2})\$([A-Za-z0-9+/]{22})\$([A-Za-z0-9+/]{43})"
)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def _scrypt(password: bytes, salt: bytes, ln: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password, salt=salt, n=1 << ln, r=r, p=p, maxmem=_SCRYPT_MAXMEM, dklen=_SCRYPT_DKLEN
    )


def hash_password(password: str) -> str:
    """A self-describing scrypt hash: ``$scrypt$ln=14,r=8,p=1$<salt>$<hash>`` (base64)."""
    salt = secrets.token_bytes(16)
    ln, r, p = _SCRYPT_LN, _SCRYPT_R, _SCRYPT_P
    digest = _scrypt(password.encode("utf-8"), salt, ln, r, p)
    return f"$scrypt$ln={ln},r={r},p={p}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, encoded: str) -> bool:
    """True if ``password`` matches the hash ``encoded`` (constant-time compare)."""
    m = _HASH_RE.fullmatch(encoded)
    if m is None:
        return False
    ln, r, p = int(m[1]), int(m[2]), int(m[3])
    if not (1 <= ln <= 20 and 1 <= r <= 32 and 1 <= p <= 16):
        return False
    digest = _scrypt(password.encode("utf-8"), _unb64(m[4]), ln, r, p)
    return hmac.compare_digest(digest, _unb64(m[5]))


# Verified against when the user does not exist, so that "no such user" costs
# the same scrypt work as "wrong password" and timing reveals nothing.
DUMMY_HASH = (
    f"$scrypt$ln={_SCRYPT_LN},r={_SCRYPT_R},p={_SCRYPT_P}$"
    f"{_b64(bytes(16))}${_b64(bytes(_SCRYPT_DKLEN))}"
)
