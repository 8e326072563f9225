"""Standard Webhooks signatures (standardwebhooks.com, spec 1.0.0), shared by sender and receiver.

A delivery carries three headers: ``webhook-id`` (the same on every retry),
``webhook-timestamp`` (Unix seconds of this attempt) and ``webhook-signature``,
a space-separated list of ``v1,<base64 HMAC-SHA256>`` over
``"{id}.{timestamp}.".encode() + body``, one per secret while a secret is
being rotated. Secrets are ``whsec_`` followed by the base64 key.

Standard library only: the receiver imports this without the server.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from secrets import token_bytes

__all__ = [
    "DEFAULT_TOLERANCE",
    "ID_HEADER",
    "SECRET_PREFIX",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "InvalidSecretError",
    "MalformedHeaderError",
    "MissingHeaderError",
    "SignatureMismatchError",
    "TimestampError",
    "Verified",
    "WebhookVerificationError",
    "generate_secret",
    "parse_secret",
    "sign",
    "sign_headers",
    "verify",
]

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"

SECRET_PREFIX = "whsec_"
# Spec, "Signature scheme": a symmetric key is random, 24 to 64 bytes.
MIN_KEY_BYTES = 24
MAX_KEY_BYTES = 64
NEW_KEY_BYTES = 32

# Spec, "Verifying signatures": reject timestamps outside a tolerance; 5 min
# either way is the common choice (clock skew both directions).
DEFAULT_TOLERANCE = 300.0

# Bounds on what a peer may make us parse: ids are short tokens, a timestamp
# is a few digits, and a rotation sends two or three signatures.
MAX_ID_LENGTH = 256
MAX_TIMESTAMP_DIGITS = 12
MAX_SIGNATURE_HEADER_LENGTH = 4096

_SIGNATURE_VERSION = "v1"


class InvalidSecretError(ValueError):
    """A secret is not ``whsec_`` + base64 of 24 to 64 bytes (a configuration error)."""


class WebhookVerificationError(Exception):
    """A delivery failed verification: the request must be refused (HTTP 401)."""


class MissingHeaderError(WebhookVerificationError):
    """One of ``webhook-id``, ``webhook-timestamp``, ``webhook-signature`` is absent or empty."""


class MalformedHeaderError(WebhookVerificationError):
    """A header is present but not well formed (too long, not an integer, a ``.`` in the id)."""


class TimestampError(WebhookVerificationError):
    """``webhook-timestamp`` is further from now than the tolerance (a replay, or a bad clock)."""

    def __init__(self, timestamp: int, now: float, tolerance: float) -> None:
        self.timestamp = timestamp
        self.now = now
        self.tolerance = tolerance
        what = "too old" if timestamp < now else "too far in the future"
        super().__init__(
            f"webhook-timestamp {timestamp} is {what}: "
            f"{abs(now - timestamp):.0f} s from now, tolerance {tolerance:.0f} s"
        )


class SignatureMismatchError(WebhookVerificationError):
    """No ``v1`` signature in ``webhook-signature`` matches any of the secrets."""


@dataclass(frozen=True, slots=True)
class Verified:
    """The headers of a delivery that passed :func:`verify`."""

    msg_id: str
    timestamp: int


def generate_secret(nbytes: int = NEW_KEY_BYTES) -> str:
    """A fresh random ``whsec_`` secret of ``nbytes`` key bytes."""
    if not MIN_KEY_BYTES <= nbytes <= MAX_KEY_BYTES:
        raise ValueError(f"a key is {MIN_KEY_BYTES} to {MAX_KEY_BYTES} bytes, not {nbytes}")
    return SECRET_PREFIX + base64.b64encode(token_bytes(nbytes)).decode("ascii")


def parse_secret(secret: str) -> bytes:
    """The HMAC key inside a ``whsec_`` secret; :class:`InvalidSecretError` if malformed.

    Missing ``=`` padding is tolerated (some providers strip it).
    """
    if not secret.startswith(SECRET_PREFIX):
        raise InvalidSecretError(f"a webhook secret starts with {SECRET_PREFIX!r}")
    encoded = secret[len(SECRET_PREFIX) :]
    encoded += "=" * (-len(encoded) % 4)
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidSecretError("a webhook secret is base64 after 'whsec_'") from None
    if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
        raise InvalidSecretError(
            f"a webhook secret's key is {MIN_KEY_BYTES} to {MAX_KEY_BYTES} bytes, not {len(key)}"
        )
    return key


def _check_id(msg_id: str) -> None:
    # Spec, "Signature scheme": the id must not contain "." or the signed
    # content "{id}.{timestamp}.{body}" could be split another way.
    if not msg_id or len(msg_id) > MAX_ID_LENGTH or "." in msg_id or not msg_id.isprintable():
        raise ValueError(f"a webhook id is 1 to {MAX_ID_LENGTH} printable characters, no '.'")


def _digest(key: bytes, msg_id: str, timestamp: int, body: bytes) -> bytes:
    content = f"{msg_id}.{timestamp}.".encode() + body
    # hmac.digest: OpenSSL's one-shot HMAC, half the cost of hmac.new().digest().
    return hmac.digest(key, content, hashlib.sha256)


@functools.lru_cache(maxsize=64)
def _signing_key(secret: str) -> bytes:
    """:func:`parse_secret`, remembered: a sender signs every POST with the same few."""
    return parse_secret(secret)


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``v1,<base64>`` signature of one delivery attempt with one secret."""
    _check_id(msg_id)
    digest = _digest(_signing_key(secret), msg_id, timestamp, body)
    return f"{_SIGNATURE_VERSION},{base64.b64encode(digest).decode('ascii')}"


