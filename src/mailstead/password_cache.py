"""Remember recently verified passwords, so that a client's next login is cheap.

A password check against the directory's scrypt hash costs about 50 ms of
CPU and 16 MiB of memory, on purpose (directory.py). Mail clients log in far
more often than people type passwords: Thunderbird opens several IMAP
connections per account, fetchmail and mbsync log in on every poll, a phone
on every wake. Each paid the full price, and the 16 MiB walk also evicts the
CPU caches that the session's next command then runs without.

:class:`PasswordCache` keeps, per user, the stored hash a password was last
verified against and a keyed digest of that password (HMAC-SHA256 under a
key drawn at random when the process starts, never written anywhere). A
login hits only with the same password, while the stored hash is unchanged
(a new password or a deleted user misses at once, in every process), and
only for ``ttl`` seconds after the full check. Failed checks are never
cached: every wrong guess still pays the whole scrypt price.

The trade-off (docs/quirks.md): someone who can read this process's memory
finds digests that are fast to test guesses against, for the users who
logged in within ``ttl``. Dovecot's ``auth_cache`` and PingDirectory's
encoded-password cache make the same one; ``[auth] password_cache_ttl = "0"``
turns it off.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

__all__ = ["PasswordCache"]

#: Users remembered at most; the least recently verified are forgotten first.
MAX_ENTRIES = 10_000


class PasswordCache:
    """Owns this process's recently verified (user, stored hash, password digest) entries."""

    def __init__(
        self,
        ttl: float,
        *,
        max_entries: int = MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self._max_entries = max_entries
        self._clock = clock
        self._key = secrets.token_bytes(32)
        self._lock = threading.Lock()
        # user -> (stored hash, password digest, expiry)
        self._entries: OrderedDict[str, tuple[str, bytes, float]] = OrderedDict()

    def _digest(self, stored: str, password: str) -> bytes:
        # The stored hash is part of the message: a digest never answers for
        # another hash, even of the same user.
        message = stored.encode() + b"\0" + password.encode("utf-8", "surrogatepass")
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def verified(self, user: str, stored: str, password: str) -> bool:
        """True if ``password`` passed the full check against ``stored`` within the TTL."""
        if self.ttl <= 0:
            return False
        with self._lock:
            entry = self._entries.get(user)
        if entry is None:
            return False
        cached_hash, digest, expires = entry
        if cached_hash != stored or self._clock() >= expires:
            return False
        return hmac.compare_digest(digest, self._digest(stored, password))

    def remember(self, user: str, stored: str, password: str) -> None:
        """Note that ``password`` just passed the full check against ``stored``."""
        if self.ttl <= 0:
            return
        entry = (stored, self._digest(stored, password), self._clock() + self.ttl)
        with self._lock:
            self._entries[user] = entry
            self._entries.move_to_end(user)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
