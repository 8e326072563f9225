"""DKIM signing (RFC 6376) of mail from our domains, with RSA and Ed25519 keys.

Keys live under the data directory, one PEM (PKCS#8) private key per file::

    <data_dir>/dkim/<domain>/<selector>.rsa.key        RSA-2048, rsa-sha256
    <data_dir>/dkim/<domain>/<selector>.ed25519.key    Ed25519, ed25519-sha256 (RFC 8463)

Directories are mode 0700 and key files 0600. The selector is derived from the
day the key was made: ``ms`` + ``YYYYMMDD`` + ``r`` (RSA) or ``e`` (Ed25519),
e.g. ``ms20261105r`` and ``ms20261105e``, so a rotated key gets a new selector
and the old one can stay published until mail signed with it has arrived. A
domain may hold several keys per algorithm (during a rotation); mail is signed
with the newest of each, and ``mailstead dns-records`` prints a TXT record for
every key on disk.

Every message is signed twice, once per algorithm (RFC 8463 §1: Ed25519 is
new, so signers should add an RSA signature that every verifier understands):

* ``c=relaxed/relaxed`` (RFC 6376 §3.4.2, §3.4.4): survives the header
  refolding and trailing-whitespace changes relays make.
* no ``l=`` tag (RFC 6376 §8.2: a body length limit lets anyone append content
  under our signature).
* oversigning (RFC 6376 §5.4.2, §8.15): each signed header field is listed in
  ``h=`` once more than the message has it. The extra entry signs "no such
  field", so a From (or Subject, To …) added in transit breaks the signature
  instead of being displayed above the signed one.

Signing uses dkimpy; its Ed25519 support needs PyNaCl (the ``dkimpy[ed25519]``
extra). Which domain signs is the caller's choice; :func:`signing_domain` gives
the usual answer: the From domain, if it is one of ours (DMARC alignment,
RFC 7489 §3.1.1).
"""

from __future__ import annotations

import base64
import collections
import datetime
import email.headerregistry
import email.parser
import email.policy
import fcntl
import os
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from mailstead.addresses import AddressError, normalize_domain
from mailstead.durable import write_file_atomically

__all__ = [
    "SIGNED_HEADERS",
    "DKIMError",
    "DKIMKey",
    "DKIMKeys",
    "DKIMSigner",
    "oversigned_headers",
    "signing_domain",
    "txt_record",
]

Algorithm = Literal["rsa", "ed25519"]

#: Header fields signed when present (RFC 6376 §5.4.1 recommendations), in
#: ``h=`` order; each is oversigned (listed once more than it occurs). From
#: is always signed (RFC 6376 §5.4: it MUST be).
SIGNED_HEADERS: tuple[str, ...] = (
    "from",
    "sender",
    "reply-to",
    "subject",
    "date",
    "to",
    "cc",
    "message-id",
    "in-reply-to",
    "references",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
)

_RSA_BITS = 2048  # RFC 8301 §3.2: at least 1024, SHOULD be 2048 or more
#: Queued messages whose signatures a signer keeps (about 1 KB each).
REMEMBERED_SIGNATURES = 4096
_SUFFIX: dict[Algorithm, str] = {"rsa": "r", "ed25519": "e"}
_DKIMPY_ALGORITHM: dict[Algorithm, bytes] = {"rsa": b"rsa-sha256", "ed25519": b"ed25519-sha256"}
_KEY_FILE = re.compile(r"([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)\.(rsa|ed25519)\.key")


class DKIMError(Exception):
    """A DKIM key cannot be made, read or used, or a message cannot be signed (one line)."""