def sign_headers(
    secrets: Sequence[str], msg_id: str, body: bytes, timestamp: int | None = None
) -> dict[str, str]:
    """The three headers of one attempt, signed with every secret (several during a rotation).

    ``timestamp`` defaults to now; each retry is a new attempt and gets a
    fresh timestamp and signatures while ``msg_id`` stays the same.
    """
    if not secrets:
        raise ValueError("signing needs at least one secret")
    when = int(time.time()) if timestamp is None else timestamp
    return {
        ID_HEADER: msg_id,
        TIMESTAMP_HEADER: str(when),
        SIGNATURE_HEADER: " ".join(sign(s, msg_id, when, body) for s in secrets),
    }


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if value is None:
        # Not lower-cased by the caller: look case-insensitively.
        value = next((v for k, v in headers.items() if k.lower() == name), None)
    if not value:
        raise MissingHeaderError(f"missing {name} header")
    return value.strip()


def _keys(secrets: str | Iterable[str]) -> list[bytes]:
    listed = [secrets] if isinstance(secrets, str) else list(secrets)
    keys = [parse_secret(s) for s in listed]
    if not keys:
        raise InvalidSecretError("verifying needs at least one secret")
    return keys


def verify(
    secrets: str | Iterable[str],
    body: bytes,
    headers: Mapping[str, str],
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> Verified:
    """Check one delivery over its raw ``body``; raise a :class:`WebhookVerificationError` if bad.

    ``secrets`` is one ``whsec_`` secret or several (accept any during a
    rotation). ``headers`` is matched case-insensitively. The timestamp may
    be ``tolerance`` seconds old or ahead of ``now`` (default: the clock).
    Each signature is compared in constant time (``hmac.compare_digest``);
    versions other than ``v1`` (e.g. ``v1a``, asymmetric) are skipped.
    """
    keys = _keys(secrets)
    msg_id = _header(headers, ID_HEADER)
    raw_timestamp = _header(headers, TIMESTAMP_HEADER)
    signatures = _header(headers, SIGNATURE_HEADER)
    if len(msg_id) > MAX_ID_LENGTH or "." in msg_id or not msg_id.isprintable():
        raise MalformedHeaderError(f"{ID_HEADER} is not a short token without '.'")
    if not (raw_timestamp.isascii() and raw_timestamp.isdigit()) or (
        len(raw_timestamp) > MAX_TIMESTAMP_DIGITS
    ):
        raise MalformedHeaderError(f"{TIMESTAMP_HEADER} is not Unix seconds")
    if len(signatures) > MAX_SIGNATURE_HEADER_LENGTH:
        raise MalformedHeaderError(f"{SIGNATURE_HEADER} is too long")
    timestamp = int(raw_timestamp)
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise TimestampError(timestamp, current, tolerance)
    expected = [_digest(key, msg_id, timestamp, body) for key in keys]
    for entry in signatures.split():
        version, _, encoded = entry.partition(",")
        if version != _SIGNATURE_VERSION:
            continue
        try:
            candidate = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        # Every key is compared, matched or not, so timing says nothing of which.
        if any([hmac.compare_digest(candidate, e) for e in expected]):
            return Verified(msg_id, timestamp)
    raise SignatureMismatchError("no webhook-signature matches the secret")
