"""What the POP3 session needs from storage: one user's maildrop, locked.

The storage layer implements :class:`Maildrop`; the session calls it from
worker threads (every call may block on disk). Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol


class Maildrop(Protocol):
    """One user's INBOX as POP3 sees it, held under an exclusive lock (RFC 1939 §8).

    The listing is fixed when the maildrop is opened: message numbers do not
    change during the session, whatever is delivered meanwhile.
    """

    def listing(self) -> Sequence[tuple[str, int]]:
        """The snapshot at login: (uidl, size in octets with CRLF line ends) per
        message, message 1 first. A UIDL is 1-70 characters 0x21-0x7E and never
        reused for another message (RFC 1939 §7)."""
        ...

    def read(self, index: int) -> bytes:
        """The stored bytes of message ``index`` (0-based), LF or CRLF line ends."""
        ...

    def read_head(self, index: int, body_lines: int) -> bytes:
        """At least the header, the blank line and ``body_lines`` body lines of
        message ``index`` (an optimisation for TOP; returning all of
        :meth:`read` is correct, the server cuts)."""
        ...

    def mark_seen(self, indexes: Sequence[int]) -> None:
        """Set \\Seen on these messages (called once, in the UPDATE state)."""
        ...

    def delete(self, indexes: Sequence[int]) -> None:
        """Remove these messages for good (called once, in the UPDATE state)."""
        ...

    def close(self) -> None:
        """Release the lock; called exactly once whatever happened."""
        ...


class MaildropInUse(Exception):
    """Another POP3 session holds the maildrop's lock (answered ``[IN-USE]``)."""


#: Canonical account address -> its maildrop, locked; raises :class:`MaildropInUse`.
OpenMaildrop = Callable[[str], Maildrop]
#: (user, password) -> canonical account address, or None. Blocking (scrypt).
Authenticate = Callable[[str, str], str | None]