@dataclass(frozen=True, slots=True)
class DKIMKey:
    """One private key of a domain, as loaded from ``path``."""

    #: The signing domain (``d=``), normalised.
    domain: str
    #: The selector (``s=``): the key's file name up to the algorithm.
    selector: str
    #: ``"rsa"`` or ``"ed25519"``.
    algorithm: Algorithm
    #: The PEM file the key was read from.
    path: Path
    #: The ``p=`` value of the key record: base64 of the DER SubjectPublicKeyInfo
    #: for RSA (RFC 6376 §3.6.1), of the raw 32-byte public key for Ed25519
    #: (RFC 8463 §4).
    public_key: str
    #: The private key in the form dkimpy takes (PEM for RSA, base64 seed for Ed25519).
    _dkimpy_key: bytes = field(repr=False)


def txt_record(key: DKIMKey) -> tuple[str, str]:
    """The DNS TXT record that publishes ``key``: ``(name, value)``, name without final dot."""
    # RFC 6376 §3.6.2.1: <selector>._domainkey.<domain>; §3.6.1 tags.
    return (
        f"{key.selector}._domainkey.{key.domain}",
        f"v=DKIM1; k={key.algorithm}; p={key.public_key}",
    )


class DKIMKeys:
    """Owns the DKIM private keys under ``<data_dir>/dkim/``: creates, lists, loads them."""

    def __init__(
        self, data_dir: Path, today: Callable[[], datetime.date] = datetime.date.today
    ) -> None:
        self.root = data_dir / "dkim"
        self._today = today
        # Parsed keys by path, valid while (inode, mtime, size) is unchanged:
        # loading an RSA key (with its consistency checks) costs ~15 ms.
        self._cache: dict[Path, tuple[tuple[int, int, int], DKIMKey]] = {}

    #: The TXT record publishing a key (also a module-level function).
    txt_record = staticmethod(txt_record)

    def keys(self, domain: str) -> list[DKIMKey]:
        """Every key of ``domain`` on disk: RSA before Ed25519, each in reverse selector
        order (newest first, for the date-derived selectors this module makes)."""
        directory = self._domain_dir(domain)
        try:
            names = os.listdir(directory)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise DKIMError(f"cannot list {directory}: {exc.strerror or exc}") from None
        found: list[tuple[Algorithm, str]] = []
        for name in names:
            m = _KEY_FILE.fullmatch(name)
            if m:
                algorithm: Algorithm = "rsa" if m.group(2) == "rsa" else "ed25519"
                found.append((algorithm, m.group(1)))
        found.sort(key=lambda item: item[1], reverse=True)  # newest selector first
        found.sort(key=lambda item: item[0] != "rsa")  # stable: RSA, then Ed25519
        return [self._load(directory, algorithm, selector) for algorithm, selector in found]

    def signing_keys(self, domain: str) -> list[DKIMKey]:
        """The keys mail from ``domain`` is signed with: the first of :meth:`keys` per algorithm."""
        newest: dict[Algorithm, DKIMKey] = {}
        for key in self.keys(domain):
            newest.setdefault(key.algorithm, key)
        return list(newest.values())

    def ensure(self, domain: str) -> list[DKIMKey]:
        """The signing keys of ``domain``, first creating any algorithm's key that is missing.

        Idempotent, and safe against concurrent callers (``serve`` and the CLI):
        creation happens under an exclusive lock on ``<domain dir>/.lock``.
        """
        directory = self._domain_dir(domain)
        try:
            _make_private_dir(self.root)
            _make_private_dir(directory)
            lock_fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            raise DKIMError(f"cannot create {directory}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            have = {key.algorithm for key in self.signing_keys(domain)}
            stamp = self._today().strftime("%Y%m%d")
            for algorithm in ("rsa", "ed25519"):
                if algorithm not in have:
                    selector = f"ms{stamp}{_SUFFIX[algorithm]}"
                    _write_key(directory / f"{selector}.{algorithm}.key", _generate(algorithm))
        finally:
            os.close(lock_fd)  # releases the lock
        return self.signing_keys(domain)

    def _domain_dir(self, domain: str) -> Path:
        # Normalising also makes the name safe as a path component: only
        # letters, digits, hyphens and dots survive, never "..", "/" or "[".
        try:
            name = normalize_domain(domain)
        except AddressError:
            raise DKIMError(f"invalid domain {domain!r}") from None
        if name.startswith("["):
            raise DKIMError(f"invalid domain {domain!r}: an address literal cannot sign")
        return self.root / name

    def _load(self, directory: Path, algorithm: Algorithm, selector: str) -> DKIMKey:
        path = directory / f"{selector}.{algorithm}.key"
        try:
            st = os.stat(path)
            version = (st.st_ino, st.st_mtime_ns, st.st_size)
            cached = self._cache.get(path)
            if cached is not None and cached[0] == version:
                return cached[1]
            private = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (ValueError, TypeError, OSError) as exc:
            raise DKIMError(f"cannot read DKIM key {path}: {exc}") from None
        if algorithm == "rsa" and isinstance(private, rsa.RSAPrivateKey):
            public = private.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            # dkimpy reads PKCS#1 or PKCS#8 PEM.
            signing = private.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        elif algorithm == "ed25519" and isinstance(private, ed25519.Ed25519PrivateKey):
            public = private.public_key().public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw
            )
            # dkimpy (PyNaCl) takes the base64 32-byte seed.
            signing = base64.b64encode(
                private.private_bytes(
                    serialization.Encoding.Raw,
                    serialization.PrivateFormat.Raw,
                    serialization.NoEncryption(),
                )
            )
        else:
            raise DKIMError(f"DKIM key {path} is not an {algorithm} key")
        key = DKIMKey(
            domain=directory.name,
            selector=selector,
            algorithm=algorithm,
            path=path,
            public_key=base64.b64encode(public).decode("ascii"),
            _dkimpy_key=signing,
        )
        self._cache[path] = (version, key)
        return key


