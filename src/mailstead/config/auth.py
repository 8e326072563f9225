"""``[auth]``: how logins are checked."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from mailstead.config.reader import Reader, duration

__all__ = ["AuthConfig", "load_auth"]


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """How logins are checked (IMAP, POP3 and SMTP AUTH alike)."""

    #: Seconds a password that passed the full scrypt check is recognised
    #: without it again (same user, same stored hash); 0 checks every login
    #: in full. See password_cache.py for the trade-off.
    password_cache_ttl: int = 3600


def load_auth(r: Reader, data: Mapping[str, object]) -> AuthConfig:
    """The ``[auth]`` table of ``data``."""
    t = r.table(data, "auth", "", ("password_cache_ttl",))
    ttl = duration(r, t, "auth.password_cache_ttl", AuthConfig().password_cache_ttl, off=True)
    return AuthConfig(password_cache_ttl=ttl)
