"""The shapes QUOTA (RFC 9208) works with: a user's limits and an account's usage.

Apart from :mod:`~mailstead.proto.imap.quota` so that the session state
(:mod:`~mailstead.proto.imap.context`) can name them without importing the
command handlers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

__all__ = ["CountsUsage", "Limits", "LimitsLookup", "Usage"]


class Limits(Protocol):
    """A user's limits; None where there is none (``directory.Quota`` is one)."""

    @property
    def storage(self) -> int | None: ...  # octets

    @property
    def messages(self) -> int | None: ...


#: How the server looks a user's limits up, at each use (the administrator
#: may change them while the user is logged in).
LimitsLookup = Callable[[str], Limits]


class Usage(Protocol):
    """What an account holds (``store.usage_columns.Usage`` is one)."""

    @property
    def octets(self) -> int: ...

    @property
    def messages(self) -> int: ...


@runtime_checkable
class CountsUsage(Protocol):
    """An account that can tell its usage (the real ones: store/account.py)."""

    def quota_usage(self) -> Usage: ...