class DKIMSigner:
    """Signs outgoing messages with a domain's keys from a :class:`DKIMKeys`.

    Keys are looked up on every call (parsed ones are cached while their file
    is unchanged), so a rotated key is used at once. A domain without keys is
    not signed: keys are made by :meth:`DKIMKeys.ensure`, which
    ``mailstead dns-records`` calls and the server should call for each
    domain at start.
    """

    def __init__(self, keys: DKIMKeys, *, remember: int = REMEMBERED_SIGNATURES) -> None:
        self.keys = keys
        # Signatures by queue id, most recent last (RSA signing costs ~5 ms
        # of CPU; a message bound for several domains, or tried again, is
        # signed once per process). Delivery threads share it.
        self._remembered: collections.OrderedDict[str, bytes] = collections.OrderedDict()
        self._remember = remember
        self._lock = threading.Lock()
        # The domains of one message are prepared at once: the second waits
        # for the first one's signature instead of making its own.
        self._signing = [threading.Lock() for _ in range(16)]

    def sign(self, message: bytes, domain: str, *, queue_id: str | None = None) -> bytes:
        """The ``DKIM-Signature`` fields (CRLF-terminated, folded) to prepend to ``message``.

        One signature per signing key: RSA first, then Ed25519. Empty if
        ``domain`` has no key. Raises :class:`DKIMError` if the header section
        cannot be parsed or the message has no From field. With ``queue_id``,
        the fields made for that queued message before are given again: its
        content never changes, and a key rotated since stays published while
        mail signed with it may still be in flight.
        """
        if queue_id is None:
            return self._sign(message, domain)
        with self._signing[hash(queue_id) % len(self._signing)]:
            with self._lock:
                known = self._remembered.get(queue_id)
            if known is not None:
                return known
            fields = self._sign(message, domain)
            if fields:  # (none yet: a key made later signs the next attempt)
                with self._lock:
                    self._remembered[queue_id] = fields
                    while len(self._remembered) > self._remember:
                        self._remembered.popitem(last=False)
            return fields

    def _sign(self, message: bytes, domain: str) -> bytes:
        keys = self.keys.signing_keys(domain)
        if not keys:
            return b""
        include = oversigned_headers(message)
        return b"".join(_dkimpy_sign(message, key, include) for key in keys)


