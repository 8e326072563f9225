"""What ACME keeps under ``<data_dir>/acme/``: keys, the certificate, the lock, the backoff.

* ``account.key``: the ACME account's private key (PEM, 0600), made once.
* ``cert.pem``: the issued chain, leaf first (0600); ``key.pem``: its key (0600).
  The key is written before the chain, so a process that sees a new
  ``cert.pem`` finds its key already there.
* ``lock``: held (``flock``) by the one process running an order.
* ``state.json``: consecutive failures, when to try next and the last error,
  shared by every worker so a failure backs off for all of them and across
  restarts.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mailstead.durable import make_dirs, write_file_atomically

__all__ = ["AcmeFiles", "Backoff", "Issued", "Validity", "read_validity"]


@dataclass(frozen=True, slots=True)
class Issued:
    """A certificate chain (leaf first) and its private key, both PEM."""

    chain_pem: bytes
    key_pem: bytes


@dataclass(frozen=True, slots=True)
class Validity:
    """What the renewal needs to know of a certificate."""

    not_before: float
    not_after: float
    #: DNS names of the subjectAltName extension.
    names: frozenset[str]

    @property
    def renew_at(self) -> float:
        """Two thirds into the lifetime, as certbot and Let's Encrypt advise."""
        return self.not_before + (self.not_after - self.not_before) * 2 / 3


@dataclass(frozen=True, slots=True)
class Backoff:
    """Consecutive failed orders, the time the next may start, and why the last failed."""

    failures: int = 0
    next_attempt: float = 0.0
    last_error: str = ""


def read_validity(chain_pem: bytes) -> Validity:
    """The leaf's validity period and names. Raises ValueError if it is not a certificate."""
    leaf = x509.load_pem_x509_certificate(chain_pem)
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = frozenset(n.lower() for n in san.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        names = frozenset()
    return Validity(
        leaf.not_valid_before_utc.timestamp(), leaf.not_valid_after_utc.timestamp(), names
    )


class AcmeFiles:
    """Owns ``<data_dir>/acme/``: reads and atomically replaces each file named above."""

    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir / "acme"
        self.account_key = self.root / "account.key"
        self.cert = self.root / "cert.pem"
        self.key = self.root / "key.pem"
        self.lock_path = self.root / "lock"
        self.state_path = self.root / "state.json"

    def account_key_pem(self) -> bytes:
        """The account key, made (ECDSA P-256) and stored the first time it is asked for."""
        try:
            return self.account_key.read_bytes()
        except FileNotFoundError:
            pass
        pem = new_key_pem()
        self._write(self.account_key, pem)
        return pem

    def store(self, issued: Issued) -> None:
        """Replace the certificate: key first, then the chain other processes watch."""
        self._write(self.key, issued.key_pem)
        self._write(self.cert, issued.chain_pem)

    def validity(self) -> Validity | None:
        """The stored certificate's validity; None if there is none (or it is unreadable)."""
        try:
            return read_validity(self.cert.read_bytes())
        except (OSError, ValueError):
            return None

    def stamp(self) -> tuple[int, int] | None:
        """Changes whenever ``cert.pem`` is replaced; None while there is none."""
        try:
            st = self.cert.stat()
        except FileNotFoundError:
            return None
        return st.st_mtime_ns, st.st_ino

    def backoff(self) -> Backoff:
        try:
            data = json.loads(self.state_path.read_text(encoding="utf-8"))
            return Backoff(
                int(data["failures"]), float(data["next_attempt"]), str(data["last_error"])
            )
        except (OSError, ValueError, KeyError, TypeError):
            return Backoff()

    def set_backoff(self, backoff: Backoff) -> None:
        self._write(self.state_path, json.dumps(asdict(backoff)).encode())

    @contextlib.contextmanager
    def order_lock(self) -> Iterator[bool]:
        """Yield True while this process alone may run an order, False if another does."""
        make_dirs(self.root)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)  # releases the lock

    def _write(self, path: Path, data: bytes) -> None:
        make_dirs(self.root)
        write_file_atomically(path, data, 0o600)


def new_key_pem() -> bytes:
    """A fresh ECDSA P-256 private key, PKCS#8 PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def utc(when: float) -> str:
    """``when`` as an RFC 3339 UTC time for log lines."""
    return datetime.datetime.fromtimestamp(when, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