def oversigned_headers(message: bytes) -> list[bytes]:
    """The ``h=`` list for ``message``: each present :data:`SIGNED_HEADERS` field n+1 times."""
    counts = _header_counts(message)
    if not counts.get(b"from"):
        raise DKIMError("message has no From header field")  # RFC 5322 §3.6: required
    include: list[bytes] = []
    for name in SIGNED_HEADERS:
        n = counts.get(name.encode("ascii"), 0)
        if n:
            include += [name.encode("ascii")] * (n + 1)
    return include


def _header_counts(message: bytes) -> dict[bytes, int]:
    # dkimpy's own parser, so the counts match the fields dkimpy will select.
    try:
        headers, _body = dkim.rfc822_parse(message)
    except dkim.DKIMException as exc:
        raise DKIMError(f"cannot sign: {_first_line(exc)}") from None
    counts: dict[bytes, int] = {}
    for name, _value in headers:
        key = bytes(name).lower()
        counts[key] = counts.get(key, 0) + 1
    return counts


def _dkimpy_sign(message: bytes, key: DKIMKey, include: list[bytes]) -> bytes:
    """One DKIM-Signature field made by dkimpy (typed wrapper; dkimpy has no stubs)."""
    try:
        signature = dkim.sign(
            message,
            key.selector.encode("ascii"),
            key.domain.encode("ascii"),
            key._dkimpy_key,
            canonicalize=(b"relaxed", b"relaxed"),
            signature_algorithm=_DKIMPY_ALGORITHM[key.algorithm],
            include_headers=include,
            length=False,  # RFC 6376 §8.2: no l=
            linesep=b"\r\n",
        )
    except dkim.DKIMException as exc:
        raise DKIMError(f"cannot sign with {key.path}: {_first_line(exc)}") from None
    if not isinstance(signature, bytes):
        raise DKIMError("dkimpy returned no signature")
    return signature


def signing_domain(message: bytes, our_domains: Iterable[str]) -> str | None:
    """The domain that should sign ``message``: its From domain if it is one of ``our_domains``.

    None when the From field is missing, repeated, unparsable, holds other
    than exactly one mailbox, or names a domain that is not ours. Only the
    header section is parsed; this never raises.
    """
    try:
        ours = {normalize_domain(d) for d in our_domains}
        end = _header_end(message)
        text = message[:end].decode("utf-8", "surrogateescape")  # RFC 6532: UTF-8 headers
        parsed = email.parser.HeaderParser(policy=email.policy.default).parsestr(text)
        fields = parsed.get_all("from") or []
        if len(fields) != 1:  # RFC 5322 §3.6: exactly one From
            return None
        header = fields[0]
        if not isinstance(header, email.headerregistry.AddressHeader):
            return None
        if len(header.addresses) != 1:
            return None
        domain = normalize_domain(header.addresses[0].domain)
    except Exception:  # garbage in any form means "do not sign", never a crash
        return None
    return domain if domain in ours else None


def _header_end(message: bytes) -> int:
    """Index of the blank line ending the header section (or the message length)."""
    ends = [i for i in (message.find(b"\r\n\r\n"), message.find(b"\n\n")) if i >= 0]
    return min(ends) if ends else len(message)


def _generate(algorithm: str) -> bytes:
    private: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
    if algorithm == "rsa":
        private = rsa.generate_private_key(public_exponent=65537, key_size=_RSA_BITS)
    else:
        private = ed25519.Ed25519PrivateKey.generate()
    return private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _make_private_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, mode=0o700)
    except FileExistsError:
        return
    os.chmod(path, 0o700)  # whatever the umask


def _write_key(path: Path, pem: bytes) -> None:
    """Write a new key file, 0600 from its first byte, durably."""
    try:
        write_file_atomically(path, pem, 0o600)
    except OSError as exc:
        raise DKIMError(f"cannot write DKIM key {path}: {exc.strerror or exc}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
